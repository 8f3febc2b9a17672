/**
 * The agent: one process that keeps every environment equal to its branch.
 *
 * Sources are polled at their interval (and refreshed at once by a push webhook). Each refresh
 * lists the branches of the repository; an `Environments` object maps them to environments, so a
 * new branch registers an environment and a deleted branch destroys one (unless protected). An
 * environment's units are the Kustomizations on that source; every unit whose branch moved is
 * put on the work queue. A source that cannot be reached changes nothing: environments are only
 * created or destroyed from a successful listing, so an outage never prunes.
 *
 * A unit's reconcile is a pipeline that stops at the first failing stage, each with its own
 * reason, before anything destructive: dependencies Ready (DependencyNotReady) → artifact
 * (ArtifactFailed) → render (BuildFailed) → apply and prune (ReconciliationFailed/PruneFailed)
 * → health (HealthCheckFailed) → post-apply checks (SmokeTestFailed). The run is written to the
 * store before work starts and finished after, so a `kill -9` leaves a run that the next start
 * marks interrupted; targets rediscover what they own, and the re-run converges.
 */

import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import type { GitAuth } from "../automation/index.js";
import { BuildLoop, type BuildRecord } from "../builds/index.js";
import {
  byKind,
  type Config,
  type ConfigObject,
  DEFAULT_NAMESPACE,
  type EnvironmentsSpec,
  type KustomizationSpec,
  loadConfig,
  parseDuration,
} from "../config/index.js";
import {
  analyzeGraph,
  errorMessage,
  isSluiceError,
  type KubeObject,
  SluiceError,
  subject,
} from "../core/index.js";
import {
  addToExpiry,
  defaultEnvironment,
  type Environment,
  extendedExpiry,
  matchBranch,
  type PullRequestRef,
  type PurgeDecision,
  type PurgePolicy,
  purgeDue,
  purgePolicy,
  purgeVictims,
  resolveEnvironments,
} from "../envs/index.js";
import { readUnitOutputs, stackOutputsAsVariables } from "../infra/index.js";
import { type ChangeSet, countActions } from "../plan/index.js";
import { type GitTarget, type PromoteResult, promoteBranch, revertLast } from "../promote/index.js";
import { envsubst, type RenderLimits, render } from "../render/index.js";
import { RolloutEngine, type RolloutStatus } from "../rollouts/index.js";
import type { AgeIdentities } from "../sops/index.js";
import type { Artifact, GitRepositorySpec, GitSource } from "../source/index.js";
import type { EnvironmentRecord, RunStage, Store, UnitStatus } from "../store/index.js";
import type { Orphan, Target } from "../targets/index.js";
import { Podman } from "../targets/local/index.js";
import { ImageLoop, type ImageStatus } from "./images.js";
import { AgentMetrics } from "./metrics.js";
import { WorkQueue } from "./queue.js";
import { splitSluiceObjects } from "./sluiceobjects.js";
import {
  type AgentEvent,
  type CheckRecord,
  type PostApplyHook,
  parseUnitKey,
  type Reason,
  unitKey,
} from "./types.js";

export interface AgentOptions {
  /** Directory or file holding the configuration (Flux and Sluice kinds). */
  configPath: string;
  /** Everything the configuration reads must stay inside this directory. */
  configRoot: string;
  store: Store;
  source: GitSource;
  /**
   * Resolves an environment's target name (`local`, `kubernetes:<ctx>`), with the unit's access
   * (Flux's `serviceAccountName`, `kubeConfig.secretRef`) when it sets one.
   */
  target: (name: string, access?: TargetAccess) => Target;
  log: Logger;
  concurrency?: number;
  ageIdentities?: AgeIdentities;
  postApply?: PostApplyHook;
  /** Backoff for failing units and sources. */
  backoff?: { baseMs: number; maxMs: number };
  /** The clock for TTLs and purge schedules (tests inject one). */
  now?: () => Date;
  /** How often TTLs and purge schedules are checked (default 30 s). */
  lifecycleIntervalMs?: number;
  /** Resource bounds of a unit's render (largest file, most objects, longest kustomize run, aliases). */
  renderLimits?: Partial<RenderLimits>;
  /** Where image update automations keep their working copies (default: a temporary directory). */
  workDir?: string;
  /** Sluice's state directory, where `sluice stack` keeps OpenTofu state (for `StackOutputs`). */
  infraStateDir?: string;
  /**
   * Sharding: whether this agent owns an environment (default: all). Environments it does not own
   * are neither reconciled, created nor destroyed here; call {@link Agent.reshard} when the
   * assignment changes.
   */
  owns?: (env: string) => boolean;
  /** podman for `Build`s (default: podman on PATH with Sluice's settings). */
  podman?: () => Promise<Podman>;
}

/** How a unit reaches its cluster, beyond the environment's target. */
export interface TargetAccess {
  /** `namespace/name` to impersonate. */
  serviceAccount?: string;
  /** A kubeconfig's YAML (a remote cluster). Never logged. */
  kubeconfigData?: string;
  /** Identifies this access for caching targets (no secret in it). */
  key: string;
}

/** A pull/merge request event from a forge webhook, already verified. */
export interface PullRequestChange {
  action: "opened" | "reopened" | "synchronize" | "closed";
  number: number;
  headRef: string;
  baseRef: string;
  /** The repository's URLs (clone, SSH, web), to find the source. */
  repoUrls: string[];
  /** Where the head can be fetched (`refs/pull/N/head`), for pull-request builds. */
  headFetchRef?: string;
}

interface SourceState {
  key: string;
  obj: ConfigObject<"GitRepository">;
  spec: GitRepositorySpec;
  intervalMs: number;
  /** The Environments object that maps this source's branches, if any. */
  environments?: ConfigObject<"Environments">;
  /** Its purge policy (TTLs, schedule). */
  purge?: PurgePolicy;
  /** Open pull requests (for `pullRequest` rules), kept in the store's KV across restarts. */
  pullRequests: Map<number, PullRequestRef>;
  branches: Map<string, string>;
  ok: boolean;
  message: string;
  lastFetchAt: string | null;
  failures: number;
  timer?: NodeJS.Timeout;
}

interface EnvState {
  env: Environment;
  source: string;
  /** The commit the env's branch pointed at when last listed. */
  commit: string | null;
}

interface CachedRender {
  key: string;
  objects: KubeObject[];
}

const DEFAULT_ENV = "default";
const RENDER_CACHE = 256;

export class Agent extends EventEmitter {
  readonly metrics = new AgentMetrics();
  private config: Config = { objects: [], supporting: [] };
  private readonly sources = new Map<string, SourceState>();
  private readonly envs = new Map<string, EnvState>();
  private readonly unitTimers = new Map<string, NodeJS.Timeout>();
  private readonly renderCache = new Map<string, CachedRender>();
  private readonly queue: WorkQueue;
  private readonly log: Logger;
  private stopped = false;
  private running = false;
  private readonly refreshing = new Set<Promise<void>>();
  private readonly now: () => Date;
  private lifecycleTimer: NodeJS.Timeout | undefined;
  private startedAt = new Date(0);
  private images: ImageLoop | undefined;
  private builds: BuildLoop | undefined;
  /** Blue/green, canary and A/B delivery; its state lives in the store's KV (`rollouts`). */
  readonly rollouts: RolloutEngine;

  /** True between start() and stop(): what /readyz reports. */
  get started(): boolean {
    return this.running;
  }

  constructor(private readonly opts: AgentOptions) {
    super();
    this.log = opts.log;
    this.now = opts.now ?? (() => new Date());
    const kv = opts.store;
    this.rollouts = new RolloutEngine({
      store: {
        get: (k) => kv.getKV("rollouts", k),
        set: (k, v) => kv.setKV("rollouts", k, v),
        delete: (k) => kv.deleteKV("rollouts", k),
      },
      log: (m) => this.log.info(m),
    });
    this.queue = new WorkQueue({
      concurrency: opts.concurrency ?? 4,
      worker: (key, triggers) => this.work(key, triggers),
      backoff: opts.backoff ?? { baseMs: 1000, maxMs: 5 * 60_000 },
      onError: (key, e, retryIn) =>
        this.log.warn({ key, retryInMs: retryIn, err: errorMessage(e) }, "reconcile failed; retrying"),
    });
  }

  // --- lifecycle ------------------------------------------------------------------------------

