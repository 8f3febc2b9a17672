/**
 * The rollout engine: one `reconcile` per unit run, in place of the target's apply. It is passive
 * (no timers): each call advances every rollout of the unit as far as it can without waiting for
 * time to pass — the new version healthy, its smoke test, the next canary steps — and says when
 * to be called again (`requeueAfterMs`: the end of a pause or of a scale-down delay). Everything it
 * knows is in a small JSON state per rollout in a `StateStore`, written before it acts, so a
 * restarted agent (a new engine on the same store, a new target on the same state) resumes at the
 * same step with the same weights.
 *
 * Commands (`promote`, `abort`, `rollback`, `resume`, `retry`) change the state and the traffic
 * at once — on the local target that is a switch of the service proxy's weights, well under a
 * second — without waiting for a reconcile in flight; that reconcile sees the state moved on
 * (`rev`) and stops advancing. The caller then reconciles the unit again (to scale slots).
 */
import { type Address, runSmokeTest, type SmokeReport } from "../checks/index.js";
import type { SmokeTestSpec } from "../config/index.js";
import {
  errorMessage,
  isSluiceError,
  type KubeObject,
  type ObjectRef,
  objectKey,
  parseDuration,
  refOf,
  SluiceError,
  subject,
} from "../core/index.js";
import type { LocalTarget } from "../targets/local/index.js";
import type {
  ApplyOptions,
  ApplyResult,
  HealthReport,
  ObjectHealth,
  Target,
  UnitId,
} from "../targets/types.js";
import {
  abort,
  decide,
  promote,
  rollbackToStandby,
  scaleDownDelayMs,
  short,
  statusOf,
  Transition,
} from "./decide.js";
import {
  candidateServiceName,
  checkRollout,
  localTraffic,
  nsOf,
  rolloutObjects,
  rolloutPort,
  sameObjects,
  slotDeployment,
  slotName,
  trafficObjects,
} from "./objects.js";
import type {
  RolloutEvent,
  RolloutObject,
  RolloutState,
  RolloutStatus,
  Slot,
  SmokeTestRef,
} from "./types.js";

/** Where the engine keeps its state: the store's KV (`getKV`/`setKV` in one namespace) or memory. */
export interface StateStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  delete?(key: string): void;
}

/** Where a unit's Service answers, for the smoke tests of a new version. */
export type AddressResolver = (
  target: Target,
  unit: UnitId,
  namespace: string,
  service: string,
  port: number,
) => Address | undefined | Promise<Address | undefined>;

export interface RolloutEngineOptions {
  store: StateStore;
  /** Progress lines. */
  log?: (msg: string) => void;
  /** The clock for pauses and scale-down delays (tests move it); waits use real time. */
  now?: () => number;
  /** Default: the local target's proxy address of the Service; Kubernetes: none (smoke tests fail). */
  resolveAddress?: AddressResolver;
  /** Default: `runSmokeTest` of checks/. */
  runSmoke?: (spec: SmokeTestSpec, addr: Address) => Promise<SmokeReport>;
  /** How often health is polled while waiting for a new version (default 300 ms). */
  healthPollMs?: number;
}

export interface RolloutReconcileInput {
  unit: UnitId;
  target: Target;
  /** The rendered objects, without sluice.dev kinds. */
  objects: KubeObject[];
  /** The unit's Rollouts (parseRollout); empty when it has none (the engine then just applies). */
  rollouts: RolloutObject[];
  smokeTests: SmokeTestRef[];
  /** As for `target.apply`; `wait` and `timeoutMs` also bound the wait for a new version. */
  apply: ApplyOptions;
}

export interface RolloutReconcileResult {
  /** The last apply (its inventory is the unit's), with the health report when `wait` was set. */
  apply: ApplyResult;
  rollouts: RolloutStatus[];
  /** Reconcile again after this long (a pause or a scale-down delay runs); undefined: no need. */
  requeueAfterMs?: number;
  /** What happened during this call, oldest first (for the event log). */
  events: RolloutEvent[];
}

