/**
 * A RevisionPlan for people (text), for pull-request comments (Markdown, bounded), and for tools
 * (JSON: the plan object itself). Diffs are already masked (objectdiff.ts); nothing here sees a
 * Secret value.
 */
import type { ObjectPlan } from "./objectdiff.js";
import type { EnvironmentPlan, RevisionPlan, UnitPlan } from "./revisions.js";

function short(side: { label: string; commit?: string }): string {
  return side.commit && side.commit !== side.label
    ? `${side.label} (${side.commit.slice(0, 10)})`
    : side.label;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function countsText(u: { create: number; update: number; delete: number }): string {
  return `${u.create} to create, ${u.update} to update, ${u.delete} to delete`;
}

function liveText(u: UnitPlan): string | undefined {
  if (!u.live) return undefined;
  if ("error" in u.live) return `live: cannot be planned: ${u.live.error}`;
  const c = { created: 0, configured: 0, deleted: 0 };
  for (const e of u.live.changeSet.entries)
    if (e.action === "created" || e.action === "configured" || e.action === "deleted") c[e.action]++;
  return c.created + c.configured + c.deleted === 0
    ? "live: in sync with the head"
    : `live: ${c.created} to create, ${c.configured} to configure, ${c.deleted} to delete on the target`;
}

function secretNote(o: ObjectPlan): string | undefined {
  if (!o.secretKeys?.length) return undefined;
  return o.secretKeys.map((k) => `${k.key}: ${k.change}`).join(", ");
}

function envHeading(e: EnvironmentPlan): string {
  const where = e.branch ? ` (branch ${e.branch})` : "";
  const presence = e.presence === "added" ? ", new" : e.presence === "removed" ? ", removed" : "";
  return `${e.name}${where}${presence}`;
}

/** The summary line: "No changes." or what changes where. */
export function summaryLine(plan: RevisionPlan): string {
  const s = plan.summary;
  if (s.errors > 0)
    return `Plan failed: ${plural(s.errors, "error")} (${plural(s.changed, "environment")} changed, ${s.unchanged} unchanged).`;
  if (s.changed === 0 && !s.live)
    return `No changes: every environment renders the same objects at both revisions.`;
  const live = s.live ? `; ${plural(s.live, "live object")} would change` : "";
  return `Plan: ${plural(s.changed, "environment")} ${s.changed === 1 ? "changes" : "change"} (${countsText(s)}), ${s.unchanged} unchanged${live}.`;
}

/** Text for a terminal: per environment and unit, counts then the diffs. */
export function formatPlanText(plan: RevisionPlan): string {
  const out: string[] = [`Plan ${short(plan.base)} → ${short(plan.head)}`, ""];
  for (const n of plan.notes) out.push(`note: ${n}`);
  if (plan.notes.length) out.push("");
  for (const e of plan.environments) {
    if (e.status === "unchanged" && !e.units.some((u) => u.live)) {
      out.push(`Environment ${envHeading(e)}: no changes`);
      continue;
    }
    out.push(`Environment ${envHeading(e)}: ${e.status}`);
    for (const u of e.units) {
      if (u.error) {
        out.push(`  ${u.unit}: error: ${u.error}`);
        continue;
      }
      out.push(`  ${u.unit}: ${u.status === "unchanged" ? "no changes" : countsText(u.counts)}`);
      if (u.baseError)
        out.push(`    note: the base did not render (${u.baseError}); compared against nothing`);
      const lt = liveText(u);
      if (lt) out.push(`    ${lt}`);
      for (const o of u.objects) {
        const sn = secretNote(o);
        out.push(`    ${o.action} ${o.subject}${sn ? ` (secret values hidden; ${sn})` : ""}`);
      }
      for (const o of u.objects) out.push(o.diff.trimEnd().replace(/^/gm, "    "));
    }
    out.push("");
  }
  if (plan.stacks?.length) {
    out.push("Infrastructure (OpenTofu plan):");
    for (const x of plan.stacks) out.push(`  ${stackLine(x)}`);
    out.push("");
  }
  out.push(summaryLine(plan));
  return `${out.join("\n").replace(/\n{3,}/g, "\n\n")}\n`;
}

function stackLine(x: NonNullable<RevisionPlan["stacks"]>[number]): string {
  const what =
    x.status === "changes"
      ? `${x.adds} to add, ${x.changes} to change, ${x.destroys} to destroy`
      : x.status === "unchanged"
        ? "no changes"
        : `${x.status}${x.message ? `: ${x.message}` : ""}`;
  return `${x.env} ${x.stack}/${x.unit}: ${what}${x.mocked?.length ? ` (mock outputs of ${x.mocked.join(", ")})` : ""}`;
}

export interface MarkdownOptions {
  /** Most characters of the comment (GitHub allows 65,536). Default 60,000. */
  maxChars?: number;
  /** Where the full plan can be read (the dashboard); shown when the comment is truncated. */
  fullPlanUrl?: string;
  /** Prepended as the first line (e.g. the hidden `<!-- sluice:plan -->` marker). */
  marker?: string;
}

export const DEFAULT_MARKDOWN_MAX = 60_000;
/** What a truncated comment links to when no dashboard URL is known. */
export const FULL_PLAN_PLACEHOLDER = "{{sluice.planUrl}}";

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/[\r\n]+/g, " ");
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A code fence longer than any run of backticks inside the text. */
function fence(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  return "`".repeat(Math.max(3, longest + 1));
}

function diffBlock(u: UnitPlan): string {
  const text = u.objects.map((o) => o.diff.trimEnd()).join("\n");
  const f = fence(text);
  return `${f}diff\n${text}\n${f}`;
}