  /** Loads the configuration, recovers from a previous crash, and starts converging. */
  async start(): Promise<void> {
    const interrupted = this.opts.store.markInterruptedRuns();
    if (interrupted > 0)
      this.event(
        null,
        null,
        "warning",
        "RunsInterrupted",
        `${interrupted} run(s) were interrupted by a previous stop; reconciling again`,
      );
    this.loadConfiguration();
    // Environments known from before the restart keep existing until a successful listing says
    // otherwise; those half-destroyed finish being destroyed.
    for (const rec of this.opts.store.listEnvironments()) {
      if (rec.state === "destroying") this.queue.enqueue(destroyKey(rec.name), "startup");
    }
    for (const s of this.sources.values()) void this.refreshSource(s.key, "startup");
    this.startedAt = this.now();
    this.startImages();
    this.startBuilds();
    this.lifecycleTimer = setInterval(
      () =>
        void this.lifecycleTick().catch((e) =>
          this.log.warn({ err: errorMessage(e) }, "checking TTLs and purge schedules failed"),
        ),
      this.opts.lifecycleIntervalMs ?? 30_000,
    );
    this.lifecycleTimer.unref();
    this.running = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.running = false;
    for (const s of this.sources.values()) if (s.timer) clearTimeout(s.timer);
    for (const t of this.unitTimers.values()) clearTimeout(t);
    if (this.lifecycleTimer) clearInterval(this.lifecycleTimer);
    await this.images?.stop();
    await this.builds?.idle();
    await this.queue.stop();
    // Source listings in flight still write status and events: let them finish before the
    // caller closes the store.
    await Promise.allSettled([...this.refreshing]);
  }

  /** Waits until no work is queued or running (for tests and the demo). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  // --- queries (API) --------------------------------------------------------------------------

  /** Every environment in the registry, with the URLs it answers on (rule `url`, or the local target's Services). */
  listEnvironments(): (EnvironmentRecord & { urls?: string[] })[] {
    return this.opts.store.listEnvironments().map((r) => ({ ...r, urls: this.urlsOf(r) }));
  }

  private urlsOf(rec: EnvironmentRecord): string[] {
    if (rec.state !== "active") return [];
    const st = this.envs.get(rec.name);
    if (st?.env.url) return [st.env.url];
    try {
      const t = this.opts.target(rec.target) as Partial<{
        serviceAddresses(u: { env: string; unit: string }): { address: { host: string; port: number } }[];
      }>;
      if (!t.serviceAddresses) return [];
      return this.unitsOf(rec.name).flatMap((unit) =>
        t.serviceAddresses!({ env: rec.name, unit }).map((a) => `http://${a.address.host}:${a.address.port}`),
      );
    } catch {
      return [];
    }
  }

  listUnits(env?: string): UnitStatus[] {
    return this.opts.store.listUnitStatus(env);
  }

  listSources(): {
    name: string;
    url: string;
    ok: boolean;
    message: string;
    lastFetchAt: string | null;
    branches: Record<string, string>;
  }[] {
    return [...this.sources.values()].map((s) => ({
      name: s.key,
      url: redact(s.spec.url),
      ok: s.ok,
      message: s.message,
      lastFetchAt: s.lastFetchAt,
      branches: Object.fromEntries(s.branches),
    }));
  }

  /** Units of an environment, by Kustomization name. */
  unitsOf(env: string): string[] {
    const st = this.envs.get(env);
    return st ? this.kustomizationsFor(st.source).map((k) => k.metadata.name) : [];
  }

  // --- actions (API, CLI, webhooks) -----------------------------------------------------------

  /** Queues a reconcile; with `withSource`, lists the source first. Resolves once queued. */
  async requestReconcile(
    env: string,
    unit: string,
    opts: { withSource?: boolean; who?: string } = {},
  ): Promise<void> {
    const st = this.envs.get(env);
    if (!st || !this.unitsOf(env).includes(unit))
      throw new SluiceError("NotFound", `unit ${unit} of environment ${env} does not exist`);
    if (opts.who)
      this.event(env, unit, "info", "ReconcileRequested", `${opts.who} requested a reconcile of ${unit}`);
    if (opts.withSource) await this.refreshSource(st.source, "manual");
    this.queue.resetBackoff(unitKey({ env, unit }));
    this.queue.enqueue(unitKey({ env, unit }), "manual");
  }

  setSuspended(env: string, unit: string, suspended: boolean, who?: string): void {
    const cur = this.opts.store.getUnitStatus(env, unit);
    if (!cur) throw new SluiceError("NotFound", `unit ${unit} of environment ${env} does not exist`);
    this.writeStatus(
      { ...cur, suspended },
      cur.ready,
      cur.reason as Reason,
      suspended ? "Suspended by a user" : cur.message,
    );
    this.event(
      env,
      unit,
      "info",
      suspended ? "Suspended" : "Resumed",
      `${unit} ${suspended ? "suspended" : "resumed"}${who ? ` by ${who}` : ""}`,
    );
    if (!suspended) this.queue.enqueue(unitKey({ env, unit }), "resume");
  }

  /** A push happened (webhook): refresh the named sources, or every source whose URL matches. */
  async notifyPush(opts: { sources?: string[]; repoUrls?: string[] }): Promise<string[]> {
    const matched = [...this.sources.values()].filter(
      (s) =>
        opts.sources?.includes(s.key) ||
        opts.sources?.includes(s.obj.metadata.name) ||
        opts.repoUrls?.some((u) => sameRepo(u, s.spec.url)),
    );
    await Promise.all(matched.map((s) => this.refreshSource(s.key, "webhook")));
    return matched.map((s) => s.key);
  }

  /**
   * A pull request was opened, updated, reopened or closed (forge webhook): its `pullRequest`
   * environment is created, updated or destroyed. Returns the sources it concerned.
   */
  async notifyPullRequest(ev: PullRequestChange): Promise<string[]> {
    const matched = [...this.sources.values()].filter(
      (s) =>
        ev.repoUrls.some((u) => sameRepo(u, s.spec.url)) &&
        (s.environments?.spec as EnvironmentsSpec | undefined)?.rules.some(
          (r) => r.pullRequest !== undefined,
        ),
    );
    for (const s of matched) {
      if (ev.action === "closed") s.pullRequests.delete(ev.number);
      else s.pullRequests.set(ev.number, { number: ev.number, headRef: ev.headRef, baseRef: ev.baseRef });
      this.opts.store.setKV("pullRequests", s.key, JSON.stringify([...s.pullRequests.values()]));
    }
    await Promise.all(matched.map((s) => this.refreshSource(s.key, "pull-request")));
    // Builds triggered by pull requests build the request's head (same repository or a fork).
    if (ev.action !== "closed" && ev.headFetchRef)
      for (const s of this.sources.values())
        if (ev.repoUrls.some((u) => sameRepo(u, s.spec.url)))
          this.builds?.onPullRequest(s.key, {
            number: ev.number,
            baseRef: ev.baseRef,
            headFetchRef: ev.headFetchRef,
          });
    return matched.map((s) => s.key);
  }

  /**
   * Creates (or brings back after a purge) the environment of a branch, as its rule says.
   * @throws SluiceError NotFound when no rule matches or the branch does not exist.
   */
  async createEnvironment(branch: string, who: string): Promise<string> {
    const s = [...this.sources.values()].find((x) =>
      (x.environments?.spec as EnvironmentsSpec | undefined)?.rules.some(
        (r) => r.branch !== undefined && matchBranch(r.branch, branch),
      ),
    );
    if (!s)
      throw new SluiceError("NotFound", `no Environments rule matches branch ${branch}`, {
        hint: "add a rule for it to the Environments object",
      });
    await this.refreshSource(s.key, "manual-create");
    if (!s.ok) throw new SluiceError("ArtifactFailed", `source ${s.key} cannot be listed: ${s.message}`);
    if (!s.branches.has(branch))
      throw new SluiceError("NotFound", `branch ${branch} does not exist in ${redact(s.spec.url)}`, {
        hint: "push the branch first",
      });
    for (const rec of this.opts.store.listEnvironments()) {
      if (rec.branch !== branch || rec.prNumber !== null || rec.heldCommit === null) continue;
      if (rec.state === "destroying")
        throw new SluiceError(
          "Conflict",
          `environment ${rec.name} is still being destroyed; try again shortly`,
        );
      this.opts.store.setEnvironmentState(rec.name, rec.state, { heldCommit: null });
    }
    this.syncEnvironments(s, "manual-create");
    const st = [...this.envs.values()].find((e) => e.env.branch === branch && e.env.prNumber === null);
    if (!st) throw new SluiceError("Conflict", `branch ${branch} got no environment; see the events for why`);
    this.event(
      st.env.name,
      null,
      "info",
      "EnvironmentRequested",
      `environment ${st.env.name} requested by ${who}`,
    );
    return st.env.name;
  }