/** What a command did: the rollouts it changed (traffic already switched) and its events. */
export interface RolloutCommandResult {
  rollouts: RolloutStatus[];
  events: RolloutEvent[];
}

/** A command got in between: the state moved on under a reconcile, which stops advancing. */
class Interrupted extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RolloutEngine {
  private readonly store: StateStore;
  private readonly log: (msg: string) => void;
  private readonly now: () => number;
  private readonly resolveAddress: AddressResolver;
  private readonly runSmoke: (spec: SmokeTestSpec, addr: Address) => Promise<SmokeReport>;
  private readonly pollMs: number;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(opts: RolloutEngineOptions) {
    this.store = opts.store;
    this.log = opts.log ?? (() => {});
    this.now = opts.now ?? Date.now;
    this.resolveAddress = opts.resolveAddress ?? localAddress;
    this.runSmoke = opts.runSmoke ?? ((spec, addr) => runSmokeTest(spec, addr));
    this.pollMs = opts.healthPollMs ?? 300;
  }

  // ---------------------------------------------------------------- state

  private indexKey(u: UnitId): string {
    return `${u.env}/${u.unit}`;
  }

  private key(u: UnitId, id: string): string {
    return `${u.env}/${u.unit}/${id}`;
  }

  private ids(u: UnitId): string[] {
    const raw = this.store.get(this.indexKey(u));
    if (!raw) return [];
    try {
      const v = JSON.parse(raw) as unknown;
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
    } catch {
      return [];
    }
  }

  private setIds(u: UnitId, ids: string[]): void {
    const sorted = [...new Set(ids)].sort();
    if (sorted.length === 0 && this.store.delete) this.store.delete(this.indexKey(u));
    else this.store.set(this.indexKey(u), JSON.stringify(sorted));
  }

  private load(u: UnitId, id: string): RolloutState | undefined {
    const raw = this.store.get(this.key(u, id));
    if (!raw) return undefined;
    try {
      const v = JSON.parse(raw) as RolloutState;
      return v?.version === 1 && v.stable && v.slots ? v : undefined;
    } catch {
      return undefined;
    }
  }

  private drop(u: UnitId, id: string): void {
    if (this.store.delete) this.store.delete(this.key(u, id));
    else this.store.set(this.key(u, id), "");
  }

  /** Writes `st` if nobody wrote since it was read (else Interrupted); bumps its rev. */
  private commit(u: UnitId, st: RolloutState, fresh = false): void {
    const cur = this.load(u, idOf(st));
    if (!fresh && cur && cur.rev !== st.rev) throw new Interrupted();
    st.rev = (cur?.rev ?? st.rev) + 1;
    this.store.set(this.key(u, idOf(st)), JSON.stringify(st));
  }

  /** The rollouts of a unit as last recorded. */
  status(unit: UnitId): RolloutStatus[] {
    return this.ids(unit)
      .map((id) => this.load(unit, id))
      .filter((s): s is RolloutState => !!s)
      .map(statusOf);
  }

  /** Forgets a unit's rollouts (the unit or its environment was destroyed). */
  forget(unit: UnitId): void {
    for (const id of this.ids(unit)) this.drop(unit, id);
    this.setIds(unit, []);
  }

  // ---------------------------------------------------------------- reconcile

  reconcile(input: RolloutReconcileInput): Promise<RolloutReconcileResult> {
    const k = this.indexKey(input.unit);
    const prev = this.locks.get(k) ?? Promise.resolve();
    const run = prev.then(
      () => this.reconcileLocked(input),
      () => this.reconcileLocked(input),
    );
    const tail = run.catch(() => {});
    this.locks.set(k, tail);
    void tail.then(() => {
      if (this.locks.get(k) === tail) this.locks.delete(k);
    });
    return run;
  }

