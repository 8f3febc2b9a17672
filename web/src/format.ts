/** Labels, symbols and relative times. Colour is never the only signal: every state has a word. */
import type { Health, Sync } from "./types";

export const HEALTH_ICON: Record<Health, string> = {
  Healthy: "✓",
  Progressing: "◔",
  Degraded: "▲",
  Failed: "✕",
  Unknown: "?",
};

export const SYNC_LABEL: Record<Sync, string> = {
  InSync: "in sync",
  OutOfSync: "out of sync",
  Drifted: "drifted",
  Unknown: "sync unknown",
};

/** `main@sha1:0d1a26e67d…` → `0d1a26e`. */
export function shortRev(rev: string | null | undefined): string {
  if (!rev) return "—";
  const sha = /sha1:([0-9a-f]+)/.exec(rev)?.[1] ?? rev.split("@").pop() ?? rev;
  return sha.slice(0, 7);
}

export function relTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "—";
  const s = Math.round((now - t) / 1000);
  return s >= 0 ? `${span(s)} ago` : `in ${span(-s)}`;
}

/** A duration in its largest unit: 45 s, 12 min, 5 h, 3 d. */
export function span(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86_400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "—";
  return span(Math.max(0, Math.round((now - Date.parse(iso)) / 1000)));
}

export function ms(n: number): string {
  return n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)} s`;
}

export function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { hour12: false });
}

export const nf = new Intl.NumberFormat();