  /**
   * Destroys an environment now (`sluice env destroy`). It stays away until its branch moves or
   * a user creates it again. @throws SluiceError NotFound / Conflict (protected)
   */
  requestDestroy(name: string, who: string): void {
    const rec = this.opts.store.getEnvironment(name);
    if (rec?.state !== "active") throw new SluiceError("NotFound", `environment ${name} is not active`);
    if (rec.protected)
      throw new SluiceError("Conflict", `environment ${name} is protected and is never destroyed by Sluice`, {
        hint: "remove `protected: true` from its rule first",
      });
    const st = this.envs.get(name);
    this.envs.delete(name);
    this.retire(name, false, `destroyed by ${who}`, st?.commit ?? null);
  }

  /** Moves an environment's expiry `ms` further (`sluice env extend`). Returns the new expiry. */
  extendEnvironment(name: string, ms: number, who: string): string {
    const rec = this.opts.store.getEnvironment(name);
    if (rec?.state !== "active") throw new SluiceError("NotFound", `environment ${name} is not active`);
    if (rec.expiresAt === null)
      throw new SluiceError("Conflict", `environment ${name} has no TTL; it does not expire`, {
        hint: "give its rule a ttl to make it expire",
      });
    const expiresAt = addToExpiry(rec.expiresAt, this.now(), ms);
    this.opts.store.setEnvironmentExpiry(name, expiresAt);
    this.event(
      name,
      null,
      "info",
      "EnvironmentExtended",
      `environment ${name} extended to ${expiresAt} by ${who}`,
    );
    this.emitEvent({ type: "environment", env: name, state: "active", branch: rec.branch });
    return expiresAt;
  }

  /**
   * Destroys what TTLs and purge schedules say is due now; runs every `lifecycleIntervalMs`.
   * Returns what it purged.
   */
  async lifecycleTick(): Promise<PurgeDecision[]> {
    const now = this.now();
    const out: PurgeDecision[] = [];
    for (const s of this.sources.values()) {
      if (!s.environments || !s.purge) continue;
      const last = this.opts.store.getKV("purge", s.key);
      const lastCheck = last ? new Date(last) : this.startedAt;
      if (!purgeDue(s.purge, lastCheck, now)) continue;
      this.opts.store.setKV("purge", s.key, now.toISOString());
      const candidates = [];
      for (const st of this.envs.values()) {
        if (st.source !== s.key) continue;
        const rec = this.opts.store.getEnvironment(st.env.name);
        if (rec?.state === "active") candidates.push(rec);
      }
      for (const v of purgeVictims(s.purge, candidates, now)) {
        const st = this.envs.get(v.name);
        this.envs.delete(v.name);
        this.event(v.name, null, "info", "EnvironmentPurged", `environment ${v.name} purged: ${v.why}`);
        this.retire(v.name, false, `purged: ${v.why}`, st?.commit ?? null);
        out.push(v);
      }
    }
    return out;
  }

  /**
   * Finds (and unless `dryRun` removes) what targets still hold for environments that no longer
   * exist: debris of a destroy that was killed, or of a lost state.
   */
  async gc(opts: { dryRun: boolean; who: string }): Promise<Orphan[]> {
    const recs = this.opts.store.listEnvironments();
    const live = new Set(recs.filter((r) => r.state !== "destroyed").map((r) => r.name));
    const targets = new Set(recs.map((r) => r.target));
    const out: Orphan[] = [];
    for (const name of targets) {
      const t = this.opts.target(name);
      if (t.sweep) out.push(...(await t.sweep(live, { dryRun: opts.dryRun })));
    }
    if (!opts.dryRun && out.length > 0) {
      const failed = out.filter((o) => o.result.startsWith("failed"));
      this.event(
        null,
        null,
        failed.length ? "warning" : "info",
        "GarbageCollected",
        `${opts.who} removed ${out.length - failed.length} orphaned object(s)${failed.length ? `; ${failed.length} failed: ${failed.map((f) => f.subject).join(", ")}` : ""}`,
      );
    }
    return out;
  }

  // --- images ---------------------------------------------------------------------------------

  private startImages(): void {
    const c = this.config;
    if (![...byKind(c, "ImageRepository"), ...byKind(c, "ImageUpdateAutomation")].length) return;
    this.images = new ImageLoop({
      store: this.opts.store,
      log: this.log,
      workDir: this.opts.workDir ?? join(tmpdir(), `sluice-automation-${process.pid}`),
      config: () => this.config,
      source: (k) => this.sources.get(k)?.spec,
      secret: (ns, name) =>
        this.config.supporting.find(
          (o) => o.kind === "Secret" && o.metadata.namespace === ns && o.metadata.name === name,
        )?.data,
      event: (severity, reason, message) => this.event(null, null, severity, reason, message),
      pushed: (k) => void this.refreshSource(k, "image-update"),
    });
    this.images.start();
  }

  private startBuilds(): void {
    if (!byKind(this.config, "Build").length) return;
    this.builds = new BuildLoop({
      store: this.opts.store,
      podman:
        this.opts.podman ??
        (async () => {
          const p = new Podman();
          await p.check();
          return p;
        }),
      config: () => this.config,
      source: (k) => this.sources.get(k)?.spec,
      fetch: (k, spec) => this.opts.source.fetch(k, spec),
      secret: (ns, name) =>
        this.config.supporting.find(
          (o) => o.kind === "Secret" && o.metadata.namespace === ns && o.metadata.name === name,
        )?.data,
      event: (severity, reason, message) => this.event(null, null, severity, reason, message),
      changed: (rec, chunk) => {
        this.emitEvent({
          type: "build",
          build: rec.build,
          commit: rec.commit,
          result: rec.result,
          ...(chunk ? { log: chunk } : {}),
        });
        if (chunk || rec.result === "running") return;
        // Units waiting on this build can go (or learn that it failed).
        for (const st of this.envs.values()) {
          if (st.commit !== rec.commit) continue;
          for (const k of this.kustomizationsFor(st.source))
            if ((k.spec.dependsOn ?? []).some((d) => d.kind === "Build" && rec.build.endsWith(`/${d.name}`)))
              this.queue.enqueue(unitKey({ env: st.env.name, unit: k.metadata.name }), "build");
        }
      },
    });
  }

  // --- delivery: promotion, rollback, rollout commands -----------------------------------------

  private gitTargetOf(env: string): { st: EnvState; target: GitTarget } {
    const st = this.envs.get(env);
    if (!st?.env.branch)
      throw new SluiceError("NotFound", `environment ${env} is not active or follows no branch`);
    const spec = this.sources.get(st.source)!.spec;
    const auth: GitAuth = {};
    if (spec.secret?.username) auth.username = spec.secret.username;
    if (spec.secret?.password) auth.password = spec.secret.password;
    if (spec.secret?.bearerToken) auth.bearerToken = spec.secret.bearerToken;
    return { st, target: { repoUrl: spec.url, ...(Object.keys(auth).length ? { auth } : {}) } };
  }

  /**
   * Promotes environment `from` to `to` the GitOps way: `to`'s branch moves to `from`'s commit
   * (fast-forward, else a merge commit), then `to` reconciles. Recorded with who and why.
   */
  async promote(from: string, to: string, who: string, reason?: string): Promise<PromoteResult> {
    const a = this.gitTargetOf(from);
    const b = this.gitTargetOf(to);
    if (a.st.source !== b.st.source)
      throw new SluiceError("Conflict", `environments ${from} and ${to} follow different repositories`);
    if (b.st.env.protected === false && a.st.env.protected === true)
      this.log.warn({ from, to }, "promoting a protected environment into an unprotected one");
    const r = await promoteBranch(b.target, {
      from: a.st.env.branch!,
      to: b.st.env.branch!,
      who,
      ...(reason ? { reason } : {}),
    });
    this.event(
      to,
      null,
      "info",
      "Promoted",
      `${who} promoted ${from} (${a.st.env.branch}) to ${to} (${b.st.env.branch}): ${r.mode} to ${r.commit.slice(0, 10)}${reason ? `; why: ${reason}` : ""}`,
    );
    await this.refreshSource(b.st.source, "promote");
    return r;
  }

