/**
 * The local target: rendered Kubernetes objects → podman pods on this machine, with Services served
 * by Sluice's in-process proxy on 127.0.0.1.
 *
 * Truth lives in two places. Pods are found from podman itself by label (env, unit, owner, workload,
 * template hash, replica index), so a restarted agent rediscovers everything; the unit's state file
 * (state.ts) holds the inventory, content hashes and Service ports. Each apply of a unit runs under
 * a per-unit lock, records its intent (the union of the old inventory and the new objects) before it
 * changes anything, and converges from whatever it finds: pods of the current template are kept,
 * incomplete ones replaced, others rolled away once the new ones are ready.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join, resolve } from "node:path";
import {
  errorMessage,
  type KubeObject,
  type ObjectRef,
  objectKey,
  refOf,
  SluiceError,
  subject,
} from "../../core/index.js";
import { type ChangeEntry, type ChangeSet, type Inventory, staleRefs } from "../../plan/index.js";
import {
  type ApplyOptions,
  type ApplyResult,
  type HealthReport,
  type HealthStatus,
  isWorse,
  LABEL_ENV,
  LABEL_OWNER,
  LABEL_UNIT,
  type ObjectHealth,
  type Orphan,
  ownerOf,
  type Target,
  type UnitId,
} from "../types.js";
import { type ObservedPod, Podman } from "./podman.js";
import { containerNamed, declaredPorts, hostPortOf, type ProbeState, probePod } from "./probe.js";
import { type Backend, type RequestMatch, type Route, ServiceProxy } from "./proxy.js";
import { emptyState, type ServiceRecord, StateStore, type UnitState, type WorkloadRecord } from "./state.js";
import {
  type ConfigData,
  type ConfigLookup,
  classify,
  configDataOf,
  containerCommands,
  LABEL_CONTAINERS,
  LABEL_GRACE,
  LABEL_HASH,
  LABEL_NAMESPACE,
  LABEL_REPLICA,
  LABEL_WORKLOAD,
  nsOf,
  ownerLabels,
  planWorkload,
  podCreateArgs,
  podLabels,
  podNameOf,
  prefixOf,
  safeRel,
  sanitize,
  sha,
  type WorkloadPlan,
} from "./translate.js";

export interface LocalTargetOptions {
  /** Where the local target keeps its state files, env files and volume files. */
  stateDir: string;
  podmanPath?: string;
  /** Progress lines (never secret values). */
  log?: (msg: string) => void;
  /** How often the service proxies re-check pods (default 2000 ms; refused connections fail over at once). */
  monitorIntervalMs?: number;
}

export interface ServiceAddress {
  host: "127.0.0.1";
  port: number;
}

/**
 * How a Service's proxy spreads traffic, instead of its selector (rollouts set this). Backends are
 * pods of the Service's environment and namespace selected by label — any pods, not only those the
 * Service's own selector picks. A backend's weight is shared equally by its ready pods.
 */
export interface TrafficPolicy {
  /** `http`: each request is routed on its own (header/cookie matches work); `tcp`: per connection. */
  protocol: "tcp" | "http";
  /** With `http`: the Service port spoken HTTP on (others get the same weights, per connection); absent: all. */
  httpPort?: number;
  /** In order, first match wins; a rule without `matches` takes every request (tcp: the only one used). */
  rules: TrafficRule[];
}

export interface TrafficRule {
  matches?: RequestMatch[];
  backends: { selector: Record<string, string>; weight: number }[];
}

export type { RequestMatch };

export interface LocalTarget extends Target {
  readonly kind: "local";
  /**
   * Replaces how the Service's proxies route (undefined: back to its selector, equal weights).
   * Takes effect for the next connection or request at once, and is kept in the unit's state, so a
   * restarted target routes the same way before anything is applied. The Service must be applied.
   */
  setTraffic(unit: UnitId, namespace: string, service: string, policy: TrafficPolicy | undefined): void;
  traffic(unit: UnitId, namespace: string, service: string): TrafficPolicy | undefined;
  /** The stable 127.0.0.1 address of a Service's first port, while this process serves it. */
  serviceAddress(unit: UnitId, namespace: string, service: string): ServiceAddress | undefined;
  /** Every proxied Service port of a unit. */
  serviceAddresses(
    unit: UnitId,
  ): { namespace: string; name: string; port: number; address: ServiceAddress }[];
  /** Stops the service proxies and background checks; the pods keep running. */
  close(): Promise<void>;
}

/** Marks podman objects with the Sluice instance (state directory) that made them. */
const LABEL_INSTANCE = "sluice.dev/instance";

/** Longest wait for proxied connections to an old pod to finish before it is stopped. */
const DRAIN_MS = 2000;
const POLL_MS = 150;

export async function createLocalTarget(opts: LocalTargetOptions): Promise<LocalTarget> {
  const podman = new Podman(opts.podmanPath);
  await podman.check();
  const t = new LocalTargetImpl(podman, opts);
  await t.start();
  return t;
}

/** The state file's Service record plus the traffic policy a rollout set (kept with it). */
type ServiceRec = ServiceRecord & { traffic?: TrafficPolicy };

interface ServiceEntry {
  unit: UnitId;
  rec: ServiceRec;
  /** `port/PROTO` → proxy. */
  proxies: Map<string, ServiceProxy>;
  /** `port/PROTO` → why its recorded port could not be bound yet (retried in the background). */
  busy: Map<string, string>;
}

class LocalTargetImpl implements LocalTarget {
  readonly kind = "local" as const;
  private readonly podman: Podman;
  private readonly store: StateStore;
  private readonly stateDir: string;
  private readonly log: (msg: string) => void;
  private readonly monitorMs: number;
  /** ConfigMaps and Secrets applied through this target: `env|ns|kind|name` → data and owner. */
  private readonly configs = new Map<string, ConfigData & { owner: string }>();
  private readonly services = new Map<string, ServiceEntry>();
  /** Every Sluice pod seen last, by podman ID. */
  private readonly pods = new Map<string, ObservedPod>();
  private readonly probes = new Map<string, ProbeState>();
  /** Pods being stopped: never proxied again (ID → time of marking). */
  private readonly terminating = new Map<string, number>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly errors = new Map<string, string>();
  private readonly recentPorts = new Map<number, number>();
  private generation = 0;
  private monitor: NodeJS.Timeout | undefined;
  private ticking = false;
  private closed = false;
  /**
   * Which Sluice made a podman object (a hash of the state directory): `sweep` removes only its
   * own, so two Sluice processes on one machine (or parallel tests) never collect each other's.
   */
  private readonly instance: string;

  constructor(podman: Podman, opts: LocalTargetOptions) {
    this.podman = podman;
    this.stateDir = opts.stateDir;
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    this.store = new StateStore(opts.stateDir);
    this.log = opts.log ?? (() => {});
    this.monitorMs = opts.monitorIntervalMs ?? 2000;
    this.instance = sha(resolve(opts.stateDir), 12);
  }

  /** Restarts the proxies of every recorded Service on its recorded port. */
  async start(): Promise<void> {
    for (const st of this.store.all()) {
      const unit = { env: st.env, unit: st.unit };
      let changed = false;
      for (const rec of Object.values(st.services)) {
        changed = (await this.ensureService(unit, rec)) || changed;
      }
      if (changed) this.store.save(st);
    }
    if (this.services.size) await this.tick();
    this.startMonitor();
  }