  private async reconcileLocked(input: RolloutReconcileInput): Promise<RolloutReconcileResult> {
    const { unit, target } = input;
    const kind = target.kind;
    const started = Date.now();
    const deadline = started + Math.max(1000, input.apply.timeoutMs);
    // Check every Rollout before anything changes.
    const checked = input.rollouts.map((r) => ({ r, ...checkRollout(r, input.objects, input.smokeTests) }));
    const seen = new Map<string, string>();
    for (const c of checked) {
      for (const k of [objectKey(c.deployment), objectKey(c.service)]) {
        const other = seen.get(k);
        if (other)
          throw new SluiceError(
            "BuildFailed",
            `Rollout/${nsOf(c.r)}/${c.r.name} and Rollout ${other} deliver the same ${k.split("|")[1]} ${k.split("|")[3]}`,
          );
        seen.set(k, `${nsOf(c.r)}/${c.r.name}`);
      }
    }
    const wanted = new Set(checked.map((c) => idOf(c.r)));
    const goneIds = this.ids(unit).filter((id) => !wanted.has(id));
    if (checked.length === 0 && goneIds.length === 0) {
      // Not a rollout unit: the target's own apply, same semantics.
      return { apply: await target.apply(unit, input.objects, input.apply), rollouts: [], events: [] };
    }
    const events: RolloutEvent[] = [];
    const now = this.now();

    // Rollouts removed from Git: the Deployment runs under its own name again; the stable slot
    // serves until it is ready, then goes (with prune).
    const released: RolloutState[] = [];
    for (const id of goneIds) {
      const st = this.load(unit, id);
      if (!st) continue;
      released.push(st);
      if (isLocal(target)) this.setLocalTraffic(target, unit, st, null);
    }

    // Decide what each render means, and record it before acting (no await in between: a
    // command cannot slip between reading and writing a state).
    const inventory = checked.some((c) => !this.load(unit, idOf(c.r)))
      ? new Set(((await target.inventory(unit))?.entries ?? []).map((r) => objectKey(r)))
      : new Set<string>();
    const states: RolloutState[] = [];
    const before = new Map<string, RolloutState | undefined>();
    for (const c of checked) {
      const prev = this.load(unit, idOf(c.r));
      before.set(idOf(c.r), prev);
      const keepOriginal = !prev && inventory.has(objectKey(c.deployment));
      const t = decide(prev, c.r, c.deployment, c.service, input.objects, now, keepOriginal);
      this.commit(unit, t.st, true);
      events.push(...t.events);
      states.push(t.st);
      for (const e of t.events) this.log(`rollout ${idOf(c.r)}: ${e.type}: ${e.message}`);
    }
    this.setIds(unit, [...wanted, ...released.map(idOf)]);

    // Traffic first (a new candidate gets none; a running split stays), then the objects.
    for (const st of states) {
      const prev = before.get(idOf(st));
      if (isLocal(target)) this.setLocalTraffic(target, unit, st);
      else if (prev && !sameObjects(trafficObjects(prev, kind), trafficObjects(st, kind)))
        await this.applyTraffic(target, unit, st, input.apply.timeoutMs);
    }
    // A released rollout's stable slot serves until the Deployment under its own name is ready.
    const desiredOf = (sts: RolloutState[], rel: RolloutState[]) => [
      ...rolloutObjects(input.objects, sts, kind),
      ...rel.flatMap((st) => {
        const own = input.objects.some(
          (o) => o.kind === "Deployment" && nsOf(o) === nsOf(st) && o.metadata.name === deployName(st),
        );
        const d = own ? slotDeployment(st, st.stable.slot) : undefined;
        return d ? [d] : [];
      }),
    ];
    const desired = desiredOf(states, released);
    let applied = await target.apply(unit, desired, { ...input.apply, wait: false });
    this.routeLocal(target, unit, states);

    // Wait for what must be ready before anything moves on.
    const refs = new Map<string, ObjectRef>();
    if (input.apply.wait) for (const o of desired) refs.set(subject(o), refOf(o));
    for (const st of states) {
      const ns = st.service.metadata.namespace;
      const slotRef = (slot: Slot): ObjectRef => ({
        apiVersion: "apps/v1",
        kind: "Deployment",
        name: slotName(deployName(st), slot),
        ...(ns ? { namespace: ns } : {}),
      });
      if (st.candidate) refs.set(subject(slotRef(st.candidate.slot)), slotRef(st.candidate.slot));
      if (st.adopting) refs.set(subject(slotRef(st.stable.slot)), slotRef(st.stable.slot));
    }
    for (const st of released) {
      const d = input.objects.find(
        (o) => o.kind === "Deployment" && nsOf(o) === nsOf(st) && o.metadata.name === deployName(st),
      );
      if (d) refs.set(subject(d), refOf(d));
    }
    const health = refs.size ? await this.waitHealth(target, unit, [...refs.values()], deadline) : undefined;

    // Advance each rollout.
    let requeue: number | undefined;
    const later = (ms: number | undefined) => {
      if (ms !== undefined) requeue = requeue === undefined ? ms : Math.min(requeue, ms);
    };
    const ctx: Ctx = { unit, target, smokeTests: input.smokeTests, timeoutMs: input.apply.timeoutMs, events };
    for (const st of states) {
      try {
        later(await this.advance(ctx, st, health));
      } catch (e) {
        if (!(e instanceof Interrupted)) throw e;
        later(500);
      }
    }
    for (const st of released) {
      const d = input.objects.find(
        (o) => o.kind === "Deployment" && nsOf(o) === nsOf(st) && o.metadata.name === deployName(st),
      );
      const h = d ? health?.objects.find((o) => o.subject === subject(d)) : undefined;
      if (!d || h?.status === "Healthy") {
        this.drop(unit, idOf(st));
        const t = new Transition(st);
        t.event("Removed", "info", `the Rollout is gone; ${deployName(st)} runs under its own name`, now);
        events.push(...t.events);
      } else later(1000);
    }
    const keptReleased = released.filter((st) => this.load(unit, idOf(st)));
    this.setIds(unit, [...wanted, ...keptReleased.map(idOf)]);

    // Decisions that change objects (switch, abort, scale-down, adoption done) are applied now.
    const fresh = states.map((st) => this.load(unit, idOf(st)) ?? st);
    const desired2 = desiredOf(fresh, keptReleased);
    if (!sameObjects(desired, desired2)) {
      applied = await target.apply(unit, desired2, { ...input.apply, wait: false });
      this.routeLocal(target, unit, fresh);
    }

    let finalHealth: HealthReport | undefined;
    if (input.apply.wait) {
      const candidates = new Set(
        fresh.flatMap((st) =>
          st.candidate
            ? [
                subject({
                  apiVersion: "apps/v1",
                  kind: "Deployment",
                  name: slotName(deployName(st), st.candidate.slot),
                  ...(st.service.metadata.namespace ? { namespace: st.service.metadata.namespace } : {}),
                }),
              ]
            : [],
        ),
      );
      const finalRefs = desired2.map((o) => refOf(o));
      finalHealth = await this.waitHealth(target, unit, finalRefs, Math.max(deadline, Date.now() + 5000));
      const bad = finalHealth.objects.filter((o) => o.status !== "Healthy" && !candidates.has(o.subject));
      if (bad.length) {
        throw new SluiceError(
          "HealthCheckFailed",
          `${unit.env}.${unit.unit} is ${finalHealth.status}: ${bad.map((o) => `${o.subject}: ${o.message}`).join("; ")}`,
          { detail: { health: finalHealth, changeSet: applied.changeSet, events } },
        );
      }
    }
    const result: RolloutReconcileResult = {
      apply: finalHealth ? { ...applied, health: finalHealth } : applied,
      rollouts: fresh.map((st) => statusOf(this.load(unit, idOf(st)) ?? st)),
      events,
    };
    if (requeue !== undefined) result.requeueAfterMs = Math.max(0, requeue);
    this.log(
      `rollouts ${unit.env}.${unit.unit}: ${result.rollouts.map((r) => `${r.name} ${r.phase}`).join(", ") || "released"} in ${Date.now() - started} ms`,
    );
    return result;
  }