  /**
   * Rolls an environment back: instantly where a Rollout still has the previous version (a
   * standby slot or a stable version under a canary), else by reverting the last commit of its
   * branch in Git.
   */
  async rollback(
    env: string,
    who: string,
    reason?: string,
  ): Promise<{ mode: "instant" | "revert"; detail: string }> {
    const st = this.envs.get(env);
    if (!st) throw new SluiceError("NotFound", `environment ${env} is not active`);
    const target = this.opts.target(st.env.target);
    const instant: string[] = [];
    for (const unit of this.unitsOf(env)) {
      const u = { env, unit };
      if (!this.rollouts.status(u).some((r) => r.instantRollback)) continue;
      const res = await this.rollouts.rollback(target, u, undefined, undefined, `rolled back by ${who}`);
      if (res) {
        instant.push(...res.rollouts.map((r) => `${unit}/${r.name}`));
        for (const ev of res.events)
          this.event(env, unit, ev.severity, `Rollout${ev.type}`, `Rollout ${ev.rollout}: ${ev.message}`);
      }
    }
    if (instant.length) {
      const detail = `traffic switched back to the previous version of ${instant.join(", ")}`;
      this.event(
        env,
        null,
        "warning",
        "RolledBack",
        `${who} rolled back ${env}: ${detail}${reason ? `; why: ${reason}` : ""}`,
      );
      return { mode: "instant", detail };
    }
    const g = this.gitTargetOf(env);
    const r = await revertLast(g.target, { branch: st.env.branch!, who, ...(reason ? { reason } : {}) });
    const detail = `reverted ${r.reverted.slice(0, 10)} on ${st.env.branch} with ${r.commit.slice(0, 10)}`;
    this.event(
      env,
      null,
      "warning",
      "RolledBack",
      `${who} rolled back ${env}: ${detail}${reason ? `; why: ${reason}` : ""}`,
    );
    await this.refreshSource(st.source, "rollback");
    return { mode: "revert", detail };
  }

  /** `sluice rollout promote|abort|resume`: acts on a unit's Rollout now, then reconciles it. */
  async rolloutCommand(
    env: string,
    unit: string,
    command: "promote" | "abort" | "resume",
    who: string,
    name?: string,
  ): Promise<RolloutStatus[]> {
    const st = this.envs.get(env);
    if (!st || !this.unitsOf(env).includes(unit))
      throw new SluiceError("NotFound", `unit ${unit} of environment ${env} does not exist`);
    const target = this.opts.target(st.env.target);
    const u = { env, unit };
    const res =
      command === "promote"
        ? await this.rollouts.promote(target, u, name)
        : command === "resume"
          ? await this.rollouts.resume(target, u, name)
          : await this.rollouts.abort(target, u, name, undefined, `aborted by ${who}`);
    for (const ev of res.events)
      this.event(env, unit, ev.severity, `Rollout${ev.type}`, `Rollout ${ev.rollout}: ${ev.message}`);
    this.event(
      env,
      unit,
      "info",
      `Rollout${command[0]!.toUpperCase()}${command.slice(1)}`,
      `${who}: rollout ${command}`,
    );
    this.queue.enqueue(unitKey(u), `rollout-${command}`);
    return res.rollouts;
  }

  /** The Rollouts of an environment's units. */
  rolloutStatus(env: string): { unit: string; rollouts: RolloutStatus[] }[] {
    return this.unitsOf(env)
      .map((unit) => ({ unit, rollouts: this.rollouts.status({ env, unit }) }))
      .filter((x) => x.rollouts.length > 0);
  }

  /** The last smoke-test results per unit (`sluice get checks`). */
  listChecks(env?: string): CheckRecord[] {
    return this.opts.store
      .listKV("checks")
      .map((e) => JSON.parse(e.value) as CheckRecord)
      .filter((c) => !env || c.env === env)
      .sort((a, b) => `${a.env}/${a.unit}/${a.smokeTest}`.localeCompare(`${b.env}/${b.unit}/${b.smokeTest}`));
  }

  /** Builds, newest first (`sluice get builds`). */
  listBuilds(): BuildRecord[] {
    return this.builds?.list() ?? [];
  }

  /** The stored log of a build. */
  buildLog(build: string, commit: string): string | undefined {
    return this.builds?.log(build.includes("/") ? build : `${DEFAULT_NAMESPACE}/${build}`, commit);
  }

  /** Builds a `Build` at a branch or tag now. */
  buildNow(name: string, ref: { branch: string } | { tag: string }): Promise<BuildRecord> {
    if (!this.builds) throw new SluiceError("NotFound", `Build ${name} is not configured`);
    return this.builds.buildNow(name, ref);
  }

  /** Repositories, policies and automations with their last results (`sluice get images`). */
  imageStatus(): ImageStatus {
    return this.images?.status() ?? { repositories: [], policies: [], automations: [] };
  }

  /** Scans one ImageRepository (`namespace/name` or name) — or all — now, then runs automations that moved. */
  async scanImages(name?: string): Promise<string[]> {
    const repos = byKind(this.config, "ImageRepository").filter(
      (r) => !name || r.metadata.name === name || `${r.metadata.namespace}/${r.metadata.name}` === name,
    );
    if (name && !repos.length) throw new SluiceError("NotFound", `ImageRepository ${name} is not configured`);
    if (!this.images) return [];
    await Promise.all(repos.map((r) => this.images!.scan(`${r.metadata.namespace}/${r.metadata.name}`)));
    await this.images.idle();
    return repos.map((r) => `${r.metadata.namespace}/${r.metadata.name}`);
  }

  /**
   * The shard assignment changed: environments no longer owned are dropped from this agent (never
   * destroyed: their new owner keeps them), newly owned ones are picked up and reconciled.
   */
  async reshard(): Promise<void> {
    for (const [name] of this.envs) if (!this.owned(name)) this.envs.delete(name);
    await Promise.all([...this.sources.values()].map((s) => this.refreshSource(s.key, "reshard")));
  }

  private owned(env: string): boolean {
    return this.opts.owns ? this.opts.owns(env) : true;
  }

  /** The source (`namespace/name`) whose URL is one of these, if any. */
  sourceFor(repoUrls: string[]): string | undefined {
    return [...this.sources.values()].find((s) => repoUrls.some((u) => sameRepo(u, s.spec.url)))?.key;
  }

  /** Fetches one ref of a source into a read-only snapshot (pull-request plans). */
  fetchRevision(source: string, ref: { branch: string } | { name: string }): Promise<Artifact> {
    const s = this.sources.get(source);
    if (!s) throw new SluiceError("NotFound", `source ${source} is not configured`);
    return this.opts.source.fetch(source, { ...s.spec, ref });
  }

  /** The age identities SOPS files are decrypted with (for plans that render like the agent). */
  get decryptionKeys(): AgeIdentities | undefined {
    return this.opts.ageIdentities;
  }

  /** The loaded configuration (read-only), e.g. for the webhook receivers. */
  get configuration(): Config {
    return this.config;
  }

  // --- configuration --------------------------------------------------------------------------

  private loadConfiguration(): void {
    this.config = loadConfig(this.opts.configRoot, this.opts.configPath);
    const envObjs = byKind(this.config, "Environments");
    for (const repo of byKind(this.config, "GitRepository")) {
      const key = `${repo.metadata.namespace}/${repo.metadata.name}`;
      const environments = envObjs.find(
        (e) =>
          e.spec.sourceRef.name === repo.metadata.name && e.metadata.namespace === repo.metadata.namespace,
      );
      const open = this.opts.store.getKV("pullRequests", key);
      this.sources.set(key, {
        key,
        obj: repo,
        spec: this.gitSpec(repo),
        intervalMs: parseDuration(repo.spec.interval) ?? 60_000,
        environments,
        ...(environments
          ? {
              purge: purgePolicy(
                environments.spec as EnvironmentsSpec,
                `${environments.origin}: Environments ${environments.metadata.name}`,
              ),
            }
          : {}),
        pullRequests: new Map(
          open ? (JSON.parse(open) as PullRequestRef[]).map((p) => [p.number, p] as const) : [],
        ),
        branches: new Map(),
        ok: false,
        message: "not fetched yet",
        lastFetchAt: null,
        failures: 0,
      });
    }
    for (const e of envObjs) {
      if (![...this.sources.values()].some((s) => s.environments === e)) {
        throw new SluiceError(
          "ConfigInvalid",
          `${e.origin}: Environments ${e.metadata.name} refers to GitRepository ${e.spec.sourceRef.name}, which is not defined`,
        );
      }
    }
    for (const k of byKind(this.config, "Kustomization")) {
      const src = `${k.spec.sourceRef.namespace ?? k.metadata.namespace}/${k.spec.sourceRef.name}`;
      if (!this.sources.has(src)) {
        throw new SluiceError(
          "ConfigInvalid",
          `${k.origin}: Kustomization ${k.metadata.name} refers to GitRepository ${src}, which is not defined`,
        );
      }
    }
    const names = byKind(this.config, "Kustomization").map((k) => k.metadata.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup)
      throw new SluiceError(
        "ConfigInvalid",
        `two Kustomizations are named ${dup}; unit names must be unique`,
      );
  }

