/** Human-readable progress lines and the summary table (all text already masked by the run). */
import type { StackEvent, StackRunResult, UnitResult } from "./types.js";

export function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

function counts(r: UnitResult): string {
  return r.action === "output" ? "" : ` +${r.adds} ~${r.changes} -${r.destroys}`;
}

/** One progress line per event, e.g. `vpc: apply done +2 ~0 -0 (1.3s)`. */
export function formatEvent(e: StackEvent): string {
  if (e.type === "start") return `${e.unit}: ${e.action} started`;
  if (e.type === "step") return `${e.unit}: ${e.step}`;
  const r = e.result;
  if (r.status === "skipped") return `${r.unit}: skipped (${r.message ?? ""})`;
  if (r.status === "failed")
    return `${r.unit}: ${r.action} FAILED after ${seconds(r.durationMs)}: ${r.message ?? ""}`;
  const mock = r.mocked?.length ? ` [mock outputs: ${r.mocked.join(", ")}]` : "";
  const what = r.status === "changes" ? "has changes" : "done";
  return `${r.unit}: ${r.action} ${what}${counts(r)} (${seconds(r.durationMs)})${mock}`;
}

/** The table printed at the end of a run. */
export function formatSummary(result: StackRunResult): string {
  const head = ["UNIT", "ACTION", "RESULT", "ADD", "CHANGE", "DESTROY", "DURATION", "NOTE"];
  const rows = result.units.map((r) => [
    r.unit,
    r.action,
    r.status,
    r.action === "output" ? "-" : String(r.adds),
    r.action === "output" ? "-" : String(r.changes),
    r.action === "output" ? "-" : String(r.destroys),
    seconds(r.durationMs),
    [r.message ?? "", r.mocked?.length ? `mock outputs: ${r.mocked.join(", ")}` : ""]
      .filter((x) => x)
      .join("; ")
      .replace(/\s+/g, " ")
      .slice(0, 160),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const failed = result.units.filter((r) => r.status === "failed").length;
  const skipped = result.units.filter((r) => r.status === "skipped").length;
  const tail = `Stack ${result.stack} (${result.env}): ${result.action} of ${result.units.length} units in ${seconds(result.durationMs)}: ${failed} failed, ${skipped} skipped${result.action === "plan" ? `, ${result.changes ? "changes pending" : "no changes"}` : ""}`;
  return [line(head), ...rows.map(line), tail].join("\n");
}