  private async waitHealth(
    target: Target,
    unit: UnitId,
    refs: ObjectRef[],
    deadline: number,
  ): Promise<HealthReport> {
    for (;;) {
      const h = await target.health(unit, refs);
      const settled = h.objects.every((o) => o.status === "Healthy" || o.status === "Degraded");
      if (settled || Date.now() + this.pollMs > deadline) return h;
      await sleep(this.pollMs);
    }
  }

  /** Advances one rollout as far as it goes now; returns when to look again. */
  private async advance(
    ctx: Ctx,
    loaded: RolloutState,
    health: HealthReport | undefined,
  ): Promise<number | undefined> {
    const { unit } = ctx;
    // The latest state: a command may have moved it while the new version was awaited.
    let st = structuredClone(this.load(unit, idOf(loaded)) ?? loaded);
    let requeue: number | undefined;
    const later = (ms: number) => {
      requeue = requeue === undefined ? ms : Math.min(requeue, ms);
    };
    const step = async (fn: (t: Transition) => void | Promise<void>, route = false): Promise<void> => {
      const t = new Transition(st);
      await fn(t);
      this.commit(unit, st);
      ctx.events.push(...t.events);
      for (const e of t.events) this.log(`rollout ${idOf(st)}: ${e.type}: ${e.message}`);
      if (route) await this.route(ctx, st);
      st = structuredClone(st);
    };
    const healthOf = (slot: Slot): ObjectHealth | undefined => {
      const ns = st.service.metadata.namespace;
      const sub = subject({
        apiVersion: "apps/v1",
        kind: "Deployment",
        name: slotName(deployName(st), slot),
        ...(ns ? { namespace: ns } : {}),
      });
      return health?.objects.find((o) => o.subject === sub);
    };

    if (st.adopting && healthOf(st.stable.slot)?.status === "Healthy") {
      await step((t) => {
        delete st.adopting;
        st.phase = st.candidate ? "Progressing" : "Healthy";
        st.message = `version ${short(st.stable.hash)} serves all traffic (slot ${st.stable.slot})`;
        t.event("Adopted", "info", `slot ${st.stable.slot} is ready and serves all traffic`, this.now());
      }, true);
    }
    if (st.standby) {
      const until = Date.parse(st.standby.until);
      if (this.now() >= until) {
        await step((t) => {
          const sb = st.standby!;
          delete st.standby;
          t.event(
            "ScaledDown",
            "info",
            `standby ${short(sb.hash)} (slot ${sb.slot}) is scaled down`,
            this.now(),
          );
        });
      } else later(until - this.now());
    }
    const c = st.candidate;
    if (!c) return requeue;
    const h = healthOf(c.slot);
    if (h?.status !== "Healthy") {
      await step(
        (t) =>
          abort(
            t,
            this.now(),
            `the new version did not become healthy: ${h?.message ?? "no health reported"}`,
          ),
        true,
      );
      return requeue;
    }
    const via = candidateServiceName(st.spec);
    const check = async (): Promise<boolean> => {
      const r = await this.smoke(ctx, st, via);
      if (!r.ran) return true;
      if (r.ok) {
        if (!st.candidate!.verified)
          await step((t) => {
            st.candidate!.verified = true;
            t.event("SmokeTestPassed", "info", `${short(c.hash)} on ${via}: ${r.detail}`, this.now());
          });
        return true;
      }
      await step((t) => {
        t.event("SmokeTestFailed", "error", `${short(c.hash)} on ${via}: ${r.detail}`, this.now());
        abort(t, this.now(), `smoke test ${st.spec.smokeTest} failed on ${via}: ${r.detail}`);
      }, true);
      return false;
    };
    const markVerified = () => {
      st.candidate!.verified = true;
    };
    const promoteNow = async (why: string) => {
      await step((t) => promote(t, this.now(), why), true);
      later(scaleDownDelayMs(st));
    };
    const s = st.spec.strategy;

    if (s.blueGreen) {
      if (!c.verified || c.promote) {
        if (!(await check())) return requeue;
        if (!st.spec.smokeTest && !st.candidate!.verified) await step(markVerified);
      }
      if (s.blueGreen.autoPromote !== false || st.candidate!.promote) {
        await promoteNow(st.candidate!.promote ? "promote" : "smoke test passed on the preview");
        return requeue;
      }
      if (st.phase !== "Paused")
        await step((t) => {
          st.phase = "Paused";
          st.message = `version ${short(c.hash)} is ready on ${via}; waiting for promote`;
          t.event("Paused", "info", st.message, this.now());
        });
      return requeue;
    }

    if (s.abTest) {
      // The check runs on every reconcile while the test runs: a version that starts failing is aborted.
      if (!(await check())) return requeue;
      if (!st.candidate!.verified) await step(markVerified);
      if (st.candidate!.promote) {
        await promoteNow("promote");
        return requeue;
      }
      if (st.phase !== "Paused")
        await step((t) => {
          st.phase = "Paused";
          const what = s
            .abTest!.match.map((m) =>
              m.header
                ? `header ${m.header.name}: ${m.header.value}`
                : `cookie ${m.cookie!.name}=${m.cookie!.value}`,
            )
            .join(" or ");
          st.message = `A/B test: requests with ${what} go to ${short(c.hash)}, all others to ${short(st.stable.hash)}; promote or abort`;
          t.event("Paused", "info", st.message, this.now());
        }, true);
      return requeue;
    }

    // Canary: smoke test before each weight, pauses by time or until resumed, then promotion.
    const steps = s.canary!.steps;
    let checkedNow = false;
    for (let guard = 0; guard <= steps.length + 1; guard++) {
      const cand = st.candidate!;
      if (cand.promote || cand.step >= steps.length) {
        if (!checkedNow && !(await check())) return requeue;
        await promoteNow(cand.promote ? "promote" : "all steps done");
        return requeue;
      }
      const cur = steps[cand.step]!;
      if ("setWeight" in cur) {
        if (!(await check())) return requeue;
        checkedNow = true;
        await step((t) => {
          const cc = st.candidate!;
          cc.verified = true;
          cc.weight = cur.setWeight;
          cc.step++;
          cc.stepStartedAt = new Date(this.now()).toISOString();
          st.phase = "Progressing";
          st.message = `version ${short(cc.hash)} takes ${cc.weight}% of the traffic (step ${cc.step} of ${steps.length})`;
          t.event("StepCompleted", "info", st.message, this.now());
        }, true);
        continue;
      }
      const d = cur.pause.duration ? (parseDuration(cur.pause.duration) ?? 0) : undefined;
      const end = Date.parse(cand.stepStartedAt) + (d ?? 0);
      if (cand.resume || (d !== undefined && this.now() >= end)) {
        await step(() => {
          const cc = st.candidate!;
          delete cc.resume;
          cc.step++;
          cc.stepStartedAt = new Date(this.now()).toISOString();
        });
        continue;
      }
      // Paused: the canary is checked again on every reconcile of the pause.
      if (!checkedNow) {
        if (!(await check())) return requeue;
        checkedNow = true;
      }
      const msg =
        d === undefined
          ? `paused at ${cand.weight}% (step ${cand.step + 1} of ${steps.length}) until resume or promote`
          : `paused at ${cand.weight}% (step ${cand.step + 1} of ${steps.length}) until ${new Date(end).toISOString()}`;
      if (st.phase !== "Paused" || st.message !== msg)
        await step((t) => {
          st.phase = "Paused";
          st.message = msg;
          t.event("Paused", "info", msg, this.now());
        });
      if (d !== undefined) later(end - this.now());
      return requeue;
    }
    return requeue;
  }