  private gitSpec(repo: ConfigObject<"GitRepository">): GitRepositorySpec {
    const spec: GitRepositorySpec = { url: repo.spec.url };
    if (repo.spec.ref) spec.ref = repo.spec.ref;
    if (repo.spec.ignore) spec.ignore = repo.spec.ignore;
    const t = repo.spec.timeout ? parseDuration(repo.spec.timeout) : undefined;
    if (t) spec.timeoutMs = t;
    if (repo.spec.secretRef) {
      const s = this.supporting("Secret", repo.metadata.namespace, repo.spec.secretRef.name, repo.origin);
      spec.secret = {};
      if (s.username) spec.secret.username = s.username;
      if (s.password) spec.secret.password = s.password;
      if (s.bearerToken) spec.secret.bearerToken = s.bearerToken;
      if (s.identity) spec.secret.identity = s.identity;
      if (s.known_hosts) spec.secret.knownHosts = s.known_hosts;
    }
    return spec;
  }

  private supporting(
    kind: "ConfigMap" | "Secret",
    namespace: string,
    name: string,
    origin: string,
    optional = false,
  ): Record<string, string> {
    const o = this.config.supporting.find(
      (s) => s.kind === kind && s.metadata.namespace === namespace && s.metadata.name === name,
    );
    if (!o) {
      if (optional) return {};
      throw new SluiceError(
        "ConfigInvalid",
        `${origin}: ${kind} ${namespace}/${name} is referenced but not defined in the configuration`,
      );
    }
    return o.data;
  }

  private kustomizationsFor(source: string): ConfigObject<"Kustomization">[] {
    return byKind(this.config, "Kustomization").filter(
      (k) => `${k.spec.sourceRef.namespace ?? k.metadata.namespace}/${k.spec.sourceRef.name}` === source,
    );
  }

  // --- sources and environments ---------------------------------------------------------------

  /** Lists a source's branches and brings environments and units up to date with them. */
  refreshSource(key: string, trigger: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const p = this.doRefreshSource(key, trigger).finally(() => this.refreshing.delete(p));
    this.refreshing.add(p);
    return p;
  }

  private async doRefreshSource(key: string, trigger: string): Promise<void> {
    const s = this.sources.get(key);
    if (!s || this.stopped) return;
    if (s.timer) clearTimeout(s.timer);
    const end = this.metrics.gitFetchDuration.startTimer({ source: key });
    try {
      if (s.environments || !s.spec.ref || s.spec.ref.branch) {
        s.branches = await this.opts.source.listBranches(key, s.spec);
      } else {
        // A tag, semver or commit ref: the artifact itself is the only "branch".
        const a = await this.opts.source.fetch(key, s.spec);
        s.branches = new Map([[a.revision.split("@")[0] ?? DEFAULT_ENV, a.commit]]);
      }
      end();
      const wasOk = s.ok;
      s.ok = true;
      s.failures = 0;
      s.lastFetchAt = new Date().toISOString();
      s.message = `${s.branches.size} branch(es) listed`;
      if (!wasOk) this.emitEvent({ type: "source", source: key, ok: true, message: s.message });
      if (this.builds?.buildsOf(key).length) {
        const tags = this.builds.wantsTags(key) ? await this.opts.source.listTags(key, s.spec) : undefined;
        this.builds.onListing(key, s.branches, tags);
      }
      this.syncEnvironments(s, trigger);
      this.schedule(s, s.intervalMs);
    } catch (e) {
      end();
      this.metrics.gitFetchErrors.inc({ source: key });
      s.failures++;
      s.ok = false;
      s.message = errorMessage(e);
      this.event(null, null, "error", "ArtifactFailed", `source ${key}: ${s.message}`);
      this.emitEvent({ type: "source", source: key, ok: false, message: s.message });
      // Back off, but never wait longer than the interval: recovery is noticed by itself.
      const { baseMs, maxMs } = this.opts.backoff ?? { baseMs: 1000, maxMs: 5 * 60_000 };
      const delay = Math.min(s.intervalMs, maxMs, baseMs * 2 ** Math.min(s.failures - 1, 20));
      this.schedule(s, Math.round(delay / 2 + (Math.random() * delay) / 2));
      for (const st of this.envs.values()) {
        if (st.source !== key) continue;
        for (const u of this.unitsOf(st.env.name)) {
          const cur = this.opts.store.getUnitStatus(st.env.name, u);
          if (cur && cur.ready !== "True")
            this.writeStatus(cur, "False", "ArtifactFailed", `source ${key}: ${s.message}`);
        }
      }
    }
  }

  private schedule(s: SourceState, ms: number): void {
    if (this.stopped) return;
    s.timer = setTimeout(() => void this.refreshSource(s.key, "interval"), ms);
    s.timer.unref();
  }

  private syncEnvironments(s: SourceState, trigger: string): void {
    const now = this.now();
    const wanted = new Map<string, Environment>();
    if (s.environments) {
      const spec = s.environments.spec as EnvironmentsSpec;
      // Names given before are kept (stable names); a destroyed environment's name is free again.
      const assigned = new Map<string, string>();
      for (const rec of this.opts.store.listEnvironments()) {
        if (rec.state === "destroyed" && rec.heldCommit === null) continue;
        assigned.set(rec.prNumber !== null ? `pr:${rec.prNumber}` : `branch:${rec.branch}`, rec.name);
      }
      const res = resolveEnvironments(spec, s.branches.keys(), {
        assigned,
        commits: s.branches,
        // A pull request's environment follows its head branch; one not in this repository
        // (a fork) cannot be fetched from here.
        pullRequests: [...s.pullRequests.values()].filter((p) => s.branches.has(p.headRef)),
      });
      for (const c of res.conflicts) this.event(null, null, "warning", "EnvironmentConflict", c);
      for (const e of res.environments) wanted.set(e.name, e);
    } else {
      const branch = s.spec.ref?.branch ?? [...s.branches.keys()][0] ?? "main";
      const name =
        s.obj.metadata.name === DEFAULT_ENV || this.sources.size === 1 ? DEFAULT_ENV : s.obj.metadata.name;
      wanted.set(name, defaultEnvironment(name, branch));
    }
    // Another replica's environments: not ours to create, reconcile or destroy.
    const foreign = new Set([...wanted.keys()].filter((n) => !this.owned(n)));
    for (const n of foreign) wanted.delete(n);
    // New and moved environments.
    for (const env of wanted.values()) {
      const commit = env.branch ? (s.branches.get(env.branch) ?? null) : null;
      const prev = this.envs.get(env.name);
      const rec = this.opts.store.getEnvironment(env.name);
      // Purged or destroyed by a user at this very commit: it stays away until the branch moves.
      if (rec && rec.state !== "active" && rec.heldCommit !== null && rec.heldCommit === commit) {
        wanted.delete(env.name);
        continue;
      }
      const isNew = rec?.state !== "active";
      const revision = commit && env.branch ? `${env.branch}@sha1:${commit}` : (rec?.revision ?? null);
      const pushed = !isNew && revision !== rec?.revision;
      if (isNew || pushed || !prev) {
        let expiresAt = isNew ? null : (rec?.expiresAt ?? null);
        if (env.ttlMs === null) expiresAt = null;
        else if (isNew || expiresAt === null) expiresAt = new Date(now.getTime() + env.ttlMs).toISOString();
        else if (pushed) expiresAt = extendedExpiry(expiresAt, now, env.ttlMs);
        this.opts.store.upsertEnvironment({
          name: env.name,
          branch: env.branch,
          rule: env.rule,
          target: env.target,
          protected: env.protected,
          ttlSeconds: env.ttlMs === null ? null : Math.round(env.ttlMs / 1000),
          expiresAt,
          state: "active",
          revision,
          prNumber: env.prNumber,
          heldCommit: null,
          ...(isNew ? { createdAt: now.toISOString() } : rec ? { createdAt: rec.createdAt } : {}),
        });
        if (isNew) {
          this.event(
            env.name,
            null,
            "info",
            "EnvironmentCreated",
            `environment ${env.name} created for ${env.prNumber !== null ? `pull request ${env.prNumber} (branch ${env.branch})` : `branch ${env.branch}`}`,
          );
          this.emitEvent({ type: "environment", env: env.name, state: "active", branch: env.branch });
        }
      }
      this.envs.set(env.name, { env, source: s.key, commit });
      if (!prev || prev.commit !== commit || trigger === "startup" || trigger === "manual") {
        this.enqueueEnvironment(env.name, prev && prev.commit !== commit ? "source" : trigger);
      }
    }
    // Environments of this source whose branch (or pull request) is gone.
    for (const [name, st] of this.envs) {
      if (st.source !== s.key || wanted.has(name)) continue;
      if (foreign.has(name) || !this.owned(name)) {
        this.envs.delete(name);
        continue;
      }
      this.envs.delete(name);
      const rec = this.opts.store.getEnvironment(name);
      if (rec?.state !== "active") continue; // held back by a purge
      this.retire(
        name,
        st.env.protected,
        st.env.prNumber !== null ? "its pull request was closed" : "its branch was deleted",
      );
    }
    const rules = s.environments ? (s.environments.spec as EnvironmentsSpec).rules : [];
    for (const rec of this.opts.store.listEnvironments()) {
      if (rec.state !== "active" || wanted.has(rec.name) || this.envs.has(rec.name) || !this.owned(rec.name))
        continue;
      if (foreign.has(rec.name)) continue;
      // Known from before a restart, from this source's rules, and no longer listed.
      if (rec.rule && rules.some((r) => (r.branch ?? "pullRequest") === rec.rule)) {
        this.retire(
          rec.name,
          rec.protected,
          rec.prNumber !== null ? "its pull request was closed" : "its branch was deleted",
        );
      }
    }
    this.metrics.environments.set(
      this.opts.store.listEnvironments().filter((e) => e.state === "active").length,
    );
  }