  // ------------------------------------------------------------------ Target

  async plan(unit: UnitId, desired: KubeObject[]): Promise<ChangeSet> {
    checkDuplicates(desired);
    const st = this.store.load(unit) ?? emptyState(unit);
    const lookup = this.lookupWith(unit, desired);
    const unitPods = await this.observeUnit(unit);
    const entries: ChangeEntry[] = [];
    const applicable: ObjectRef[] = [];
    for (const o of desired) {
      const c = classify(o);
      const ref = refOf(o);
      if (c.cls === "not-applicable") {
        entries.push(entry(o, "not-applicable", c.reason));
        continue;
      }
      applicable.push(ref);
      if (c.cls === "workload") {
        const plan = planWorkload(o, lookup);
        const r = this.assess(unit, plan, unitPods, st);
        entries.push(entry(o, r.action, r.reason));
      } else {
        const h = objectHash(o);
        const prev = st.objects[objectKey(o)];
        entries.push(entry(o, prev === undefined ? "created" : prev === h ? "unchanged" : "configured"));
      }
    }
    for (const r of staleRefs(st.inventory.length ? { entries: st.inventory } : undefined, applicable)) {
      entries.push({
        subject: subject(r),
        ref: r,
        action: "deleted",
        reason: "no longer in the source; deleted when applied with prune",
      });
    }
    return { entries };
  }

  apply(unit: UnitId, desired: KubeObject[], opts: ApplyOptions): Promise<ApplyResult> {
    return this.withLock(unit, () => this.applyLocked(unit, desired, opts));
  }

  async health(unit: UnitId, refs: ObjectRef[]): Promise<HealthReport> {
    const st = this.store.load(unit) ?? emptyState(unit);
    const unitPods = await this.observeUnit(unit, true);
    return this.healthOf(unit, refs, st, unitPods);
  }

  async inventory(unit: UnitId): Promise<Inventory | undefined> {
    const st = this.store.load(unit);
    return st ? { entries: st.inventory } : undefined;
  }

  destroy(unit: UnitId): Promise<ChangeSet> {
    return this.withLock(unit, async () => {
      const st = this.store.load(unit);
      if (!st) return { entries: [] };
      const unitPods = await this.observeUnit(unit);
      const entries: ChangeEntry[] = [];
      const keep = new Set(st.keep ?? []);
      for (const ref of [...st.inventory].reverse()) {
        if (keep.has(objectKey(ref))) {
          entries.push({
            subject: subject(ref),
            ref,
            action: "skipped",
            reason: "prune is disabled by annotation; left running",
          });
          continue;
        }
        await this.deleteObject(unit, ref, st, unitPods);
        entries.push({ subject: subject(ref), ref, action: "deleted" });
      }
      this.store.remove(unit);
      for (const [k, c] of this.configs) if (c.owner === ownerOf(unit)) this.configs.delete(k);
      return { entries: entries.reverse() };
    });
  }

  async sweep(live: ReadonlySet<string>, opts: { dryRun: boolean }): Promise<Orphan[]> {
    const out: Orphan[] = [];
    const act = async (o: Omit<Orphan, "result">, fn: () => Promise<unknown>) => {
      if (opts.dryRun) return out.push({ ...o, result: "listed" });
      try {
        await fn();
        out.push({ ...o, result: "deleted" });
      } catch (e) {
        out.push({ ...o, result: `failed: ${errorMessage(e)}` });
      }
    };
    // Units recorded in the state directory: destroy them the normal way (proxies, volumes, files).
    for (const st of this.store.all()) {
      if (live.has(st.env)) continue;
      const unit = { env: st.env, unit: st.unit };
      for (const ref of st.inventory)
        out.push({
          env: st.env,
          unit: st.unit,
          subject: subject(ref),
          result: opts.dryRun ? "listed" : "deleted",
        });
      if (!opts.dryRun) {
        try {
          await this.destroy(unit);
        } catch (e) {
          for (const o of out)
            if (o.env === st.env && o.unit === st.unit) o.result = `failed: ${errorMessage(e)}`;
        }
      }
    }
    // Then whatever podman still holds with our labels (a destroy killed half-way, a lost state file).
    const pods = await this.podman.observe([`${LABEL_INSTANCE}=${this.instance}`]);
    for (const p of pods) {
      const env = p.labels[LABEL_ENV];
      if (!env || live.has(env)) continue;
      await act({ env, unit: p.labels[LABEL_UNIT] ?? null, subject: `pod/${p.name}` }, () =>
        this.removePods([p], false),
      );
    }
    const vols = await this.podman.json<{ Name: string; Labels?: Record<string, string> }[]>([
      "volume",
      "ls",
      "--format",
      "json",
      "--filter",
      `label=${LABEL_INSTANCE}=${this.instance}`,
    ]);
    for (const v of vols ?? []) {
      const env = v.Labels?.[LABEL_ENV];
      if (!env || live.has(env)) continue;
      await act({ env, unit: v.Labels?.[LABEL_UNIT] ?? null, subject: `volume/${v.Name}` }, () =>
        this.podman.run(["volume", "rm", "-f", v.Name]),
      );
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.monitor) clearInterval(this.monitor);
    this.monitor = undefined;
    await Promise.all(
      [...this.services.values()].flatMap((s) => [...s.proxies.values()].map((p) => p.close())),
    );
    this.services.clear();
  }

  serviceAddress(unit: UnitId, namespace: string, service: string): ServiceAddress | undefined {
    const s = this.services.get(serviceKey(unit, namespace || "default", service));
    const first = s?.rec.ports.find((p) => p.protocol === "TCP");
    if (!s || !first?.listen) return undefined;
    return { host: "127.0.0.1", port: first.listen };
  }

  setTraffic(unit: UnitId, namespace: string, service: string, policy: TrafficPolicy | undefined): void {
    const ns = namespace || "default";
    const s = this.services.get(serviceKey(unit, ns, service));
    if (!s) {
      throw new SluiceError(
        "NotFound",
        `Service ${ns}/${service} of ${ownerOf(unit)} is not served by the local target`,
        { hint: "apply the unit with its Service first" },
      );
    }
    if (policy) checkPolicy(policy, `Service ${ns}/${service}`);
    // The record object is shared with an apply in flight (it saves the same object), and an apply
    // that builds a new record copies the policy from here: either way the policy is not lost.
    if (policy) s.rec.traffic = structuredClone(policy);
    else delete s.rec.traffic;
    this.syncProxies();
    const st = this.store.load(unit);
    const rec = st?.services[`${ns}/${service}`] as ServiceRec | undefined;
    if (st && rec) {
      if (policy) rec.traffic = structuredClone(policy);
      else delete rec.traffic;
      this.store.save(st);
    }
    this.log(
      `local: traffic of Service ${ns}/${service} (${ownerOf(unit)}): ${policy ? describePolicy(policy) : "by selector"}`,
    );
  }

