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
import type { Logger } from "pino";
import {
  byKind,
  type Config,
  type ConfigObject,
  type EnvironmentsSpec,
  type KustomizationSpec,
  loadConfig,
  parseDuration,
} from "../config/index.js";
import { errorMessage, isSluiceError, type KubeObject, SluiceError } from "../core/index.js";
import { type Environment, resolveEnvironments } from "../envs/index.js";
import { type ChangeSet, countActions } from "../plan/index.js";
import { envsubst } from "../render/envsubst.js";
import { render } from "../render/index.js";
import type { AgeIdentities } from "../sops/index.js";
import type { Artifact, GitRepositorySpec, GitSource } from "../source/index.js";
import type { EnvironmentRecord, RunStage, Store, UnitStatus } from "../store/index.js";
import type { Target } from "../targets/index.js";
import { analyzeGraph } from "./graph.js";
import { AgentMetrics } from "./metrics.js";
import { WorkQueue } from "./queue.js";
import { splitSluiceObjects } from "./sluiceobjects.js";
import { type AgentEvent, type PostApplyHook, parseUnitKey, type Reason, unitKey } from "./types.js";

export interface AgentOptions {
  /** Directory or file holding the configuration (Flux and Sluice kinds). */
  configPath: string;
  /** Everything the configuration reads must stay inside this directory. */
  configRoot: string;
  store: Store;
  source: GitSource;
  /** Resolves an environment's target name (`local`, `kubernetes:<ctx>`). */
  target: (name: string) => Target;
  log: Logger;
  concurrency?: number;
  ageIdentities?: AgeIdentities;
  postApply?: PostApplyHook;
  /** Backoff for failing units and sources. */
  backoff?: { baseMs: number; maxMs: number };
}

interface SourceState {
  key: string;
  obj: ConfigObject<"GitRepository">;
  spec: GitRepositorySpec;
  intervalMs: number;
  /** The Environments object that maps this source's branches, if any. */
  environments?: ConfigObject<"Environments">;
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

  /** True between start() and stop(): what /readyz reports. */
  get started(): boolean {
    return this.running;
  }

