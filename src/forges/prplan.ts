/**
 * The pull-request loop: on every push to a pull request, commit statuses go pending (the plan's
 * own, then one per environment), the plan runs, its Markdown replaces the one Sluice comment on
 * the pull request (found by its hidden marker), and each status ends success or failure.
 */
import { errorMessage } from "../core/index.js";
import { formatPlanMarkdown, type RevisionPlan, summaryLine } from "../plan/index.js";
import type { CommentResult, Forge } from "./types.js";
import type { PullRequestEvent } from "./webhooks.js";

export const PLAN_MARKER = "<!-- sluice:plan -->";
export const PLAN_CONTEXT = "sluice/plan";

export interface PullRequestPlanOptions {
  forge: Forge;
  event: Pick<PullRequestEvent, "number" | "headSha" | "action">;
  /**
   * Runs the plan (typically `planTrees` over the base branch and the pull request's head, as
   * fetched by the source). Pass `hooks.onEnvironments` on to it so that each environment's
   * status goes pending before rendering starts.
   */
  plan: (hooks: { onEnvironments: (names: string[]) => Promise<void> }) => Promise<RevisionPlan>;
  /** Default `<!-- sluice:plan -->`. */
  marker?: string;
  /** Status context; environments get `<context>/<env>`. Default `sluice/plan`. */
  context?: string;
  /** The full plan in the dashboard: each status links to it, a cut comment too. */
  planUrl?: string;
  maxChars?: number;
}

export interface PullRequestPlanResult {
  /** Why nothing was done (a closed pull request). */
  skipped?: string;
  plan?: RevisionPlan;
  comment?: CommentResult;
  /** The plan could not run at all (the comment says why). */
  error?: string;
}

function envDescription(e: RevisionPlan["environments"][number]): string {
  if (e.status === "error") return `does not render: ${e.units.find((u) => u.error)?.error ?? "error"}`;
  if (e.status === "unchanged") return "no changes";
  const c = { create: 0, update: 0, delete: 0 };
  for (const u of e.units) {
    c.create += u.counts.create;
    c.update += u.counts.update;
    c.delete += u.counts.delete;
  }
  return `${c.create} to create, ${c.update} to update, ${c.delete} to delete`;
}

export async function publishPullRequestPlan(opts: PullRequestPlanOptions): Promise<PullRequestPlanResult> {
  const { forge, event } = opts;
  if (event.action === "closed") return { skipped: "the pull request is closed" };
  const marker = opts.marker ?? PLAN_MARKER;
  const ctx = opts.context ?? PLAN_CONTEXT;
  const url = opts.planUrl;
  await forge.setStatus(event.headSha, ctx, "pending", "Sluice is planning this change", url);
  let plan: RevisionPlan;
  try {
    plan = await opts.plan({
      onEnvironments: async (names) => {
        for (const n of names)
          await forge.setStatus(event.headSha, `${ctx}/${n}`, "pending", "planning", url);
      },
    });
  } catch (e) {
    const msg = errorMessage(e);
    const comment = await forge.upsertComment(
      event.number,
      marker,
      `${marker}\n### Sluice plan\n\n❌ **The plan could not run** for ${event.headSha.slice(0, 10)}:\n\n> ${msg.replace(/\n/g, "\n> ")}\n`,
    );
    await forge.setStatus(event.headSha, ctx, "failure", `plan failed: ${msg}`, url);
    return { comment, error: msg };
  }
  const body = formatPlanMarkdown(plan, {
    marker,
    ...(url ? { fullPlanUrl: url } : {}),
    ...(opts.maxChars ? { maxChars: opts.maxChars } : {}),
  });
  const comment = await forge.upsertComment(event.number, marker, body);
  for (const e of plan.environments)
    await forge.setStatus(
      event.headSha,
      `${ctx}/${e.name}`,
      e.status === "error" ? "failure" : "success",
      envDescription(e),
      url,
    );
  await forge.setStatus(
    event.headSha,
    ctx,
    plan.exitCode === 1 ? "failure" : "success",
    summaryLine(plan),
    url,
  );
  return { plan, comment };
}