  traffic(unit: UnitId, namespace: string, service: string): TrafficPolicy | undefined {
    const t = this.services.get(serviceKey(unit, namespace || "default", service))?.rec.traffic;
    return t ? structuredClone(t) : undefined;
  }

  serviceAddresses(
    unit: UnitId,
  ): { namespace: string; name: string; port: number; address: ServiceAddress }[] {
    const out: { namespace: string; name: string; port: number; address: ServiceAddress }[] = [];
    for (const s of this.services.values()) {
      if (ownerOf(s.unit) !== ownerOf(unit)) continue;
      for (const p of s.rec.ports) {
        if (p.protocol === "TCP" && p.listen)
          out.push({
            namespace: s.rec.namespace,
            name: s.rec.name,
            port: p.port,
            address: { host: "127.0.0.1", port: p.listen },
          });
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ apply

  private async applyLocked(unit: UnitId, desired: KubeObject[], opts: ApplyOptions): Promise<ApplyResult> {
    const started = Date.now();
    const deadline = started + Math.max(1000, opts.timeoutMs);
    checkDuplicates(desired);
    const owner = ownerOf(unit);
    const prev = this.store.load(unit);
    const st: UnitState = prev ? structuredClone(prev) : emptyState(unit);
    const prevInventory: Inventory | undefined = prev ? { entries: prev.inventory } : undefined;

    // Register this unit's ConfigMaps and Secrets first: workloads read them.
    for (const [k, c] of this.configs) if (c.owner === owner) this.configs.delete(k);
    for (const o of desired) {
      if (classify(o).cls === "config")
        this.configs.set(configKey(unit.env, nsOf(o), o.kind, o.metadata.name), {
          ...configDataOf(o),
          owner,
        });
    }
    const lookup = this.lookupWith(unit, desired);

    // Plan every workload before changing anything: an invalid manifest fails the apply untouched.
    const classes = desired.map((o) => classify(o));
    const plans = new Map<string, WorkloadPlan>();
    desired.forEach((o, i) => {
      if (classes[i]?.cls === "workload") plans.set(objectKey(o), planWorkload(o, lookup));
    });
    const applicable = desired.filter((_, i) => classes[i]?.cls !== "not-applicable");
    const applicableRefs = applicable.map((o) => refOf(o));

    // Intent first: if we are killed from here on, the next apply (or prune) still knows everything we may create.
    st.inventory = unionRefs(st.inventory, applicableRefs);
    st.pending = true;
    this.store.save(st);

    const results = new Map<string, { action: ChangeEntry["action"]; reason?: string }>();
    // Namespaces, ConfigMaps, Secrets and claims: bookkeeping (and a podman volume for a claim).
    for (const o of applicable) {
      const cls = classify(o).cls;
      if (cls !== "namespace" && cls !== "config" && cls !== "volume") continue;
      const h = objectHash(o);
      const before = st.objects[objectKey(o)];
      if (cls === "volume" && before === undefined) await this.ensureVolume(unit, o);
      st.objects[objectKey(o)] = h;
      results.set(objectKey(o), {
        action: before === undefined ? "created" : before === h ? "unchanged" : "configured",
      });
    }
    // Services: proxies listen before pods start, so the address is known at once.
    for (const o of applicable) {
      if (classify(o).cls !== "service") continue;
      const rec: ServiceRec = serviceRecordOf(o, st.services[`${nsOf(o)}/${o.metadata.name}`]);
      // A traffic policy belongs to the running proxy (set by a rollout), not to the manifest.
      const live = this.services.get(serviceKey(unit, rec.namespace, rec.name));
      const traffic = live
        ? live.rec.traffic
        : (st.services[`${rec.namespace}/${rec.name}`] as ServiceRec)?.traffic;
      if (traffic) rec.traffic = traffic;
      const h = objectHash(o);
      const before = st.objects[objectKey(o)];
      await this.ensureService(unit, rec);
      st.services[`${rec.namespace}/${rec.name}`] =
        this.services.get(serviceKey(unit, rec.namespace, rec.name))?.rec ?? rec;
      st.objects[objectKey(o)] = h;
      results.set(objectKey(o), {
        action: before === undefined ? "created" : before === h ? "unchanged" : "configured",
      });
    }
    this.store.save(st);
    this.startMonitor();

    // Workloads, all at once.
    const unitPods = await this.observeUnit(unit);
    await Promise.all(
      [...plans.entries()].map(async ([key, plan]) => {
        const r = await this.reconcileWorkload(unit, plan, unitPods, st, deadline);
        results.set(key, r);
        const rec: WorkloadRecord = {
          kind: plan.kind,
          namespace: plan.namespace,
          name: plan.name,
          hash: plan.hash,
          replicas: plan.replicas,
        };
        const err = this.errors.get(errKey(unit, plan.subject));
        if (err) rec.lastError = err;
        st.workloads[plan.subject] = rec;
      }),
    );

    // Prune: only what the previous inventory lists and the new desired set does not.
    const entries: ChangeEntry[] = [];
    for (let i = 0; i < desired.length; i++) {
      const o = desired[i] as KubeObject;
      const c = classes[i];
      if (c?.cls === "not-applicable") {
        entries.push(entry(o, "not-applicable", c.reason));
        continue;
      }
      const r = results.get(objectKey(o)) ?? { action: "unchanged" as const };
      entries.push(entry(o, r.action, r.reason));
    }
    let stale = staleRefs(prevInventory, applicableRefs);
    const keep = new Set(st.keep ?? []);
    if (opts.prune) {
      // Flux's rule: an object whose prune is disabled is left running and leaves the inventory.
      for (const ref of stale.filter((r) => keep.has(objectKey(r)))) {
        entries.push({
          subject: subject(ref),
          ref,
          action: "skipped",
          reason: "prune is disabled by annotation; left running",
        });
        delete st.objects[objectKey(ref)];
        delete st.workloads[subject(ref)];
      }
      stale = stale.filter((r) => !keep.has(objectKey(r)));
    }
    st.keep = applicable.filter((o) => pruneDisabled(o)).map((o) => objectKey(o));
    if (!st.keep.length) delete st.keep;
    if (opts.prune && stale.length) {
      const fresh = await this.observeUnit(unit);
      for (const ref of stale) {
        try {
          await this.deleteObject(unit, ref, st, fresh);
        } catch (e) {
          this.store.save(st);
          throw new SluiceError(
            "PruneFailed",
            `could not delete ${subject(ref)} of ${owner}: ${errorMessage(e)}`,
            { cause: e },
          );
        }
        entries.push({ subject: subject(ref), ref, action: "deleted" });
      }
    }
    st.inventory = opts.prune ? applicableRefs : unionRefs(applicableRefs, stale);
    delete st.pending;
    this.store.save(st);
    const changeSet: ChangeSet = { entries };
    const inventory: Inventory = { entries: st.inventory };
    this.log(`local: applied ${owner} in ${Date.now() - started} ms (${summary(entries)})`);
    if (!opts.wait) return { changeSet, inventory };
    const health = await this.waitHealthy(unit, applicableRefs, st, deadline);
    if (health.status !== "Healthy") {
      const bad = health.objects
        .filter((h) => h.status !== "Healthy")
        .map((h) => `${h.subject}: ${h.message}`);
      throw new SluiceError(
        "HealthCheckFailed",
        `${owner} is ${health.status} on the local target: ${bad.join("; ")}`,
        {
          detail: { health, changeSet },
          hint: `see the pods with \`podman pod ps --filter label=sluice.dev/owner=${owner}\``,
        },
      );
    }
    return { changeSet, inventory, health };
  }

  /** What a workload needs, without changing anything. */
  private assess(
    unit: UnitId,
    plan: WorkloadPlan,
    unitPods: ObservedPod[],
    st: UnitState,
  ): { action: ChangeEntry["action"]; reason?: string } {
    const a = this.analyse(unit, plan, unitPods);
    const known = st.workloads[plan.subject] !== undefined || a.all.length > 0;
    if (!known) return { action: "created" };
    const todo =
      a.missing.length +
      a.incomplete.length +
      a.unstarted.length +
      a.crashed.length +
      a.old.length +
      a.extra.length;
    return todo ? { action: "configured", reason: a.describe() } : { action: "unchanged" };
  }

  private analyse(unit: UnitId, plan: WorkloadPlan, unitPods: ObservedPod[]) {
    const all = unitPods.filter(
      (p) =>
        p.labels[LABEL_WORKLOAD] === plan.subject &&
        p.name.startsWith(`${prefixOf(unit.env, plan.namespace)}-`),
    );
    const expected = [...(plan.template.spec.initContainers ?? []), ...plan.template.spec.containers].map(
      (c) => c.name,
    );
    const appContainers = plan.template.spec.containers.map((c) => c.name);
    const current = new Map<number, ObservedPod>();
    const incomplete: ObservedPod[] = [];
    const unstarted: ObservedPod[] = [];
    const crashed: ObservedPod[] = [];
    const old: ObservedPod[] = [];
    const extra: ObservedPod[] = [];
    for (const p of all) {
      const idx = Number(p.labels[LABEL_REPLICA] ?? -1);
      if (p.labels[LABEL_HASH] !== plan.hash || p.name !== podNameOf(unit, plan, idx)) {
        old.push(p);
        continue;
      }
      if (idx >= plan.replicas || idx < 0) {
        extra.push(p);
        continue;
      }
      if (!expected.every((n) => containerNamed(p, n))) {
        incomplete.push(p);
        continue;
      }
      current.set(idx, p);
      const app = appContainers.map((n) => containerNamed(p, n));
      if (app.every((c) => c?.state === "created" || c?.state === "configured")) unstarted.push(p);
      else if (app.some((c) => c && (c.state === "exited" || c.state === "stopped"))) crashed.push(p);
    }
    const missing: number[] = [];
    for (let i = 0; i < plan.replicas; i++) if (!current.has(i)) missing.push(i);
    return {
      all,
      current,
      incomplete,
      unstarted,
      crashed,
      old,
      extra,
      missing,
      describe(): string {
        const parts: string[] = [];
        if (old.length) parts.push(`${old.length} pod(s) of an older template to replace`);
        if (missing.length) parts.push(`${missing.length} pod(s) to start`);
        if (extra.length) parts.push(`${extra.length} pod(s) to scale away`);
        if (incomplete.length) parts.push(`${incomplete.length} incomplete pod(s) to recreate`);
        if (unstarted.length) parts.push(`${unstarted.length} pod(s) never started`);
        if (crashed.length) parts.push(`${crashed.length} crashed pod(s) to restart`);
        return parts.join(", ");
      },
    };
  }

  private async reconcileWorkload(
    unit: UnitId,
    plan: WorkloadPlan,
    unitPods: ObservedPod[],
    st: UnitState,
    deadline: number,
  ): Promise<{ action: ChangeEntry["action"]; reason?: string }> {
    const a = this.analyse(unit, plan, unitPods);
    const known = st.workloads[plan.subject] !== undefined || a.all.length > 0;
    const todo =
      a.missing.length +
      a.incomplete.length +
      a.unstarted.length +
      a.crashed.length +
      a.old.length +
      a.extra.length;
    if (todo === 0) {
      this.errors.delete(errKey(unit, plan.subject));
      return { action: known ? "unchanged" : "created" };
    }
    const reason = a.describe();
    this.errors.delete(errKey(unit, plan.subject));
    if (a.incomplete.length) await this.removePods(a.incomplete, false);
    if (a.unstarted.length || a.crashed.length) {
      const names = [...a.unstarted, ...a.crashed].map((p) => p.name);
      this.log(`local: starting ${names.join(", ")}`);
      await this.podman
        .run(["pod", "start", ...names])
        .catch((e) => this.errors.set(errKey(unit, plan.subject), errorMessage(e)));
      this.generation++;
    }
    const failed = (): boolean => this.errors.has(errKey(unit, plan.subject));
    let notReady = "";
    if (plan.strategy === "RollingUpdate") {
      await Promise.all(a.missing.map((i) => this.createPod(unit, plan, i)));
      const want = [...Array(plan.replicas).keys()].map((i) => podNameOf(unit, plan, i));
      const r = failed() ? { ready: false, why: "" } : await this.waitReady(unit, plan, want, deadline);
      if (r.ready) await this.removePods([...a.old, ...a.extra], true);
      else {
        // Old pods keep serving until the new ones are ready; scale-down can still happen.
        await this.removePods(a.extra, true);
        notReady = r.why;
      }
    } else if (plan.strategy === "Recreate") {
      if (a.missing.length) await this.removePods([...a.old, ...a.extra], true);
      else await this.removePods(a.extra, true);
      await Promise.all(a.missing.map((i) => this.createPod(unit, plan, i)));
      if (!a.missing.length && a.old.length) await this.removePods(a.old, true);
    } else {
      // Ordered (StatefulSet): new ordinals ascending, replacements descending, one ready before the next.
      const replacing = a.old.length > 0;
      const order = [...a.missing].sort((x, y) => (replacing ? y - x : x - y));
      const gone = new Set<string>();
      for (const i of order) {
        const before = a.old.filter((p) => Number(p.labels[LABEL_REPLICA]) === i);
        await this.removePods(before, true);
        for (const p of before) gone.add(p.id);
        await this.createPod(unit, plan, i);
        if (failed()) break;
        const r = await this.waitReady(unit, plan, [podNameOf(unit, plan, i)], deadline);
        if (!r.ready) {
          notReady = r.why;
          break;
        }
      }
      if (!notReady && !failed())
        await this.removePods([...a.extra, ...a.old.filter((p) => !gone.has(p.id))], true);
    }
    const err = this.errors.get(errKey(unit, plan.subject));
    const why = err
      ? `${reason}; ${err}`
      : notReady
        ? `${reason}; new pods are not ready yet (${notReady}), old pods keep serving`
        : reason;
    return { action: known ? "configured" : "created", reason: why };
  }

  /** Creates and starts replica `index`; a failure is recorded for health, not thrown. */
  private async createPod(unit: UnitId, plan: WorkloadPlan, index: number): Promise<void> {
    const podName = podNameOf(unit, plan, index);
    const labels = { ...podLabels(unit, plan, index), [LABEL_INSTANCE]: this.instance };
    const podDir = join(this.stateDir, "pods", podName);
    rmSync(podDir, { recursive: true, force: true });
    const files = {
      volumeDir: (v: string) => {
        const d = join(podDir, "volumes", sanitize(v));
        mkdirSync(d, { recursive: true, mode: 0o755 });
        return d;
      },
      writeFile: (v: string, rel: string, content: Buffer, mode: number) => {
        const f = join(podDir, "volumes", sanitize(v), safeRel(rel));
        mkdirSync(join(f, ".."), { recursive: true, mode: 0o755 });
        writeFileSync(f, content, { mode });
      },
    };
    const lookup = this.lookupWith(unit, []);
    const envDir = join(this.stateDir, "run");
    mkdirSync(envDir, { recursive: true, mode: 0o700 });
    const t0 = Date.now();
    try {
      const cmds = containerCommands(unit, plan, index, podName, lookup, files, labels);
      for (let attempt = 0; ; attempt++) {
        const hostPorts = new Map<string, number>();
        for (const p of plan.ports)
          hostPorts.set(`${p.containerPort}/${p.protocol}`, await this.allocatePort());
        try {
          await this.podman.run(podCreateArgs(plan, index, podName, labels, hostPorts));
          break;
        } catch (e) {
          if (attempt < 2 && /address already in use|bind/i.test(errorMessage(e))) {
            await this.podman.run(["pod", "rm", "-f", "--ignore", podName]).catch(() => {});
            continue;
          }
          throw e;
        }
      }
      this.generation++;
      for (const c of cmds) {
        const args = [...c.args];
        const envFile = join(envDir, `${podName}-${sanitize(c.name)}.env`);
        if (c.envFile) {
          writeFileSync(envFile, c.envFile, { mode: 0o600 });
          args.splice(1, 0, "--env-file", envFile);
        }
        try {
          await this.podman.run(args, { timeoutMs: 300_000 });
        } finally {
          if (c.envFile) rmSync(envFile, { force: true });
        }
      }
      await this.podman.run(["pod", "start", podName]);
      this.log(`local: started pod ${podName} in ${Date.now() - t0} ms`);
    } catch (e) {
      const msg = podFailure(plan, e);
      this.errors.set(errKey(unit, plan.subject), msg);
      this.log(`local: ${plan.subject}: ${msg}`);
      await this.podman.run(["pod", "rm", "-f", "-t", "0", "--ignore", podName]).catch(() => {});
      rmSync(podDir, { recursive: true, force: true });
    }
  }

  /** Waits until the named pods run and pass readiness; stops early when one cannot recover. */
  private async waitReady(
    unit: UnitId,
    plan: WorkloadPlan,
    names: string[],
    deadline: number,
  ): Promise<{ ready: boolean; why: string }> {
    const expected = plan.template.spec.containers.map((c) => c.name);
    let why = "";
    while (!this.closed) {
      const unitPods = await this.observeUnit(unit, true);
      const pods = names.map((n) => unitPods.find((p) => p.name === n));
      let allReady = true;
      for (const [i, p] of pods.entries()) {
        if (!p) {
          return { ready: false, why: `pod ${names[i]} is missing` };
        }
        const dead = await this.terminalFailure(p, expected);
        if (dead) {
          this.errors.set(errKey(unit, plan.subject), dead);
          return { ready: false, why: dead };
        }
        const stNow = await probePod(this.podman, p, expected, this.probes.get(p.id));
        this.probes.set(p.id, stNow);
        if (!stNow.ready) {
          allReady = false;
          why = `pod ${p.name}: ${stNow.reason ?? "not ready"}`;
        }
      }
      if (allReady) {
        this.syncProxies();
        return { ready: true, why: "" };
      }
      if (Date.now() + POLL_MS > deadline) return { ready: false, why };
      await sleep(POLL_MS);
    }
    return { ready: false, why: "the target was closed" };
  }

  /** A container that exited and will not be restarted again, as a sentence; undefined otherwise. */
  private async terminalFailure(p: ObservedPod, expected: string[]): Promise<string | undefined> {
    for (const n of expected) {
      const c = containerNamed(p, n);
      if (!c || (c.state !== "exited" && c.state !== "stopped")) continue;
      const x = await this.exitInfo(c.id, c.exitCode);
      if (x.exhausted) return this.crashSentence(p, n, c.id, x.code, x.restarts);
    }
    return undefined;
  }

  /** Exit code and restarts of an exited container; `exhausted` when podman will not restart it. */
  private async exitInfo(
    id: string,
    fallbackCode: number,
  ): Promise<{ code: number; restarts: number; exhausted: boolean }> {
    const info = await this.podman
      .json<
        {
          RestartCount?: number;
          State?: { ExitCode?: number; Status?: string };
          HostConfig?: { RestartPolicy?: { Name?: string; MaximumRetryCount?: number } };
        }[]
      >(["container", "inspect", id])
      .catch(() => []);
    const i = info[0];
    const code = i?.State?.ExitCode ?? fallbackCode;
    const policy = i?.HostConfig?.RestartPolicy;
    const restarts = i?.RestartCount ?? 0;
    const exhausted =
      policy?.Name !== "on-failure" || code === 0 || restarts >= (policy.MaximumRetryCount ?? 0);
    return { code, restarts, exhausted };
  }

  private async crashSentence(
    p: ObservedPod,
    container: string,
    id: string,
    code: number,
    restarts: number | undefined,
  ): Promise<string> {
    const logs = await this.podman
      .run(["logs", "--tail", "5", id])
      .then((r) => `${r.stdout}\n${r.stderr}`)
      .catch(() => "");
    const lines = logs
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean)
      .slice(-5)
      .map((l) => (l.length > 200 ? `${l.slice(0, 200)}…` : l));
    const again = restarts ? ` after ${restarts} restart${restarts === 1 ? "" : "s"}` : "";
    const tail = lines.length ? `; last log lines: ${lines.join(" | ")}` : "; it logged nothing";
    return `container ${container} of pod ${p.name} exited with code ${code}${again}${tail}`;
  }

  /** Takes pods out of the proxies, lets connections drain, then stops and removes them. */
  private async removePods(pods: ObservedPod[], drain: boolean): Promise<void> {
    if (pods.length === 0) return;
    const now = Date.now();
    for (const p of pods) this.terminating.set(p.id, now);
    this.generation++;
    this.syncProxies();
    if (drain) {
      const until = Date.now() + DRAIN_MS;
      while (Date.now() < until && pods.some((p) => this.activeConnections(p.id) > 0)) await sleep(50);
    }
    const grace = Math.max(...pods.map((p) => Number(p.labels[LABEL_GRACE] ?? 5)), 0);
    this.log(`local: removing ${pods.map((p) => p.name).join(", ")}`);
    await this.podman.run(["pod", "rm", "-f", "--ignore", "-t", String(grace), ...pods.map((p) => p.name)], {
      timeoutMs: (grace + 60) * 1000,
    });
    for (const p of pods) {
      this.pods.delete(p.id);
      this.probes.delete(p.id);
      rmSync(join(this.stateDir, "pods", p.name), { recursive: true, force: true });
    }
    this.generation++;
  }

  private activeConnections(podId: string): number {
    let n = 0;
    for (const s of this.services.values()) for (const p of s.proxies.values()) n += p.activeFor(podId);
    return n;
  }

  private async deleteObject(
    unit: UnitId,
    ref: ObjectRef,
    st: UnitState,
    unitPods: ObservedPod[],
  ): Promise<void> {
    const cls = classify(ref).cls;
    const key = objectKey(ref);
    const ns = nsOf(ref);
    if (cls === "workload") {
      const sub = subject(ref);
      const pods = unitPods.filter(
        (p) => p.labels[LABEL_WORKLOAD] === sub && p.name.startsWith(`${prefixOf(unit.env, ns)}-`),
      );
      await this.removePods(pods, true);
      delete st.workloads[sub];
      this.errors.delete(errKey(unit, sub));
    } else if (cls === "service") {
      const k = serviceKey(unit, ns, ref.name);
      const s = this.services.get(k);
      if (s) {
        await Promise.all([...s.proxies.values()].map((p) => p.close()));
        this.services.delete(k);
      }
      delete st.services[`${ns}/${ref.name}`];
    } else if (cls === "config") {
      this.configs.delete(configKey(unit.env, ns, ref.kind, ref.name));
    } else if (cls === "volume") {
      const vol = `${prefixOf(unit.env, ns)}-${sanitize(ref.name)}`;
      await this.podman.run(["volume", "rm", "-f", vol]).catch((e) => {
        if (!/no such volume|no volume with name/i.test(errorMessage(e))) throw e;
      });
    }
    delete st.objects[key];
    st.inventory = st.inventory.filter((r) => objectKey(r) !== key);
  }

  private async ensureVolume(unit: UnitId, o: KubeObject): Promise<void> {
    const vol = `${prefixOf(unit.env, nsOf(o))}-${sanitize(o.metadata.name)}`;
    const exists = await this.podman.run(["volume", "exists", vol]).then(
      () => true,
      () => false,
    );
    if (!exists) {
      const labels = {
        ...ownerLabels(unit),
        [LABEL_NAMESPACE]: nsOf(o),
        [LABEL_WORKLOAD]: subject(o),
        [LABEL_INSTANCE]: this.instance,
      };
      await this.podman.run([
        "volume",
        "create",
        ...Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
        vol,
      ]);
    }
  }

  // ------------------------------------------------------------------ services

  /**
   * Starts (or updates) the proxies of a Service; true when a port was newly assigned. A recorded
   * port is kept for good: when it is busy (another Sluice process on the same state, or anything
   * else) the port is retried on every background pass instead of being moved, so the address
   * never changes behind the user's back.
   */
  private async ensureService(unit: UnitId, rec: ServiceRecord): Promise<boolean> {
    const k = serviceKey(unit, rec.namespace, rec.name);
    let s = this.services.get(k);
    if (!s) {
      s = { unit, rec, proxies: new Map(), busy: new Map() };
      this.services.set(k, s);
    }
    s.rec = rec;
    let changed = false;
    const wanted = new Map(
      rec.ports.filter((p) => p.protocol === "TCP").map((p) => [`${p.port}/${p.protocol}`, p]),
    );
    for (const [pk, proxy] of s.proxies) {
      const p = wanted.get(pk);
      if (!p || (p.listen && p.listen !== proxy.port)) {
        await proxy.close();
        s.proxies.delete(pk);
      }
    }
    for (const pk of [...s.busy.keys()]) if (!wanted.has(pk)) s.busy.delete(pk);
    for (const [pk, p] of wanted) {
      const existing = s.proxies.get(pk);
      if (existing) {
        p.listen = existing.port;
        continue;
      }
      const proxy = new ServiceProxy(`${unit.env}/${rec.namespace}/${rec.name}:${p.port}`, this.log);
      if (p.listen) {
        try {
          await proxy.listen([p.listen], false);
          s.proxies.set(pk, proxy);
          s.busy.delete(pk);
        } catch (e) {
          if (!s.busy.has(pk)) {
            this.log(
              `local: port ${p.listen} of Service ${rec.namespace}/${rec.name} is in use (${errorMessage(e)}); retrying`,
            );
          }
          s.busy.set(pk, errorMessage(e));
        }
        continue;
      }
      p.listen = await proxy.listen([p.port]);
      if (p.listen !== p.port)
        this.log(
          `local: port ${p.port} is taken; Service ${rec.namespace}/${rec.name} serves on 127.0.0.1:${p.listen}`,
        );
      s.proxies.set(pk, proxy);
      changed = true;
    }
    this.syncProxies();
    return changed;
  }

  /** Recomputes every proxy's backends from the pods seen last and their readiness. */
  private syncProxies(): void {
    for (const s of this.services.values()) {
      const candidates = (selector: Record<string, string>): ObservedPod[] => {
        const sel = Object.entries(selector);
        if (sel.length === 0) return [];
        return [...this.pods.values()].filter(
          (p) =>
            p.labels[LABEL_ENV] === s.unit.env &&
            p.labels[LABEL_NAMESPACE] === s.rec.namespace &&
            sel.every(([k, v]) => p.labels[k] === v) &&
            !this.terminating.has(p.id) &&
            this.probes.get(p.id)?.ready === true,
        );
      };
      const policy = s.rec.traffic;
      const rules: { matches?: RequestMatch[]; sets: { pods: ObservedPod[]; weight: number }[] }[] = policy
        ? policy.rules.map((r) => ({
            ...(r.matches?.length ? { matches: r.matches } : {}),
            sets: r.backends.map((b) => ({ pods: candidates(b.selector), weight: b.weight })),
          }))
        : [{ sets: [{ pods: candidates(s.rec.selector), weight: 1 }] }];
      for (const port of s.rec.ports) {
        const proxy = s.proxies.get(`${port.port}/${port.protocol}`);
        if (!proxy) continue;
        const routes: Route[] = rules.map((r) => {
          const backends: Backend[] = [];
          for (const set of r.sets) {
            const ready: Backend[] = [];
            for (const p of set.pods) {
              const cp =
                typeof port.targetPort === "number" || /^\d+$/.test(String(port.targetPort))
                  ? Number(port.targetPort)
                  : declaredPorts(p).find((d) => d.name === port.targetPort)?.containerPort;
              const hp = cp === undefined ? undefined : hostPortOf(p, cp);
              if (hp !== undefined)
                ready.push({ podId: p.id, podName: p.name, host: "127.0.0.1", port: hp, weight: 0 });
            }
            // Without a policy every pod weighs 1; with one, a backend's weight is shared by its pods.
            for (const b of ready) b.weight = policy ? set.weight / ready.length : set.weight;
            backends.push(...ready);
          }
          return r.matches ? { matches: r.matches, backends } : { backends };
        });
        const http =
          policy?.protocol === "http" && (policy.httpPort === undefined || policy.httpPort === port.port);
        proxy.setRoutes(http ? "http" : "tcp", routes);
      }
    }
  }

  private startMonitor(): void {
    if (this.monitor || this.closed || this.services.size === 0) return;
    this.monitor = setInterval(() => void this.tick(), this.monitorMs);
    this.monitor.unref();
  }

  /** One background pass: what runs, which selected pods are ready; then the proxies follow. */
  private async tick(): Promise<void> {
    if (this.ticking || this.closed || this.services.size === 0) return;
    this.ticking = true;
    try {
      for (const s of this.services.values()) if (s.busy.size) await this.ensureService(s.unit, s.rec);
      const gen = this.generation;
      const all = await this.podman.observe([LABEL_OWNER], { containersOnly: true });
      if (gen !== this.generation) return; // an apply changed pods meanwhile; its own view is newer
      this.pods.clear();
      for (const p of all) this.pods.set(p.id, p);
      for (const [id, at] of this.terminating)
        if (Date.now() - at > 10 * 60_000 && !this.pods.has(id)) this.terminating.delete(id);
      const selected = all.filter((p) => !this.terminating.has(p.id) && this.isSelected(p));
      await Promise.all(
        selected.map(async (p) => {
          const expected = (p.labels[LABEL_CONTAINERS] ?? "").split(",").filter(Boolean);
          this.probes.set(p.id, await probePod(this.podman, p, expected, this.probes.get(p.id)));
        }),
      );
      for (const id of [...this.probes.keys()]) if (!this.pods.has(id)) this.probes.delete(id);
      if (gen === this.generation) this.syncProxies();
    } catch (e) {
      this.log(`local: service check failed: ${errorMessage(e)}`);
    } finally {
      this.ticking = false;
    }
  }

  private isSelected(p: ObservedPod): boolean {
    for (const s of this.services.values()) {
      if (p.labels[LABEL_ENV] !== s.unit.env || p.labels[LABEL_NAMESPACE] !== s.rec.namespace) continue;
      const selectors = [
        s.rec.selector,
        ...(s.rec.traffic?.rules ?? []).flatMap((r) => r.backends.map((b) => b.selector)),
      ];
      for (const selector of selectors) {
        const sel = Object.entries(selector);
        if (sel.length && sel.every(([k, v]) => p.labels[k] === v)) return true;
      }
    }
    return false;
  }

  // ------------------------------------------------------------------ health

  private async waitHealthy(
    unit: UnitId,
    refs: ObjectRef[],
    st: UnitState,
    deadline: number,
  ): Promise<HealthReport> {
    for (;;) {
      const unitPods = await this.observeUnit(unit, true);
      const h = await this.healthOf(unit, refs, st, unitPods);
      if (h.status === "Healthy" || h.status === "Degraded" || Date.now() + 200 > deadline || this.closed)
        return h;
      await sleep(200);
    }
  }

  private async healthOf(
    unit: UnitId,
    refs: ObjectRef[],
    st: UnitState,
    unitPods: ObservedPod[],
  ): Promise<HealthReport> {
    const objects: ObjectHealth[] = await Promise.all(
      refs.map((r) => this.objectHealth(unit, r, st, unitPods)),
    );
    let status: HealthStatus = "Healthy";
    for (const o of objects) if (isWorse(o.status, status)) status = o.status;
    return { status, objects };
  }

  private async objectHealth(
    unit: UnitId,
    ref: ObjectRef,
    st: UnitState,
    unitPods: ObservedPod[],
  ): Promise<ObjectHealth> {
    const sub = subject(ref);
    const c = classify(ref);
    if (c.cls === "not-applicable")
      return { subject: sub, status: "Healthy", message: c.reason ?? "not applicable on local" };
    if (c.cls === "service") {
      const s = this.services.get(serviceKey(unit, nsOf(ref), ref.name));
      if (!s)
        return { subject: sub, status: "Missing", message: "The Service has no proxy in this process." };
      const busy = [...s.busy.entries()][0];
      if (busy) {
        // Something listens there; normally another Sluice agent on the same state directory.
        const listen = s.rec.ports.find((p) => `${p.port}/${p.protocol}` === busy[0])?.listen;
        return {
          subject: sub,
          status: "Healthy",
          message: `Its address 127.0.0.1:${listen} is held by another process (another Sluice agent on the same state?); this agent takes it over once it is free.`,
        };
      }
      const first = [...s.proxies.values()][0];
      const n = first?.getBackends().length ?? 0;
      return {
        subject: sub,
        status: "Healthy",
        message: first
          ? `Serving on 127.0.0.1:${first.port} with ${n} ready backend${n === 1 ? "" : "s"}.`
          : "The Service has no TCP ports to serve.",
      };
    }
    if (c.cls !== "workload") {
      return st.objects[objectKey(ref)] !== undefined
        ? { subject: sub, status: "Healthy", message: `${ref.kind} is recorded on the local target.` }
        : { subject: sub, status: "Missing", message: `${ref.kind} was not applied.` };
    }
    const rec = st.workloads[sub];
    if (!rec) return { subject: sub, status: "Missing", message: `${ref.kind} was not applied.` };
    const err = this.errors.get(errKey(unit, sub)) ?? rec.lastError;
    const pods = unitPods.filter(
      (p) => p.labels[LABEL_WORKLOAD] === sub && p.name.startsWith(`${prefixOf(unit.env, rec.namespace)}-`),
    );
    const current = pods.filter(
      (p) => p.labels[LABEL_HASH] === rec.hash && Number(p.labels[LABEL_REPLICA]) < rec.replicas,
    );
    const old = pods.filter((p) => !current.includes(p));
    if (err && current.length < rec.replicas)
      return { subject: sub, status: "Degraded", message: sentence(err) };
    let ready = 0;
    let firstWhy = "";
    for (const p of current) {
      const expected = (p.labels[LABEL_CONTAINERS] ?? "").split(",").filter(Boolean);
      for (const n of expected) {
        const ctr = containerNamed(p, n);
        if (ctr && (ctr.state === "exited" || ctr.state === "stopped")) {
          const x = await this.exitInfo(ctr.id, ctr.exitCode);
          const what = await this.crashSentence(p, n, ctr.id, x.code, x.restarts);
          if (x.exhausted) return { subject: sub, status: "Degraded", message: sentence(what) };
          return { subject: sub, status: "Progressing", message: sentence(`${what}; podman restarts it`) };
        }
      }
      const pst = await probePod(this.podman, p, expected, this.probes.get(p.id));
      this.probes.set(p.id, pst);
      if (pst.ready) ready++;
      else if (!firstWhy) firstWhy = `pod ${p.name}: ${pst.reason ?? "not ready"}`;
    }
    if (ready < rec.replicas) {
      const more = firstWhy
        ? ` (${firstWhy})`
        : current.length < rec.replicas
          ? ` (${rec.replicas - current.length} pod(s) not started)`
          : "";
      return {
        subject: sub,
        status: "Progressing",
        message: `Waiting for rollout to finish: ${ready} of ${rec.replicas} replicas ready${more}.`,
      };
    }
    if (old.length) {
      return {
        subject: sub,
        status: "Progressing",
        message: `Waiting for rollout to finish: ${old.length} old replica(s) pending termination.`,
      };
    }
    return {
      subject: sub,
      status: "Healthy",
      message:
        rec.replicas === 0
          ? "Scaled to zero replicas."
          : `All ${rec.replicas} replica${rec.replicas === 1 ? " is" : "s are"} running and ready.`,
    };
  }

  // ------------------------------------------------------------------ helpers

  /** One batched look at the unit's pods; also refreshes the shared pod view for the proxies. */
  private async observeUnit(unit: UnitId, containersOnly = false): Promise<ObservedPod[]> {
    const owner = ownerOf(unit);
    const pods = await this.podman.observe([`${LABEL_OWNER}=${owner}`], { containersOnly });
    for (const [id, p] of this.pods) if (p.labels[LABEL_OWNER] === owner) this.pods.delete(id);
    for (const p of pods) this.pods.set(p.id, p);
    return pods;
  }

  private lookupWith(unit: UnitId, desired: KubeObject[]): ConfigLookup {
    const own = new Map<string, ConfigData>();
    for (const o of desired)
      if (classify(o).cls === "config")
        own.set(configKey(unit.env, nsOf(o), o.kind, o.metadata.name), configDataOf(o));
    return (kind, ns, name) => {
      const k = configKey(unit.env, ns, kind, name);
      return own.get(k) ?? this.configs.get(k);
    };
  }

  private async allocatePort(): Promise<number> {
    const now = Date.now();
    for (const [p, at] of this.recentPorts) if (now - at > 60_000) this.recentPorts.delete(p);
    for (let i = 0; i < 20; i++) {
      const port = await new Promise<number>((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
          const p = (srv.address() as net.AddressInfo).port;
          srv.close(() => resolve(p));
        });
      });
      if (!this.recentPorts.has(port) && !this.proxyPorts().has(port)) {
        this.recentPorts.set(port, now);
        return port;
      }
    }
    throw new SluiceError("TargetUnavailable", "could not find a free port on 127.0.0.1");
  }