  constructor(private readonly opts: AgentOptions) {
    super();
    this.log = opts.log;
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
    this.running = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.running = false;
    for (const s of this.sources.values()) if (s.timer) clearTimeout(s.timer);
    for (const t of this.unitTimers.values()) clearTimeout(t);
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

  listEnvironments(): EnvironmentRecord[] {
    return this.opts.store.listEnvironments();
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
  async requestReconcile(env: string, unit: string, opts: { withSource?: boolean } = {}): Promise<void> {
    const st = this.envs.get(env);
    if (!st || !this.unitsOf(env).includes(unit))
      throw new SluiceError("NotFound", `unit ${unit} of environment ${env} does not exist`);
    if (opts.withSource) await this.refreshSource(st.source, "manual");
    this.queue.resetBackoff(unitKey({ env, unit }));
    this.queue.enqueue(unitKey({ env, unit }), "manual");
  }

  setSuspended(env: string, unit: string, suspended: boolean): void {
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
      `${unit} ${suspended ? "suspended" : "resumed"}`,
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
      this.sources.set(key, {
        key,
        obj: repo,
        spec: this.gitSpec(repo),
        intervalMs: parseDuration(repo.spec.interval) ?? 60_000,
        environments,
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
    const wanted = new Map<string, Environment>();
    if (s.environments) {
      const res = resolveEnvironments(s.environments.spec as EnvironmentsSpec, s.branches.keys());
      for (const c of res.conflicts) this.event(null, null, "warning", "EnvironmentConflict", c);
      for (const e of res.environments) wanted.set(e.name, e);
    } else {
      const branch = s.spec.ref?.branch ?? [...s.branches.keys()][0] ?? "main";
      const name =
        s.obj.metadata.name === DEFAULT_ENV || this.sources.size === 1 ? DEFAULT_ENV : s.obj.metadata.name;
      wanted.set(name, {
        name,
        branch,
        rule: branch,
        target: "local",
        protected: true,
        ttlMs: null,
        vars: { ENV: name, BRANCH: branch },
      });
    }
    // New and moved environments.
    for (const env of wanted.values()) {
      const commit = env.branch ? (s.branches.get(env.branch) ?? null) : null;
      const prev = this.envs.get(env.name);
      const rec = this.opts.store.getEnvironment(env.name);
      if (!prev || !rec || rec.state !== "active") {
        const now = new Date();
        this.opts.store.upsertEnvironment({
          name: env.name,
          branch: env.branch,
          rule: env.rule,
          target: env.target,
          protected: env.protected,
          ttlSeconds: env.ttlMs === null ? null : Math.round(env.ttlMs / 1000),
          expiresAt: env.ttlMs === null ? null : new Date(now.getTime() + env.ttlMs).toISOString(),
          state: "active",
          revision: rec?.revision ?? null,
          ...(rec ? { createdAt: rec.createdAt } : {}),
        });
        if (rec?.state !== "active") {
          this.event(
            env.name,
            null,
            "info",
            "EnvironmentCreated",
            `environment ${env.name} created for branch ${env.branch}`,
          );
          this.emitEvent({ type: "environment", env: env.name, state: "active", branch: env.branch });
        }
      }
      this.envs.set(env.name, { env, source: s.key, commit });
      if (!prev || prev.commit !== commit || trigger === "startup" || trigger === "manual") {
        this.enqueueEnvironment(env.name, prev && prev.commit !== commit ? "source" : trigger);
      }
    }
    // Environments of this source whose branch is gone.
    for (const [name, st] of this.envs) {
      if (st.source !== s.key || wanted.has(name)) continue;
      this.envs.delete(name);
      this.retire(name, st.env.protected, "its branch was deleted");
    }
    for (const rec of this.opts.store.listEnvironments()) {
      if (rec.state !== "active" || wanted.has(rec.name) || this.envs.has(rec.name)) continue;
      // Known from before a restart, from this source's rules, and no longer listed.
      if (
        s.environments &&
        rec.rule &&
        (s.environments.spec as EnvironmentsSpec).rules.some((r) => r.branch === rec.rule)
      ) {
        this.retire(rec.name, rec.protected, "its branch was deleted");
      }
    }
    this.metrics.environments.set(
      this.opts.store.listEnvironments().filter((e) => e.state === "active").length,
    );
  }

  private retire(name: string, isProtected: boolean, why: string): void {
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
    this.opts.store.setEnvironmentState(name, "destroying");
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
    if (key.startsWith("destroy:")) return this.destroyEnvironment(key.slice("destroy:".length));
    const { env, unit } = parseUnitKey(key);
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
        dependsOn: (k.spec.dependsOn ?? []).map((d) => d.name),
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
          isSluiceError(e) && (e.code === "PruneFailed" || e.code === "HealthCheckFailed") ? e.code : reason;
        throw new StageError(precise, e);
      }
    };
    let changeSet: ChangeSet | undefined;
    let revision: string | null = null;
    try {
      const artifact: Artifact = await stage("artifact", "ArtifactFailed", () =>
        env.branch
          ? this.opts.source.checkout(st.source, this.sources.get(st.source)!.spec, env.branch)
          : this.opts.source.fetch(st.source, this.sources.get(st.source)!.spec),
      );
      revision = artifact.revision;
      base.revision = revision;
      this.writeStatus(base, prior?.ready ?? "Unknown", "Progressing", `Reconciling revision ${revision}`);
      const rendered = await stage("render", "BuildFailed", async () =>
        splitSluiceObjects(await this.renderUnit(env, kust, artifact)),
      );
      const objects = rendered.workloads;
      const target = this.opts.target(env.target);
      const result = await stage("apply", "ReconciliationFailed", () =>
        target.apply({ env: env.name, unit }, objects, {
          prune: spec.prune,
          wait: spec.wait ?? true,
          timeoutMs,
          force: spec.force ?? false,
        }),
      );
      changeSet = result.changeSet;
      this.opts.store.setInventory(env.name, unit, result.inventory.entries, revision);
      if (result.health && result.health.status !== "Healthy") {
        const bad = result.health.objects
          .filter((o) => o.status !== "Healthy")
          .map((o) => `${o.subject}: ${o.message}`);
        stages.push({ name: "health", result: "failed", ms: 0, message: bad.join("; ") });
        throw new StageError("HealthCheckFailed", new Error(`health check failed: ${bad.join("; ")}`));
      }
      if (this.opts.postApply)
        await stage("checks", "SmokeTestFailed", () =>
          this.opts.postApply!({ env, unit, objects, smokeTests: rendered.smokeTests }),
        );
      const counts = countActions(changeSet);
      const drift =
        prior?.lastAppliedRevision === revision && counts.created + counts.configured + counts.deleted > 0;
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
      this.scheduleUnit(key, intervalMs);
      // Dependents waiting on this unit can go now.
      for (const k of this.kustomizationsFor(st.source)) {
        if ((k.spec.dependsOn ?? []).some((d) => d.name === unit))
          this.queue.enqueue(unitKey({ env: env.name, unit: k.metadata.name }), "dependency");
      }
    } catch (e) {
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
      this.scheduleUnit(key, retryMs);
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
    });
    let objects = result.objects;
    if (spec.targetNamespace)
      objects = objects.map((o) => ({
        ...o,
        metadata: { ...o.metadata, namespace: o.metadata.namespace ?? spec.targetNamespace },
      }));
    this.renderCache.set(cacheKey, { key: cacheKey, objects });
    if (this.renderCache.size > RENDER_CACHE) this.renderCache.delete(this.renderCache.keys().next().value!);
    return objects;
  }

  private async destroyEnvironment(name: string): Promise<void> {
    const rec = this.opts.store.getEnvironment(name);
    if (!rec || rec.state === "destroyed") return;
    const target = this.opts.target(rec.target);
    // Dependents first: reverse of the dependency order of what it owns.
    const owned = this.opts.store.listInventories(name).map((i) => i.unit);
    const order = analyzeGraph(
      byKind(this.config, "Kustomization").map((k) => ({
        id: k.metadata.name,
        dependsOn: (k.spec.dependsOn ?? []).map((d) => d.name),
      })),
    ).order;
    const units = [...owned].sort((a, b) => order.indexOf(b) - order.indexOf(a));
    for (const unit of units) {
      const cs = await target.destroy({ env: name, unit });
      this.opts.store.deleteInventory(name, unit);
      this.event(name, unit, "info", "Pruned", `environment destroyed: ${describe(cs)}`);
    }
    // Also anything the target still holds that the store lost track of (a crash between the
    // target's apply and the store's inventory write): every configured unit, idempotently.
    for (const k of byKind(this.config, "Kustomization")) {
      if (!units.includes(k.metadata.name)) await target.destroy({ env: name, unit: k.metadata.name });
    }
    this.opts.store.setEnvironmentState(name, "destroyed");
    this.opts.store.deleteUnitStatus(name);
    this.event(name, null, "info", "EnvironmentDestroyed", `environment ${name} destroyed`);
    this.emitEvent({ type: "environment", env: name, state: "destroyed", branch: rec.branch });
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

class StageError extends Error {
  constructor(
    readonly reason: Reason,
    override readonly cause: unknown,
  ) {
    super(errorMessage(cause));
  }
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
