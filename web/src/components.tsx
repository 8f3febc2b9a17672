/** Small shared pieces: status badges, the confirmation dialog, notices. */
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";
import { HEALTH_ICON, SYNC_LABEL } from "./format";
import type { Health, Sync } from "./types";

export function HealthBadge(props: { health: Health; small?: boolean }) {
  return (
    <span class={`badge h-${props.health}${props.small ? " small" : ""}`}>
      <span aria-hidden="true">{HEALTH_ICON[props.health]}</span> {props.health}
    </span>
  );
}

export function ObjectHealthBadge(props: { health: string | null }) {
  const h = props.health ?? "Unknown";
  const cls =
    h === "Healthy"
      ? "Healthy"
      : h === "Progressing" || h === "Suspended"
        ? "Progressing"
        : h === "Degraded" || h === "Missing"
          ? "Degraded"
          : "Unknown";
  return <span class={`badge small h-${cls}`}>{props.health ?? "not checked"}</span>;
}

export function SyncLabel(props: { sync: Sync }) {
  return <span class={`sync s-${props.sync}`}>{SYNC_LABEL[props.sync]}</span>;
}

export function Tag(props: { children: ComponentChildren; kind?: string; title?: string }) {
  return (
    <span class={`tag${props.kind ? ` tag-${props.kind}` : ""}`} title={props.title}>
      {props.children}
    </span>
  );
}

/** What happened after an action, read out by screen readers. */
export interface Notice {
  kind: "ok" | "error" | "info";
  text: string;
}

export function NoticeBar(props: { notice: Notice | null; onClose: () => void }) {
  return (
    <div class="notice-region" role="status" aria-live="polite">
      {props.notice && (
        <div class={`notice notice-${props.notice.kind}`}>
          <span>{props.notice.text}</span>
          <button type="button" class="link" onClick={props.onClose} aria-label="Dismiss message">
            ×
          </button>
        </div>
      )}
    </div>
  );
}

/** An API failure in words; a missing route means the server does not offer that action yet. */
export function describeFailure(what: string, e: unknown): string {
  if (e instanceof ApiError) {
    if ((e.status === 404 && /no API route/.test(e.message)) || e.status === 501)
      return `${what} is not available on this server yet.`;
    if (e.status === 403) return `${what}: your token may only view (${e.message}).`;
    return `${what} failed: ${e.message}`;
  }
  return `${what} failed: ${(e as Error).message}`;
}

export interface ConfirmProps {
  title: string;
  confirmLabel: string;
  danger?: boolean;
  children?: ComponentChildren;
  /** Resolves when done; a thrown error keeps the dialog open with the message. */
  onConfirm: (form: FormData) => Promise<void>;
  onClose: () => void;
}

/** A modal confirmation (native <dialog>: focus is trapped and Escape cancels). */
export function ConfirmDialog(props: ConfirmProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm(new FormData(e.currentTarget as HTMLFormElement));
      props.onClose();
    } catch (err) {
      setError(describeFailure(props.confirmLabel, err));
      setBusy(false);
    }
  };
  return (
    <dialog
      ref={ref}
      class="confirm"
      aria-labelledby="confirm-title"
      onClose={props.onClose}
      onCancel={props.onClose}
    >
      <form onSubmit={submit}>
        <h2 id="confirm-title">{props.title}</h2>
        {props.children}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="buttons">
          <button type="button" onClick={props.onClose} disabled={busy}>
            Cancel
          </button>
          <button type="submit" class={props.danger ? "danger" : "primary"} disabled={busy}>
            {busy ? "Working…" : props.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}

export function Loading(props: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {props.what}…
    </p>
  );
}

export function ErrorMessage(props: { error: unknown }) {
  const e = props.error;
  const text = e instanceof ApiError ? e.message : (e as Error)?.message;
  return (
    <p class="error" role="alert">
      {text || "Something went wrong."}
    </p>
  );
}