  private proxyPorts(): Set<number> {
    const out = new Set<number>();
    for (const s of this.services.values()) for (const p of s.proxies.values()) out.add(p.port);
    return out;
  }

  private withLock<T>(unit: UnitId, fn: () => Promise<T>): Promise<T> {
    const k = ownerOf(unit);
    const prev = this.locks.get(k) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(k, tail);
    void tail.then(() => {
      if (this.locks.get(k) === tail) this.locks.delete(k);
    });
    return run;
  }
}

function checkPolicy(p: TrafficPolicy, what: string): void {
  const bad = (why: string) =>
    new SluiceError("ConfigInvalid", `traffic policy for ${what}: ${why}`, {
      hint: "protocol tcp|http; rules of backends {selector (non-empty), weight >= 0}",
    });
  if (p.protocol !== "tcp" && p.protocol !== "http") throw bad(`unknown protocol ${String(p.protocol)}`);
  if (!Array.isArray(p.rules) || p.rules.length === 0) throw bad("no rules");
  for (const r of p.rules) {
    if (r.matches?.length && p.protocol !== "http") throw bad("request matches need protocol http");
    for (const b of r.backends) {
      if (!b.selector || Object.keys(b.selector).length === 0) throw bad("a backend without a selector");
      if (!Number.isFinite(b.weight) || b.weight < 0) throw bad(`weight ${b.weight}`);
    }
  }
}