  private async smoke(
    ctx: Ctx,
    st: RolloutState,
    service: string,
  ): Promise<{ ran: boolean; ok: boolean; detail: string }> {
    const name = st.spec.smokeTest;
    if (!name) return { ran: false, ok: true, detail: "no smoke test" };
    const t = ctx.smokeTests.find((s) => s.name === name && nsOf(s) === nsOf(st));
    if (!t) return { ran: true, ok: false, detail: `SmokeTest ${name} is not rendered with the Rollout` };
    let port = rolloutPort(st.spec, st.service)!;
    if (t.spec.service.name === st.spec.service.name) {
      const p = rolloutPort(
        { ...st.spec, service: { ...st.spec.service, port: t.spec.service.port } },
        st.service,
      );
      if (p !== undefined) port = p;
    }
    let addr: Address | undefined;
    try {
      addr = await this.resolveAddress(ctx.target, ctx.unit, nsOf(st), service, port);
    } catch (e) {
      return { ran: true, ok: false, detail: `no address for Service ${service}: ${errorMessage(e)}` };
    }
    if (!addr)
      return {
        ran: true,
        ok: false,
        detail: `Service ${nsOf(st)}/${service} has no address this agent can reach on the ${ctx.target.kind} target`,
      };
    try {
      const report = await this.runSmoke(t.spec, addr);
      const bad = report.results.find((r) => !r.ok);
      return report.ok
        ? { ran: true, ok: true, detail: `${report.results.length} check(s) passed` }
        : { ran: true, ok: false, detail: bad ? `check "${bad.name}": ${bad.detail}` : "incomplete" };
    } catch (e) {
      return { ran: true, ok: false, detail: errorMessage(e) };
    }
  }

