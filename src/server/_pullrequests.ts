/**
 * Pull-request deliveries (GitHub `pull_request`, GitLab `Merge Request Hook`) that a Receiver
 * verified: the agent creates, updates or destroys the request's preview environment, and — when a
 * `github`/`gitlab` Provider names the repository — the plan of what merging would change is posted
 * on the request (one comment, edited in place) with commit statuses per environment.
 *
 * Plans of one request never run side by side: a delivery waits for the previous plan of its
 * request, and is dropped if a newer head arrived meanwhile (only the newest head is worth a plan).
 */
import type { Logger } from "pino";
import { errorMessage } from "../core/index.js";
import { type PullRequestEvent, publishPullRequestPlan } from "../forges/index.js";
import { forgeFor, providerForRepository, resolveNotifications } from "../notify/index.js";
import { planTrees } from "../plan/index.js";
import type { Agent } from "../reconcile/index.js";
import type { ApiAgent } from "./_types.js";

type PlanningAgent = Pick<Agent, "sourceFor" | "fetchRevision" | "decryptionKeys" | "notifyPullRequest">;

export class PullRequests {
  private readonly running = new Map<string, Promise<void>>();
  private readonly newest = new Map<string, string>();

  constructor(
    private readonly opts: { agent: ApiAgent; log: Logger; planUrl?: (ev: PullRequestEvent) => string },
  ) {}

  /** Starts the work for a delivery and returns at once; failures are logged, never thrown. */
  accept(ev: PullRequestEvent): void {
    const agent = this.opts.agent as ApiAgent & Partial<PlanningAgent>;
    const log = this.opts.log;
    agent
      .notifyPullRequest?.({
        action: ev.action,
        number: ev.number,
        headRef: ev.headRef,
        baseRef: ev.baseRef,
        repoUrls: ev.repoUrls,
        headFetchRef: ev.headFetchRef,
      })
      .catch((e) =>
        log.error({ pr: ev.number, err: errorMessage(e) }, "pull request environment update failed"),
      );
    if (ev.action === "closed" || !agent.sourceFor || !agent.fetchRevision) return;
    const key = `${ev.repository}#${ev.number}`;
    this.newest.set(key, ev.headSha);
    const prior = this.running.get(key) ?? Promise.resolve();
    const next = prior
      .then(() =>
        this.newest.get(key) === ev.headSha ? this.plan(agent as ApiAgent & PlanningAgent, ev) : undefined,
      )
      .catch((e) => log.error({ pr: ev.number, err: errorMessage(e) }, "pull request plan failed"))
      .finally(() => {
        if (this.running.get(key) === next) this.running.delete(key);
      });
    this.running.set(key, next);
  }

  /** Waits for every plan in flight (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running.values()]);
  }

  private async plan(agent: ApiAgent & PlanningAgent, ev: PullRequestEvent): Promise<void> {
    const config = agent.configuration;
    const provider = providerForRepository(resolveNotifications(config).providers, ev);
    if (!provider) {
      this.opts.log.info(
        { pr: ev.number, repository: ev.repository },
        "no github/gitlab Provider names this repository; the plan is not posted",
      );
      return;
    }
    const source = agent.sourceFor(ev.repoUrls);
    if (!source) {
      this.opts.log.info(
        { pr: ev.number, repository: ev.repository },
        "no GitRepository has this URL; no plan",
      );
      return;
    }
    const keys = agent.decryptionKeys;
    const r = await publishPullRequestPlan({
      forge: forgeFor(provider),
      event: ev,
      ...(this.opts.planUrl ? { planUrl: this.opts.planUrl(ev) } : {}),
      plan: async (hooks) => {
        const base = await agent.fetchRevision(source, { branch: ev.baseRef });
        const head = await agent.fetchRevision(source, { name: ev.headFetchRef });
        return planTrees({
          base: { dir: base.dir, label: ev.baseRef, commit: base.commit, branch: ev.baseRef },
          head: { dir: head.dir, label: `#${ev.number}`, commit: head.commit, branch: ev.headRef },
          source,
          config,
          pullRequest: { number: ev.number, headRef: ev.headRef, baseRef: ev.baseRef },
          ...(keys ? { ageIdentities: keys } : {}),
          ...hooks,
        });
      },
    });
    this.opts.log.info(
      { pr: ev.number, exitCode: r.plan?.exitCode, error: r.error, skipped: r.skipped },
      "pull request plan posted",
    );
  }
}
