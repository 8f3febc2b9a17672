import type { KubeObject, ObjectRef } from "../core/index.js";
import type { ChangeSet, Inventory } from "../plan/index.js";

/**
 * Which unit of which environment owns an object. Every object a target creates is labelled with
 * these (`sluice.dev/env`, `sluice.dev/unit`, `sluice.dev/owner` = `<env>.<unit>`), so Sluice can
 * always find what it created and never touches what it did not.
 */
export interface UnitId {
  env: string;
  unit: string;
}

export const LABEL_ENV = "sluice.dev/env";
export const LABEL_UNIT = "sluice.dev/unit";
export const LABEL_OWNER = "sluice.dev/owner";

export function ownerOf(u: UnitId): string {
  return `${u.env}.${u.unit}`;
}

/** Ordered from best to worst, as in Argo CD's gitops-engine. */
export const healthOrder = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"] as const;
export type HealthStatus = (typeof healthOrder)[number];

export function isWorse(a: HealthStatus, b: HealthStatus): boolean {
  return healthOrder.indexOf(a) > healthOrder.indexOf(b);
}

export interface ObjectHealth {
  subject: string;
  status: HealthStatus;
  /** A human sentence: "Waiting for rollout to finish: 1 of 2 replicas ready". */
  message: string;
}

export interface HealthReport {
  /** The worst status of all objects. */
  status: HealthStatus;
  objects: ObjectHealth[];
}

export interface ApplyOptions {
  /** Delete objects of the previous inventory that are no longer desired. */
  prune: boolean;
  /** Return only when every applied object is healthy, or fail at `timeoutMs`. */
  wait: boolean;
  timeoutMs: number;
  /** Recreate objects whose immutable fields changed. */
  force?: boolean;
}

export interface ApplyResult {
  changeSet: ChangeSet;
  /** What the unit owns after this apply (desired objects, plus stale ones if prune was off). */
  inventory: Inventory;
  /** Present when `wait` was set. */
  health?: HealthReport;
}

/** Something a target holds for an environment that no longer exists (`sluice env gc`). */
export interface Orphan {
  env: string;
  unit: string | null;
  /** `Kind/namespace/name`, or a podman object (`pod/<name>`, `volume/<name>`). */
  subject: string;
  /** What was done: `listed` (dry run), `deleted`, or `failed: <why>`. */
  result: string;
}

/**
 * The contract every target (local podman, Kubernetes) fulfils. Apply is idempotent: re-applying
 * unchanged objects touches nothing. Prune deletes only objects in the unit's own inventory.
 */
export interface Target {
  readonly kind: "local" | "kubernetes";
  /** What `apply` would do, without changing anything (the `diff` command). */
  plan(unit: UnitId, desired: KubeObject[]): Promise<ChangeSet>;
  apply(unit: UnitId, desired: KubeObject[], opts: ApplyOptions): Promise<ApplyResult>;
  health(unit: UnitId, refs: ObjectRef[]): Promise<HealthReport>;
  /** The inventory recorded on the target for this unit, if any. */
  inventory(unit: UnitId): Promise<Inventory | undefined>;
  /** Deletes everything in the unit's inventory and the inventory itself. */
  destroy(unit: UnitId): Promise<ChangeSet>;
  /**
   * Finds everything carrying Sluice's labels (or recorded as a unit's inventory) for an
   * environment not in `live`, and removes it unless `dryRun`. Never touches live environments'
   * objects nor anything without Sluice's labels.
   */
  sweep?(live: ReadonlySet<string>, opts: { dryRun: boolean }): Promise<Orphan[]>;
  /** Releases connections and background work (not the workloads). */
  close(): Promise<void>;
}