  // ---------------------------------------------------------------- traffic

  /** `null` gives the Service back to its selector. */
  private setLocalTraffic(target: LocalTarget, unit: UnitId, st: RolloutState, policy?: null): void {
    try {
      target.setTraffic(unit, nsOf(st), st.spec.service.name, policy === null ? undefined : localTraffic(st));
    } catch (e) {
      // Not served yet (the first apply creates it); the apply is followed by another route.
      if (!isSluiceError(e, "NotFound")) throw e;
    }
  }

  /** Local: routes each rollout as its latest state says (a command may have moved it meanwhile). */
  private routeLocal(target: Target, unit: UnitId, sts: RolloutState[]): void {
    if (!isLocal(target)) return;
    for (const st of sts) this.setLocalTraffic(target, unit, this.load(unit, idOf(st)) ?? st);
  }

  private async applyTraffic(
    target: Target,
    unit: UnitId,
    st: RolloutState,
    timeoutMs: number,
  ): Promise<void> {
    await target.apply(unit, trafficObjects(st, target.kind), { prune: false, wait: false, timeoutMs });
  }

  /** Makes the target route as the latest recorded state says. */
  private async route(
    ctx: { unit: UnitId; target: Target; timeoutMs?: number },
    st: RolloutState,
  ): Promise<void> {
    const latest = this.load(ctx.unit, idOf(st)) ?? st;
    if (isLocal(ctx.target)) this.setLocalTraffic(ctx.target, ctx.unit, latest);
    else await this.applyTraffic(ctx.target, ctx.unit, latest, ctx.timeoutMs ?? 60_000);
  }