function describePolicy(p: TrafficPolicy): string {
  const sel = (s: Record<string, string>) =>
    Object.entries(s)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
  return `${p.protocol}: ${p.rules
    .map(
      (r) =>
        `${r.matches?.length ? "matching requests" : "all"} → ${r.backends.map((b) => `${sel(b.selector)}:${b.weight}`).join(" ")}`,
    )
    .join("; ")}`;
}

function serviceRecordOf(o: KubeObject, previous: ServiceRecord | undefined): ServiceRecord {
  const spec = (o.spec ?? {}) as {
    selector?: Record<string, string>;
    ports?: {
      name?: string;
      port: number;
      targetPort?: number | string;
      protocol?: string;
      nodePort?: number;
    }[];
    type?: string;
  };
  const ports = (spec.ports ?? []).map((p) => {
    const protocol = (p.protocol ?? "TCP").toUpperCase();
    const prev = previous?.ports.find((q) => q.port === p.port && q.protocol === protocol);
    // An explicit nodePort is the user's stable port; otherwise the port recorded before, if any.
    const listen = spec.type === "NodePort" && p.nodePort ? Number(p.nodePort) : (prev?.listen ?? 0);
    return {
      ...(p.name ? { name: p.name } : {}),
      port: Number(p.port),
      targetPort: p.targetPort ?? Number(p.port),
      protocol,
      listen,
    };
  });
  return { namespace: nsOf(o), name: o.metadata.name, selector: { ...(spec.selector ?? {}) }, ports };
}

