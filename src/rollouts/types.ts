/**
 * The rollout model: what a `Rollout` object says (parsed), and the small JSON state the engine
 * keeps per rollout so that a restarted agent resumes exactly where it was.
 */
import type { RolloutSpec, SmokeTestSpec } from "../config/index.js";
import type { KubeObject } from "../core/index.js";

export type Slot = "blue" | "green";
export type Strategy = "blueGreen" | "canary" | "abTest";

/** A `Rollout` as rendered with the app (validated). */
export interface RolloutObject {
  name: string;
  /** The object's namespace as rendered (undefined: the unit's default). */
  namespace: string | undefined;
  spec: RolloutSpec;
}

/** A `SmokeTest` as rendered with the app (the reconcile's `splitSluiceObjects` shape). */
export interface SmokeTestRef {
  name: string;
  namespace: string | undefined;
  spec: SmokeTestSpec;
}

export interface SlotRecord {
  /** Hash of the pod template (the version this slot runs). */
  hash: string;
  /** The Deployment as rendered for that version (its own name; the engine derives the slot's). */
  deployment: KubeObject;
  /**
   * ConfigMaps the template reads, as rendered with it: re-added when a later render drops them
   * (name-hashed generator ConfigMaps), so the stable slot keeps its configuration. Never Secrets.
   */
  configMaps: KubeObject[];
}

/**
 * - Healthy: Git's version serves all traffic (a standby may still run for an instant rollback).
 * - Progressing: a new version is starting or being checked.
 * - Paused: a canary pause, a blue/green without autoPromote, or an A/B test, waiting for time or
 *   for `promote`.
 * - Aborted: the new version failed (health or smoke test) or was aborted/rolled back; the stable
 *   version serves all traffic and the rejected version is not tried again until Git changes (or
 *   `retry`).
 */
export type RolloutPhase = "Healthy" | "Progressing" | "Paused" | "Aborted";

export interface Candidate {
  slot: Slot;
  hash: string;
  startedAt: string;
  /** Canary: index of the next step to run. */
  step: number;
  stepStartedAt: string;
  /** Share of the default traffic (percent) it receives now. */
  weight: number;
  /** Its smoke test passed (or it has none) since it became healthy. */
  verified: boolean;
  /** `promote` was asked while it could not be done at once (not verified yet). */
  promote?: boolean;
  /** `resume` was asked: the current pause ends. */
  resume?: boolean;
}

export interface HistoryEntry {
  at: string;
  event: RolloutEventType;
  message: string;
}

export interface RolloutState {
  version: 1;
  /** Bumped on every write: an engine holding an older copy knows a command got in between. */
  rev: number;
  name: string;
  namespace: string | undefined;
  strategy: Strategy;
  /** The Rollout spec and the Service as last rendered (commands route from them without a render). */
  spec: RolloutSpec;
  service: KubeObject;
  phase: RolloutPhase;
  message: string;
  /** First deploy under this Rollout: the Deployment's previous pods keep serving until the slot is ready. */
  adopting?: { keepOriginal: boolean };
  stable: { slot: Slot; hash: string; since: string };
  slots: Partial<Record<Slot, SlotRecord>>;
  candidate?: Candidate;
  /** The previous stable version, still running until `until`, for an instant rollback. */
  standby?: { slot: Slot; hash: string; until: string };
  rejected?: { hash: string; reason: string; at: string };
  history: HistoryEntry[];
}

export type RolloutEventType =
  | "Adopted"
  | "Started"
  | "Cancelled"
  | "SmokeTestPassed"
  | "SmokeTestFailed"
  | "StepCompleted"
  | "Paused"
  | "Promoted"
  | "Aborted"
  | "RolledBack"
  | "Retried"
  | "ScaledDown"
  | "Removed";

export interface RolloutEvent {
  rollout: string;
  namespace: string | undefined;
  type: RolloutEventType;
  severity: "info" | "warning" | "error";
  message: string;
}

/** What the API, the CLI and the dashboard show. */
export interface RolloutStatus {
  name: string;
  namespace: string | undefined;
  strategy: Strategy;
  phase: RolloutPhase;
  message: string;
  stable: { slot: Slot; hash: string; since: string };
  candidate?: { slot: Slot; hash: string; step: number; steps: number; weight: number; startedAt: string };
  standby?: { slot: Slot; hash: string; until: string };
  rejected?: { hash: string; reason: string; at: string };
  /** `rollback` can switch traffic back without a redeploy (a candidate to abort, or a standby). */
  instantRollback: boolean;
  history: HistoryEntry[];
}