  // ---------------------------------------------------------------- commands

  private pick(unit: UnitId, name?: string, namespace?: string): RolloutState {
    const all = this.ids(unit)
      .map((id) => this.load(unit, id))
      .filter((s): s is RolloutState => !!s);
    const hits = all.filter(
      (s) =>
        (name === undefined || s.name === name) &&
        (namespace === undefined || nsOf(s) === (namespace || "default")),
    );
    if (hits.length === 1) return hits[0]!;
    const what = name ? `Rollout ${name}` : "a Rollout";
    throw new SluiceError(
      "NotFound",
      hits.length
        ? `${unit.env}.${unit.unit} has ${hits.length} Rollouts (${hits.map((s) => s.name).join(", ")}); name one`
        : `${unit.env}.${unit.unit} has no ${what}`,
      { hint: "see the unit's rollouts with `sluice get rollouts`" },
    );
  }

  private async command(
    target: Target,
    unit: UnitId,
    sts: RolloutState[],
    fn: (t: Transition) => void,
  ): Promise<RolloutCommandResult> {
    const out: RolloutCommandResult = { rollouts: [], events: [] };
    for (const st of sts) {
      const t = new Transition(st);
      fn(t);
      this.commit(unit, st);
      for (const e of t.events) this.log(`rollout ${idOf(st)}: ${e.type}: ${e.message}`);
      await this.route({ unit, target }, st);
      out.rollouts.push(statusOf(st));
      out.events.push(...t.events);
    }
    return out;
  }

