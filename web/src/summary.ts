/**
 * The fleet's overall state for the header, the tab title and the favicon: counts from
 * `/matrix?limit=0`, refreshed after live events.
 */
import { session } from "./api";
import { debounced, live } from "./live";
import type { Health, MatrixAnswer, MatrixCounts } from "./types";

type Listener = (c: MatrixCounts | null) => void;

let counts: MatrixCounts | null = null;
let page = "";
const listeners = new Set<Listener>();

export function overall(c: MatrixCounts | null): Health | null {
  if (!c || c.cells === 0) return null;
  if (c.health.Failed) return "Failed";
  if (c.health.Degraded) return "Degraded";
  if (c.health.Progressing) return "Progressing";
  if (c.health.Unknown) return "Unknown";
  return "Healthy";
}

function paint(): void {
  const o = overall(counts);
  let status = "";
  if (counts && o) {
    const bad = counts.health.Failed + counts.health.Degraded;
    status =
      o === "Healthy"
        ? "✓ All healthy"
        : o === "Failed" || o === "Degraded"
          ? `✕ ${bad} failing`
          : o === "Progressing"
            ? `◔ ${counts.health.Progressing} progressing`
            : "? Unknown";
  }
  document.title = [status, page, "Sluice"].filter(Boolean).join(" · ");
  const icon = document.getElementById("favicon") as HTMLLinkElement | null;
  const name =
    o === "Healthy"
      ? "favicon-healthy.svg"
      : o === "Failed"
        ? "favicon-failed.svg"
        : o === "Degraded"
          ? "favicon-degraded.svg"
          : o === "Progressing"
            ? "favicon-progressing.svg"
            : "favicon.svg";
  if (icon && !icon.href.endsWith(`/${name}`)) icon.href = `/${name}`;
}

export function setPageTitle(t: string): void {
  page = t;
  paint();
}

export function setCounts(c: MatrixCounts): void {
  counts = c;
  paint();
  for (const l of listeners) l(counts);
}

export function onCounts(l: Listener): () => void {
  listeners.add(l);
  l(counts);
  return () => listeners.delete(l);
}

async function refresh(): Promise<void> {
  if (!session.signedIn) return;
  try {
    setCounts((await session.get<MatrixAnswer>("/matrix?limit=0")).counts);
  } catch {
    // the header keeps the last counts
  }
}

const later = debounced(() => void refresh(), 500);
let started = false;

export function startSummary(): void {
  if (started) return;
  started = true;
  void refresh();
  live.subscribe((e) => {
    if (e.type === "unit" || e.type === "environment" || e.type === "resync") later();
  });
}