  /** Starts destroying an environment; with `hold`, it is not re-created while its branch stays at that commit. */
  private retire(name: string, isProtected: boolean, why: string, hold?: string | null): void {
    if (isProtected) {
      this.event(
        name,
        null,
        "warning",
        "EnvironmentKept",
        `environment ${name} is protected; not destroyed although ${why}`,
      );
      return;
    }
    this.opts.store.setEnvironmentState(
      name,
      "destroying",
      hold !== undefined ? { heldCommit: hold ?? null } : {},
    );
    this.emitEvent({ type: "environment", env: name, state: "destroying", branch: null });
    this.queue.enqueue(destroyKey(name), why);
  }

  private enqueueEnvironment(env: string, trigger: string): void {
    for (const u of this.unitsOf(env)) this.queue.enqueue(unitKey({ env, unit: u }), trigger);
  }

  // --- the work -------------------------------------------------------------------------------

  private async work(key: string, triggers: string[]): Promise<void> {
    this.metrics.queueDepth.set(this.queue.depth);
    this.metrics.queueActive.set(this.queue.active);
    if (key.startsWith("destroy:")) {
      const name = key.slice("destroy:".length);
      return this.owned(name) ? this.destroyEnvironment(name) : undefined;
    }
    const { env, unit } = parseUnitKey(key);
    if (!this.owned(env)) return; // handed to another replica while queued
    const st = this.envs.get(env);
    if (!st) return; // the environment went away while this was queued
    const kust = this.kustomizationsFor(st.source).find((k) => k.metadata.name === unit);
    if (!kust) return;
    await this.reconcileUnit(st, kust, triggers.join(","));
  }

  private async reconcileUnit(
    st: EnvState,
    kust: ConfigObject<"Kustomization">,
    trigger: string,
  ): Promise<void> {
    const env = st.env;
    const unit = kust.metadata.name;
    const spec = kust.spec as KustomizationSpec;
    const key = unitKey({ env: env.name, unit });
    const intervalMs = parseDuration(spec.interval) ?? 600_000;
    const retryMs = spec.retryInterval ? (parseDuration(spec.retryInterval) ?? intervalMs) : intervalMs;
    const timeoutMs = spec.timeout ? (parseDuration(spec.timeout) ?? 300_000) : 300_000;
    const prior = this.opts.store.getUnitStatus(env.name, unit);
    const base = {
      env: env.name,
      unit,
      revision: prior?.revision ?? null,
      lastAppliedRevision: prior?.lastAppliedRevision ?? null,
      lastAppliedAt: prior?.lastAppliedAt ?? null,
      drift: prior?.drift ?? false,
      suspended: prior?.suspended ?? false,
    };
    if (base.suspended || spec.suspend) {
      this.writeStatus(base, prior?.ready ?? "Unknown", "Suspended", "Reconciliation is suspended");
      return;
    }

    // Dependencies: cycles never run; a dependency that is not Ready holds this unit back.
    const graph = analyzeGraph(
      this.kustomizationsFor(st.source).map((k) => ({
        id: k.metadata.name,
        dependsOn: unitDeps(k),
      })),
    );
    const cycle = graph.cycles.find((c) => c.includes(unit));
    if (cycle || graph.blocked.has(unit)) {
      const msg = cycle
        ? `dependency cycle: ${[...cycle, cycle[0]].join(" → ")}; nothing in it is applied`
        : "depends on a unit in a dependency cycle";
      this.writeStatus(base, "False", "DependencyCycle", msg);
      return;
    }
    for (const dep of spec.dependsOn ?? []) {
      if (dep.kind === "Build") {
        const gate = this.builds?.gate(dep.name, env.branch, st.commit) ?? {
          ok: false as const,
          why: `Build ${dep.name} is not configured`,
          failed: true,
        };
        if (!gate.ok) {
          this.writeStatus(base, "False", "DependencyNotReady", gate.why);
          if (!gate.failed) this.scheduleUnit(key, Math.min(retryMs, 5_000));
          return;
        }
        continue;
      }
      const ds = this.opts.store.getUnitStatus(env.name, dep.name);
      const exists = this.unitsOf(env.name).includes(dep.name);
      if (
        !exists ||
        !ds ||
        ds.ready !== "True" ||
        (st.commit && !ds.lastAppliedRevision?.endsWith(st.commit))
      ) {
        const msg = exists
          ? `dependency '${dep.name}' is not ready`
          : `dependency '${dep.name}' does not exist`;
        this.writeStatus(base, "False", "DependencyNotReady", msg);
        this.scheduleUnit(key, Math.min(retryMs, 5_000));
        return;
      }
    }

    const stages: RunStage[] = [];
    const runId = this.opts.store.startRun({
      env: env.name,
      unit,
      revision: st.commit ? `${env.branch}@sha1:${st.commit}` : null,
      trigger,
    });
    const started = Date.now();
    const stage = async <T>(name: string, reason: Reason, fn: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      try {
        const v = await fn();
        stages.push({ name, result: "succeeded", ms: Date.now() - t0 });
        return v;
      } catch (e) {
        stages.push({ name, result: "failed", ms: Date.now() - t0, message: errorMessage(e) });
        // A target says more precisely what failed during an apply (prune, or health with wait).
        const precise =
          isSluiceError(e) &&
          (e.code === "PruneFailed" || e.code === "HealthCheckFailed" || e.code === "DependencyNotReady")
            ? e.code
            : reason;
        throw new StageError(precise, e);
      }
    };
    let changeSet: ChangeSet | undefined;
    let revision: string | null = null;
    let requeueMs = Number.POSITIVE_INFINITY;
    try {
      const artifact: Artifact = await stage("artifact", "ArtifactFailed", () =>
        env.branch
          ? this.opts.source.checkout(st.source, this.sources.get(st.source)!.spec, env.branch)
          : this.opts.source.fetch(st.source, this.sources.get(st.source)!.spec),
      );
      revision = artifact.revision;
      // The branch may have moved since the listing: the Build gates hold for the commit deployed.
      if (artifact.commit !== st.commit)
        for (const dep of spec.dependsOn ?? []) {
          if (dep.kind !== "Build") continue;
          const gate = this.builds?.gate(dep.name, env.branch, artifact.commit);
          if (gate && !gate.ok) throw new StageError("DependencyNotReady", new Error(gate.why));
        }
      base.revision = revision;
      this.writeStatus(base, prior?.ready ?? "Unknown", "Progressing", `Reconciling revision ${revision}`);
      const rendered = await stage("render", "BuildFailed", async () =>
        splitSluiceObjects(await this.renderUnit(env, kust, artifact)),
      );
      const objects = rendered.workloads;
      // Ownership can move while rendering: the new owner applies, never both.
      if (!this.owned(env.name)) throw new HandedOff();
      const target = this.targetFor(env.target, kust);
      // Every apply goes through the rollout engine: a unit without a Rollout (and no recorded
      // rollout state) is applied as is; one with a Rollout gets its slots, traffic and checks.
      const rolled = await stage("apply", "ReconciliationFailed", () =>
        this.rollouts.reconcile({
          unit: { env: env.name, unit },
          target,
          objects,
          rollouts: rendered.rollouts,
          smokeTests: rendered.smokeTests,
          apply: { prune: spec.prune, wait: spec.wait ?? true, timeoutMs, force: spec.force ?? false },
        }),
      );
      const result = rolled.apply;
      for (const ev of rolled.events)
        this.event(env.name, unit, ev.severity, `Rollout${ev.type}`, `Rollout ${ev.rollout}: ${ev.message}`);
      if (rolled.requeueAfterMs !== undefined) requeueMs = rolled.requeueAfterMs;
      const aborted = rolled.rollouts.find((r) => r.phase === "Aborted");
      if (aborted) {
        this.opts.store.setInventory(env.name, unit, result.inventory.entries, revision);
        stages.push({ name: "rollout", result: "failed", ms: 0, message: aborted.message });
        throw new StageError(
          "SmokeTestFailed",
          new Error(`Rollout ${aborted.name} aborted: ${aborted.message}`),
        );
      }
      changeSet = result.changeSet;
      this.opts.store.setInventory(env.name, unit, result.inventory.entries, revision);
      if (result.health && result.health.status !== "Healthy") {
        const bad = result.health.objects
          .filter((o) => o.status !== "Healthy")
          .map((o) => `${o.subject}: ${o.message}`);
        stages.push({ name: "health", result: "failed", ms: 0, message: bad.join("; ") });
        throw new StageError("HealthCheckFailed", new Error(`health check failed: ${bad.join("; ")}`));
      }
      // A Rollout runs its own smoke test against the new version before it gets traffic; the
      // others run here, against what now serves.
      const byRollout = new Set(rendered.rollouts.map((r) => r.spec.smokeTest).filter(Boolean));
      const smokeTests = rendered.smokeTests.filter((t) => !byRollout.has(t.name));
      if (this.opts.postApply && smokeTests.length)
        await stage("checks", "SmokeTestFailed", () =>
          this.opts.postApply!({
            env,
            unit,
            objects,
            smokeTests,
            record: (smokeTest, report) => {
              const rec: CheckRecord = {
                env: env.name,
                unit,
                smokeTest,
                revision,
                runId,
                at: new Date().toISOString(),
                ok: report.ok,
                results: report.results,
              };
              this.opts.store.setKV("checks", `${env.name}/${unit}/${smokeTest}`, JSON.stringify(rec));
            },
          }),
        );
      const counts = countActions(changeSet);
      // Objects with reconcile disabled are never written; their drift is reported, not corrected.
      const held = changeSet.entries.filter((e) => e.action === "skipped" && /^drifted/.test(e.reason ?? ""));
      const drift =
        (prior?.lastAppliedRevision === revision &&
          counts.created + counts.configured + counts.deleted > 0) ||
        held.length > 0;
      if (held.length && !prior?.drift)
        this.event(
          env.name,
          unit,
          "warning",
          "DriftDetected",
          `${held.map((e) => e.subject).join(", ")} differ${held.length === 1 ? "s" : ""} from ${revision}; reconcile is disabled on ${held.length === 1 ? "it" : "them"}, so not corrected`,
        );
      const nowIso = new Date().toISOString();
      Object.assign(base, { lastAppliedRevision: revision, lastAppliedAt: nowIso, drift });
      this.writeStatus(base, "True", "ReconciliationSucceeded", `Applied revision: ${revision}`);
      this.opts.store.finishRun(runId, { result: "succeeded", stages, summary: summary(changeSet) });
      this.metrics.reconcileDuration.observe(
        { env: env.name, unit, result: "succeeded" },
        (Date.now() - started) / 1000,
      );
      if (drift)
        this.event(
          env.name,
          unit,
          "warning",
          "DriftCorrected",
          `live state differed from ${revision}; corrected ${describe(changeSet)}`,
        );
      this.event(
        env.name,
        unit,
        "info",
        "ReconciliationSucceeded",
        `${revision}: ${describe(changeSet)} (${Date.now() - started} ms)`,
      );
      this.emitEvent({ type: "run", env: env.name, unit, runId, result: "succeeded", changeSet });
      this.scheduleUnit(key, Math.min(intervalMs, requeueMs));
      // Dependents waiting on this unit can go now.
      for (const k of this.kustomizationsFor(st.source)) {
        if (unitDeps(k).includes(unit))
          this.queue.enqueue(unitKey({ env: env.name, unit: k.metadata.name }), "dependency");
      }
    } catch (e) {
      if (e instanceof HandedOff) {
        // Not a failure: the environment's new owner reconciles it; this run just stops.
        this.opts.store.finishRun(runId, { result: "interrupted", message: e.message, stages, summary: {} });
        return;
      }
      const reason: Reason = e instanceof StageError ? e.reason : "ReconciliationFailed";
      const msg = errorMessage(e instanceof StageError ? e.cause : e);
      this.writeStatus(base, "False", reason, msg);
      this.opts.store.finishRun(runId, {
        result: "failed",
        reason,
        message: msg,
        stages,
        summary: changeSet ? summary(changeSet) : {},
      });
      this.metrics.reconcileDuration.observe(
        { env: env.name, unit, result: "failed" },
        (Date.now() - started) / 1000,
      );
      this.event(env.name, unit, "error", reason, msg);
      this.emitEvent({ type: "run", env: env.name, unit, runId, result: "failed" });
      this.scheduleUnit(key, Math.min(retryMs, requeueMs));
      throw e;
    }
  }