  /**
   * Skips the remaining steps: a candidate that passed its checks becomes stable at once (traffic
   * switched before this returns); one not checked yet is promoted by the next reconcile.
   */
  promote(target: Target, unit: UnitId, name?: string, namespace?: string): Promise<RolloutCommandResult> {
    const st = this.pick(unit, name, namespace);
    if (!st.candidate)
      throw new SluiceError("Conflict", `Rollout ${st.name} has no new version to promote (${st.message})`);
    return this.command(target, unit, [st], (t) => {
      if (st.candidate!.verified) promote(t, this.now(), "promote");
      else {
        st.candidate!.promote = true;
        t.event(
          "Promoted",
          "info",
          `${short(st.candidate!.hash)} will be promoted once it passes its checks`,
          this.now(),
        );
      }
    });
  }

  /** Ends the current canary pause. */
  resume(target: Target, unit: UnitId, name?: string, namespace?: string): Promise<RolloutCommandResult> {
    const st = this.pick(unit, name, namespace);
    if (!st.candidate) throw new SluiceError("Conflict", `Rollout ${st.name} is not paused (${st.message})`);
    return this.command(target, unit, [st], () => {
      st.candidate!.resume = true;
    });
  }

  /** Stops the new version: all traffic to stable at once; it is scaled down by the next reconcile. */
  abort(
    target: Target,
    unit: UnitId,
    name?: string,
    namespace?: string,
    reason = "aborted by a user",
  ): Promise<RolloutCommandResult> {
    const st = this.pick(unit, name, namespace);
    if (!st.candidate)
      throw new SluiceError("Conflict", `Rollout ${st.name} has nothing to abort (${st.message})`);
    return this.command(target, unit, [st], (t) => abort(t, this.now(), reason));
  }

  /**
   * The instant rollback: aborts a new version in progress, or switches back to the standby (the
   * previous version, still running within its scale-down delay). Undefined when neither exists —
   * the caller then rolls back in Git (a revert).
   */
  async rollback(
    target: Target,
    unit: UnitId,
    name?: string,
    namespace?: string,
    reason = "rolled back by a user",
  ): Promise<RolloutCommandResult | undefined> {
    const able = this.ids(unit)
      .map((id) => this.load(unit, id))
      .filter((s): s is RolloutState => !!s)
      .filter(
        (s) =>
          (name === undefined || s.name === name) &&
          (namespace === undefined || nsOf(s) === (namespace || "default")) &&
          (s.candidate || s.standby),
      );
    if (able.length === 0) return undefined;
    return this.command(target, unit, able, (t) => {
      if (t.st.candidate) abort(t, this.now(), reason, "RolledBack");
      else rollbackToStandby(t, this.now(), reason);
    });
  }

  /** Lets a rejected version (aborted or rolled back) be rolled out again by the next reconcile. */
  retry(target: Target, unit: UnitId, name?: string, namespace?: string): Promise<RolloutCommandResult> {
    const st = this.pick(unit, name, namespace);
    if (!st.rejected)
      throw new SluiceError("Conflict", `Rollout ${st.name} has no rejected version to retry`);
    return this.command(target, unit, [st], (t) => {
      t.event("Retried", "info", `${short(st.rejected!.hash)} may be rolled out again`, this.now());
      delete st.rejected;
    });
  }
}

interface Ctx {
  unit: UnitId;
  target: Target;
  smokeTests: SmokeTestRef[];
  timeoutMs: number;
  events: RolloutEvent[];
}

function idOf(r: { name: string; namespace: string | undefined }): string {
  return `${nsOf(r)}/${r.name}`;
}

function deployName(st: RolloutState): string {
  return (st.slots[st.stable.slot] ?? Object.values(st.slots)[0])!.deployment.metadata.name;
}

function isLocal(t: Target): t is LocalTarget {
  return t.kind === "local" && typeof (t as Partial<LocalTarget>).setTraffic === "function";
}

const localAddress: AddressResolver = (target, unit, namespace, service, port) => {
  if (!isLocal(target)) return undefined;
  const hits = target.serviceAddresses(unit).filter((a) => a.namespace === namespace && a.name === service);
  return (hits.find((a) => a.port === port) ?? hits[0])?.address;
};