function objectHash(o: KubeObject): string {
  const { metadata, ...rest } = o;
  const md = {
    name: metadata.name,
    namespace: metadata.namespace,
    labels: metadata.labels,
    annotations: metadata.annotations,
  };
  return sha({ ...rest, metadata: md }, 16);
}

function entry(o: KubeObject | ObjectRef, action: ChangeEntry["action"], reason?: string): ChangeEntry {
  const ref = "metadata" in o ? refOf(o as KubeObject) : (o as ObjectRef);
  const e: ChangeEntry = { subject: subject(ref), ref, action };
  if (reason) e.reason = reason;
  return e;
}

function pruneDisabled(o: KubeObject): boolean {
  const a = o.metadata.annotations ?? {};
  return a["kustomize.toolkit.fluxcd.io/prune"] === "disabled" || a["sluice.dev/prune"] === "disabled";
}

function checkDuplicates(desired: KubeObject[]): void {
  const seen = new Set<string>();
  for (const o of desired) {
    const k = objectKey(o);
    if (seen.has(k))
      throw new SluiceError("Conflict", `${subject(o)} is defined twice in the objects to apply`, {
        detail: { subject: subject(o) },
      });
    seen.add(k);
  }
}

function unionRefs(a: ObjectRef[], b: ObjectRef[]): ObjectRef[] {
  const out = new Map<string, ObjectRef>();
  for (const r of [...a, ...b]) out.set(objectKey(r), r);
  return [...out.values()];
}