  private async renderUnit(
    env: Environment,
    kust: ConfigObject<"Kustomization">,
    artifact: Artifact,
  ): Promise<KubeObject[]> {
    const spec = kust.spec as KustomizationSpec;
    const pathVars = new Map(Object.entries(env.vars));
    const sub = envsubst(spec.path ?? "./", pathVars, { strict: true });
    if (sub.missing.length) {
      throw new SluiceError(
        "BuildFailed",
        `Kustomization ${kust.metadata.name}: spec.path uses undefined variables ${sub.missing.join(", ")}`,
      );
    }
    const unitLayers = [];
    for (const ref of spec.postBuild?.substituteFrom ?? []) {
      if (ref.kind === "StackOutputs") {
        // Outputs of an infrastructure unit applied in this environment (`sluice stack apply`).
        const dir = this.opts.infraStateDir;
        if (!dir || !readUnitOutputs(dir, env.name, ref.name, ref.unit)) {
          if (ref.optional) continue;
          throw new SluiceError(
            "DependencyNotReady",
            `Kustomization ${kust.metadata.name}: stack unit ${ref.name}/${ref.unit} has not been applied in environment ${env.name}`,
            { hint: `run \`sluice stack apply --env ${env.name}\` first` },
          );
        }
        const o = stackOutputsAsVariables(dir, env.name, ref.name, ref.unit);
        unitLayers.push({ source: o.source, vars: o.vars });
        continue;
      }
      unitLayers.push({
        source: `${ref.kind} ${ref.name}`,
        vars: this.supporting(
          ref.kind,
          kust.metadata.namespace,
          ref.name,
          kust.origin,
          ref.optional ?? false,
        ),
      });
    }
    if (spec.postBuild?.substitute)
      unitLayers.push({ source: "postBuild.substitute", vars: spec.postBuild.substitute });
    const varsDigest = createHash("sha256")
      .update(JSON.stringify([env.vars, unitLayers]))
      .digest("hex");
    const cacheKey = `${artifact.commit}|${sub.output}|${varsDigest}|${spec.postBuild?.allowUndefined ?? false}`;
    const hit = this.renderCache.get(cacheKey);
    if (hit) return hit.objects;
    const result = await render({
      root: artifact.dir,
      path: sub.output,
      environmentVars: env.vars,
      unitVars: unitLayers,
      allowUndefined: spec.postBuild?.allowUndefined ?? false,
      ...(this.opts.ageIdentities ? { ageIdentities: this.opts.ageIdentities } : {}),
      ...(this.opts.renderLimits ? { limits: this.opts.renderLimits } : {}),
    });
    let objects = result.objects;
    if (env.namespace) objects = isolate(objects, env.namespace, this.firstUnit(kust));
    if (spec.targetNamespace)
      objects = objects.map((o) => ({
        ...o,
        metadata: { ...o.metadata, namespace: o.metadata.namespace ?? spec.targetNamespace },
      }));
    this.renderCache.set(cacheKey, { key: cacheKey, objects });
    if (this.renderCache.size > RENDER_CACHE) this.renderCache.delete(this.renderCache.keys().next().value!);
    return objects;
  }

