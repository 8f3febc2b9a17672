/**
 * The rollout state machine's pure transitions: what a new render means for the state (adopt,
 * start a candidate, cancel it, keep a rejected version out), promotion, abort and rollback.
 * No I/O here; the engine persists the results and acts on them.
 */
import { parseDuration } from "../config/index.js";
import type { KubeObject } from "../core/index.js";
import { otherSlot, renderedConfigMaps, strategyOf, templateHash } from "./objects.js";
import type {
  RolloutEvent,
  RolloutEventType,
  RolloutObject,
  RolloutState,
  RolloutStatus,
  Slot,
} from "./types.js";

const HISTORY = 50;
const DEFAULT_SCALE_DOWN_MS = 30_000;

export class Transition {
  readonly events: RolloutEvent[] = [];
  constructor(readonly st: RolloutState) {}

  event(type: RolloutEventType, severity: RolloutEvent["severity"], message: string, at: number): void {
    this.events.push({ rollout: this.st.name, namespace: this.st.namespace, type, severity, message });
    this.st.history.push({ at: new Date(at).toISOString(), event: type, message });
    if (this.st.history.length > HISTORY) this.st.history.splice(0, this.st.history.length - HISTORY);
  }
}

export function short(hash: string): string {
  return hash.slice(0, 7);
}

export function scaleDownDelayMs(st: RolloutState): number {
  const s = st.spec.strategy;
  const d = s.blueGreen?.scaleDownDelay ?? s.canary?.scaleDownDelay ?? s.abTest?.scaleDownDelay;
  return d === undefined ? DEFAULT_SCALE_DOWN_MS : (parseDuration(d) ?? DEFAULT_SCALE_DOWN_MS);
}

/**
 * What a render means for a rollout. `prev` is the stored state (undefined on first sight);
 * `keepOriginal`: on first sight, whether the Deployment already runs under its own name (its pods
 * then serve until the stable slot is ready).
 */
export function decide(
  prev: RolloutState | undefined,
  r: RolloutObject,
  deployment: KubeObject,
  service: KubeObject,
  rendered: KubeObject[],
  now: number,
  keepOriginal: boolean,
): Transition {
  const hash = templateHash(deployment);
  const iso = new Date(now).toISOString();
  const record = {
    hash,
    deployment: structuredClone(deployment),
    configMaps: renderedConfigMaps(rendered, deployment),
  };
  if (!prev) {
    const st: RolloutState = {
      version: 1,
      rev: 0,
      name: r.name,
      namespace: r.namespace,
      strategy: strategyOf(r.spec),
      spec: structuredClone(r.spec),
      service: structuredClone(service),
      phase: "Progressing",
      message: `adopting ${deployment.metadata.name} (${short(hash)}) into slot blue`,
      adopting: { keepOriginal },
      stable: { slot: "blue", hash, since: iso },
      slots: { blue: record },
      history: [],
    };
    const t = new Transition(st);
    t.event("Adopted", "info", `version ${short(hash)} runs in slot blue`, now);
    return t;
  }
  const st = structuredClone(prev);
  const t = new Transition(st);
  st.spec = structuredClone(r.spec);
  st.service = structuredClone(service);
  const strategy = strategyOf(r.spec);
  if (st.strategy !== strategy) {
    st.strategy = strategy;
    if (st.candidate) {
      // A new strategy starts the candidate's checks over, with no traffic.
      Object.assign(st.candidate, { step: 0, weight: 0, verified: false, stepStartedAt: iso });
      delete st.candidate.promote;
      delete st.candidate.resume;
    }
  }
  if (st.adopting && !st.candidate) {
    // Not adopted yet (the slot is not ready): a new version simply becomes the one adopted.
    if (hash !== st.stable.hash)
      t.event(
        "Adopted",
        "info",
        `version ${short(hash)} is adopted instead of ${short(st.stable.hash)}`,
        now,
      );
    st.stable = { ...st.stable, hash };
    st.slots[st.stable.slot] = record;
    return t;
  }
  if (hash === st.stable.hash) {
    st.slots[st.stable.slot] = record;
    if (st.candidate) {
      t.event(
        "Cancelled",
        "warning",
        `Git renders the stable version ${short(hash)} again; candidate ${short(st.candidate.hash)} is dropped`,
        now,
      );
      delete st.candidate;
    }
    delete st.rejected;
    if (!st.adopting) {
      st.phase = "Healthy";
      st.message = `version ${short(hash)} serves all traffic (slot ${st.stable.slot})`;
    }
    return t;
  }
  if (st.rejected?.hash === hash) {
    st.phase = "Aborted";
    return t;
  }
  if (st.candidate?.hash === hash) {
    st.slots[st.candidate.slot] = record;
    return t;
  }
  const slot: Slot = otherSlot(st.stable.slot);
  if (st.standby?.slot === slot) delete st.standby;
  const replaced = st.candidate;
  st.slots[slot] = record;
  st.candidate = { slot, hash, startedAt: iso, step: 0, stepStartedAt: iso, weight: 0, verified: false };
  delete st.rejected;
  st.phase = "Progressing";
  st.message = `starting version ${short(hash)} in slot ${slot}`;
  t.event(
    "Started",
    "info",
    replaced
      ? `version ${short(hash)} replaces candidate ${short(replaced.hash)} in slot ${slot}`
      : `version ${short(hash)} starts in slot ${slot}; ${short(st.stable.hash)} keeps serving`,
    now,
  );
  return t;
}