function serviceKey(unit: UnitId, ns: string, name: string): string {
  return `${ownerOf(unit)}|${ns}/${name}`;
}

function configKey(env: string, ns: string, kind: string, name: string): string {
  return `${env}|${ns}|${kind}|${name}`;
}

function errKey(unit: UnitId, sub: string): string {
  return `${ownerOf(unit)}|${sub}`;
}

function podFailure(plan: WorkloadPlan, e: unknown): string {
  const msg = errorMessage(e);
  const images = [...(plan.template.spec.initContainers ?? []), ...plan.template.spec.containers].map(
    (c) => c.image,
  );
  if (
    /image not known|manifest unknown|pinging container registry|initializing source|unable to pull|no such image|repository .* not found/i.test(
      msg,
    )
  ) {
    return `image ${images.join(", ")} could not be found or pulled: ${msg.replace(/^podman \S+ \S+ failed: /, "")}`;
  }
  if (e instanceof SluiceError && e.code === "ConfigInvalid") return msg;
  return `a pod could not be started: ${msg}`;
}

function sentence(s: string): string {
  const t = s.trim();
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

function summary(entries: ChangeEntry[]): string {
  const counts = new Map<string, number>();
  for (const e of entries) counts.set(e.action, (counts.get(e.action) ?? 0) + 1);
  return [...counts].map(([a, n]) => `${n} ${a}`).join(", ") || "nothing";
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