/**
 * Markdown for a pull-request comment: a summary table of every environment, then one collapsed
 * section per changed unit with its diff. Bounded by `maxChars`: diffs that do not fit are left
 * out (largest last), with a note and a link to the full plan.
 */
export function formatPlanMarkdown(plan: RevisionPlan, opts: MarkdownOptions = {}): string {
  const max = opts.maxChars ?? DEFAULT_MARKDOWN_MAX;
  const head: string[] = [];
  if (opts.marker) head.push(opts.marker);
  head.push(`### Sluice plan: \`${cell(short(plan.base))}\` → \`${cell(short(plan.head))}\``, "");
  head.push(`**${summaryLine(plan)}**`, "");
  for (const n of plan.notes) head.push(`> ${escapeHtml(n)}`);
  if (plan.notes.length) head.push("");
  if (plan.environments.length) {
    head.push("| Environment | Branch | Create | Update | Delete | Status |", "|---|---|--:|--:|--:|---|");
    for (const e of plan.environments) {
      const c = { create: 0, update: 0, delete: 0 };
      for (const u of e.units) {
        c.create += u.counts.create;
        c.update += u.counts.update;
        c.delete += u.counts.delete;
      }
      const status =
        e.status === "error" ? "❌ error" : e.status === "changed" ? "📝 changes" : "✅ no changes";
      head.push(
        `| ${cell(e.name)}${e.presence === "added" ? " (new)" : e.presence === "removed" ? " (removed)" : ""} | ${cell(e.branch ?? "")} | ${c.create} | ${c.update} | ${c.delete} | ${status} |`,
      );
    }
    head.push("");
  } else head.push("_No environments are defined at either revision._", "");
  if (plan.stacks?.length) {
    head.push("| Infrastructure | Unit | Add | Change | Destroy | Status |", "|---|---|--:|--:|--:|---|");
    for (const x of plan.stacks)
      head.push(
        `| ${cell(x.env)} · ${cell(x.stack)} | ${cell(x.unit)} | ${x.adds} | ${x.changes} | ${x.destroys} | ${x.status === "failed" ? `❌ ${cell(x.message ?? "failed")}` : x.status === "changes" ? "📝 changes" : x.status === "skipped" ? `⏭ ${cell(x.message ?? "skipped")}` : "✅ no changes"} |`,
      );
    head.push("");
  }

  // Sections: errors first (never dropped), then changed units in plan order.
  interface Section {
    title: string;
    lines: string[];
    diff?: string;
    error?: boolean;
  }
  const sections: Section[] = [];
  for (const e of plan.environments)
    for (const u of e.units) {
      if (u.status === "unchanged" && !u.live) continue;
      const title = `${e.name} / ${u.unit}`;
      if (u.error) {
        sections.push({
          title,
          error: true,
          lines: [
            `❌ **${escapeHtml(title)}**: the head does not render:`,
            "",
            `> ${escapeHtml(u.error)}`,
            "",
          ],
        });
        continue;
      }
      const lines: string[] = [];
      if (u.baseError)
        lines.push(`> the base did not render (${escapeHtml(u.baseError)}); compared against nothing`, "");
      const lt = liveText(u);
      if (lt) lines.push(`_${escapeHtml(lt)}_`, "");
      for (const o of u.objects) {
        const sn = secretNote(o);
        lines.push(
          `- ${o.action} \`${cell(o.subject)}\`${sn ? ` — secret values hidden (${escapeHtml(sn)})` : ""}`,
        );
      }
      sections.push({
        title: `${title}: ${u.status === "unchanged" ? "no changes" : countsText(u.counts)}`,
        lines,
        ...(u.objects.length ? { diff: diffBlock(u) } : {}),
      });
    }

  const footerFor = (omitted: number) =>
    omitted === 0
      ? ""
      : `\n---\n⚠️ The plan is too long for a comment: ${plural(omitted, "diff")} left out. Full plan: ${opts.fullPlanUrl ?? FULL_PLAN_PLACEHOLDER}\n`;
  const render = (withDiff: boolean[]) => {
    const body: string[] = [...head];
    sections.forEach((s, i) => {
      if (s.error) {
        body.push(...s.lines);
        return;
      }
      body.push(`<details><summary>${escapeHtml(s.title)}</summary>`, "", ...s.lines);
      if (s.diff) body.push("", withDiff[i] ? s.diff : "_diff left out (too long for a comment)_");
      body.push("", "</details>", "");
    });
    return body.join("\n");
  };
  const withDiff = sections.map((s) => !!s.diff);
  let omitted = 0;
  let text = render(withDiff);
  // Drop the largest diffs first until the comment fits.
  const bySize = sections
    .map((s, i) => ({ i, size: s.diff?.length ?? 0 }))
    .filter((x) => x.size > 0)
    .sort((a, b) => b.size - a.size);
  while (text.length + footerFor(omitted || 1).length > max && bySize.length) {
    const next = bySize.shift()!;
    withDiff[next.i] = false;
    omitted++;
    text = render(withDiff);
  }
  text += footerFor(omitted);
  if (text.length > max) {
    // Still too long (thousands of units): cut the sections themselves, keep the summary.
    const footer = `\n\n---\n⚠️ The plan is too long for a comment and was cut. Full plan: ${opts.fullPlanUrl ?? FULL_PLAN_PLACEHOLDER}\n`;
    const cutAt = text.lastIndexOf("\n<details>", max - footer.length);
    text = text.slice(0, cutAt > head.join("\n").length ? cutAt : Math.max(0, max - footer.length)) + footer;
  }
  return text;
}