/** The candidate becomes stable; the old stable is kept as standby for the scale-down delay. */
export function promote(t: Transition, now: number, why: string): void {
  const st = t.st;
  const c = st.candidate;
  if (!c) return;
  const delay = scaleDownDelayMs(st);
  const old = st.stable;
  if (delay > 0) st.standby = { slot: old.slot, hash: old.hash, until: new Date(now + delay).toISOString() };
  else delete st.standby;
  st.stable = { slot: c.slot, hash: c.hash, since: new Date(now).toISOString() };
  delete st.candidate;
  st.phase = "Healthy";
  st.message =
    `version ${short(c.hash)} serves all traffic (slot ${c.slot})` +
    (delay > 0 ? `; ${short(old.hash)} stays ready for an instant rollback until ${st.standby!.until}` : "");
  t.event("Promoted", "info", `${short(c.hash)} promoted (${why}); ${short(old.hash)} is the standby`, now);
}

/** The candidate is dropped: no traffic, scaled down at the next apply, not retried until Git changes. */
export function abort(t: Transition, now: number, reason: string, type: RolloutEventType = "Aborted"): void {
  const st = t.st;
  const c = st.candidate;
  if (!c) return;
  st.rejected = { hash: c.hash, reason, at: new Date(now).toISOString() };
  delete st.candidate;
  st.phase = "Aborted";
  st.message = `version ${short(c.hash)} aborted: ${reason}; ${short(st.stable.hash)} serves all traffic`;
  t.event(type, "error", `${short(c.hash)}: ${reason}`, now);
}

/** Back to the standby version at once (the current stable is rejected until Git changes). */
export function rollbackToStandby(t: Transition, now: number, reason: string): boolean {
  const st = t.st;
  const sb = st.standby;
  if (!sb || st.candidate) return false;
  const old = st.stable;
  st.stable = { slot: sb.slot, hash: sb.hash, since: new Date(now).toISOString() };
  delete st.standby;
  st.rejected = { hash: old.hash, reason, at: new Date(now).toISOString() };
  st.phase = "Aborted";
  st.message = `rolled back to ${short(sb.hash)} (slot ${sb.slot}); ${short(old.hash)} is rejected until Git changes`;
  t.event("RolledBack", "warning", `${short(old.hash)} → ${short(sb.hash)}: ${reason}`, now);
  return true;
}

export function statusOf(st: RolloutState): RolloutStatus {
  const s: RolloutStatus = {
    name: st.name,
    namespace: st.namespace,
    strategy: st.strategy,
    phase: st.phase,
    message: st.message,
    stable: { ...st.stable },
    instantRollback: !!st.candidate || !!st.standby,
    history: st.history.map((h) => ({ ...h })),
  };
  if (st.candidate)
    s.candidate = {
      slot: st.candidate.slot,
      hash: st.candidate.hash,
      step: st.candidate.step,
      steps: st.spec.strategy.canary?.steps.length ?? 0,
      weight: st.candidate.weight,
      startedAt: st.candidate.startedAt,
    };
  if (st.standby) s.standby = { ...st.standby };
  if (st.rejected) s.rejected = { ...st.rejected };
  return s;
}