  /**
   * Destroys everything an environment owns, dependents first, and finishes even when some
   * deletes fail: every unit is attempted, and if anything is left the error names it and the
   * queue retries with backoff until the target lets go. Only then is the environment marked
   * destroyed.
   */
  private async destroyEnvironment(name: string): Promise<void> {
    const rec = this.opts.store.getEnvironment(name);
    if (rec?.state !== "destroying") return;
    const target = this.opts.target(rec.target);
    // Dependents first: reverse of the dependency order of what it owns.
    const owned = this.opts.store.listInventories(name).map((i) => i.unit);
    const order = analyzeGraph(
      byKind(this.config, "Kustomization").map((k) => ({
        id: k.metadata.name,
        dependsOn: unitDeps(k),
      })),
    ).order;
    // Also every configured unit, idempotently: the target may hold something the store lost track
    // of (a crash between the target's apply and the store's inventory write).
    const all = new Set([...owned, ...byKind(this.config, "Kustomization").map((k) => k.metadata.name)]);
    const units = [...all].sort((a, b) => order.indexOf(b) - order.indexOf(a));
    const failures: string[] = [];
    for (const unit of units) {
      try {
        const kust = byKind(this.config, "Kustomization").find((k) => k.metadata.name === unit);
        const cs = await (kust ? this.targetFor(rec.target, kust) : target).destroy({ env: name, unit });
        if (owned.includes(unit)) this.opts.store.deleteInventory(name, unit);
        this.rollouts.forget({ env: name, unit });
        if (cs.entries.length > 0 || owned.includes(unit))
          this.event(name, unit, "info", "Pruned", `environment destroyed: ${describe(cs)}`);
      } catch (e) {
        const left = this.opts.store.getInventory(name, unit)?.refs.map((r) => subject(r)) ?? [];
        failures.push(`${unit}: ${errorMessage(e)}${left.length ? ` (left: ${left.join(", ")})` : ""}`);
      }
    }
    if (failures.length > 0) {
      const msg = `destroying environment ${name} left objects behind; retrying: ${failures.join("; ")}`;
      this.event(name, null, "warning", "DestroyIncomplete", msg);
      throw new SluiceError("PruneFailed", msg, {
        hint: "Sluice retries with backoff; `sluice env gc` sweeps debris",
      });
    }
    this.opts.store.setEnvironmentState(name, "destroyed");
    this.opts.store.deleteUnitStatus(name);
    for (const c of this.opts.store.listKV("checks"))
      if (c.key.startsWith(`${name}/`)) this.opts.store.deleteKV("checks", c.key);
    const after = this.opts.store.getEnvironment(name);
    this.event(
      name,
      null,
      "info",
      "EnvironmentDestroyed",
      `environment ${name} destroyed (up ${Math.round(((after?.uptimeSeconds ?? 0) / 3600) * 100) / 100} h in total)`,
    );
    this.emitEvent({ type: "environment", env: name, state: "destroyed", branch: rec.branch });
  }

  /** The target a unit applies to: the environment's, as the unit's service account or remote cluster. */
  private targetFor(name: string, kust: ConfigObject<"Kustomization">): Target {
    const spec = kust.spec as KustomizationSpec;
    if (!spec.serviceAccountName && !spec.kubeConfig) return this.opts.target(name);
    if (name === "local") {
      if (spec.kubeConfig)
        throw new SluiceError(
          "ConfigInvalid",
          `${kust.origin}: Kustomization ${kust.metadata.name}: spec.kubeConfig names a remote cluster, but the environment's target is local`,
          { hint: "give the environment a kubernetes target, or remove spec.kubeConfig" },
        );
      return this.opts.target(name); // a service account means nothing to podman
    }
    const ns = spec.targetNamespace ?? kust.metadata.namespace;
    const access: TargetAccess = { key: "" };
    if (spec.serviceAccountName) access.serviceAccount = `${ns}/${spec.serviceAccountName}`;
    if (spec.kubeConfig) {
      const ref = spec.kubeConfig.secretRef;
      const data = this.supporting("Secret", kust.metadata.namespace, ref.name, kust.origin);
      const text = ref.key ? data[ref.key] : (data.value ?? data["value.yaml"]);
      if (!text)
        throw new SluiceError(
          "ConfigInvalid",
          `${kust.origin}: Kustomization ${kust.metadata.name}: Secret ${ref.name} has no key ${ref.key ?? "value (or value.yaml)"}`,
        );
      access.kubeconfigData = text;
    }
    access.key = `sa=${access.serviceAccount ?? ""};kubeconfig=${
      spec.kubeConfig
        ? `${kust.metadata.namespace}/${spec.kubeConfig.secretRef.name}:${createHash("sha256")
            .update(access.kubeconfigData ?? "")
            .digest("hex")
            .slice(0, 16)}`
        : ""
    }`;
    return this.opts.target(name, access);
  }

  /** Whether a unit is the first of its source's units in dependency order. */
  private firstUnit(kust: ConfigObject<"Kustomization">): boolean {
    const src = `${kust.spec.sourceRef.namespace ?? kust.metadata.namespace}/${kust.spec.sourceRef.name}`;
    const order = analyzeGraph(
      this.kustomizationsFor(src).map((k) => ({
        id: k.metadata.name,
        dependsOn: unitDeps(k),
      })),
    ).order;
    return order[0] === kust.metadata.name;
  }

  private scheduleUnit(key: string, ms: number): void {
    if (this.stopped) return;
    const old = this.unitTimers.get(key);
    if (old) clearTimeout(old);
    const t = setTimeout(() => {
      this.unitTimers.delete(key);
      this.queue.enqueue(key, "interval");
    }, ms);
    t.unref();
    this.unitTimers.set(key, t);
  }

  // --- status, events -------------------------------------------------------------------------

  private writeStatus(
    base: Omit<UnitStatus, "updatedAt" | "ready" | "reason" | "message">,
    ready: UnitStatus["ready"],
    reason: Reason,
    message: string,
  ): void {
    const s = { ...base, ready, reason, message };
    // The store refuses status for unknown environments (e.g. one destroyed meanwhile).
    if (!this.opts.store.getEnvironment(base.env)) return;
    const { changed } = this.opts.store.setUnitStatus(s);
    this.metrics.ready.set(
      { env: base.env, unit: base.unit },
      ready === "True" ? 1 : ready === "False" ? 0 : -1,
    );
    if (changed)
      this.emitEvent({
        type: "unit",
        env: base.env,
        unit: base.unit,
        ready,
        reason,
        message,
        revision: base.revision,
      });
  }

  private event(
    env: string | null,
    unit: string | null,
    severity: "info" | "warning" | "error",
    reason: string,
    message: string,
  ): void {
    this.opts.store.addEvent({ env, unit, severity, reason, message });
    const line = { env, unit, reason };
    if (severity === "error") this.log.error(line, message);
    else if (severity === "warning") this.log.warn(line, message);
    else this.log.info(line, message);
  }

  private emitEvent(e: AgentEvent): void {
    this.emit("change", e);
  }
}

/** The environment moved to another replica (sharding) before this run applied anything. */
class HandedOff extends Error {
  constructor() {
    super("handed off to another replica before the apply");
  }
}

class StageError extends Error {
  constructor(
    readonly reason: Reason,
    override readonly cause: unknown,
  ) {
    super(errorMessage(cause));
  }
}

/**
 * An environment's own namespace (Kubernetes isolation): every object goes into it (cluster-scoped
 * kinds lose it again in the Kubernetes target), and the first unit also owns the Namespace, so a
 * destroy (dependents first) removes it last.
 */
function isolate(objects: KubeObject[], namespace: string, ownsNamespace: boolean): KubeObject[] {
  const out: KubeObject[] = objects
    .filter((o) => o.kind !== "Namespace")
    .map((o) => ({ ...o, metadata: { ...o.metadata, namespace } }));
  if (ownsNamespace)
    out.unshift({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } } as KubeObject);
  return out;
}

/** The units (Kustomizations) a unit depends on; `kind: Build` dependencies are gates, not units. */
function unitDeps(k: ConfigObject<"Kustomization">): string[] {
  return (k.spec.dependsOn ?? []).filter((d) => d.kind !== "Build").map((d) => d.name);
}

function destroyKey(env: string): string {
  return `destroy:${env}`;
}

function summary(cs: ChangeSet): Record<string, number> {
  return Object.fromEntries(Object.entries(countActions(cs)).filter(([, n]) => n > 0));
}

function describe(cs: ChangeSet): string {
  const parts = Object.entries(summary(cs)).map(([k, n]) => `${n} ${k}`);
  return parts.length ? parts.join(", ") : "nothing to do";
}

function redact(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@");
}

function normalizeRepo(u: string): string {
  return u
    .replace(/\/\/[^/@]*@/, "//")
    .replace(/\.git$/, "")
    .replace(/\/+$/, "")
    .toLowerCase();
}

function sameRepo(a: string, b: string): boolean {
  return normalizeRepo(a) === normalizeRepo(b);
}
