import type { ObjectRef } from "../core/index.js";

/** What applying (or pruning) did, or would do, to one object. Flux's vocabulary plus local's extra. */
export type ChangeAction =
  | "created"
  | "configured"
  | "unchanged"
  | "deleted"
  /** Left alone on purpose (e.g. prune disabled by annotation). `reason` says why. */
  | "skipped"
  /** The target cannot run this kind (e.g. Ingress on the local target). `reason` says so. */
  | "not-applicable";

export interface ChangeEntry {
  /** `Kind/namespace/name`. */
  subject: string;
  ref: ObjectRef;
  action: ChangeAction;
  reason?: string;
  /** Unified diff of the object's YAML, secret values already masked. */
  diff?: string;
}

/** The result of one apply/prune/plan, in object order. */
export interface ChangeSet {
  entries: ChangeEntry[];
}

/** The objects a unit owns on a target: the only objects prune may ever delete. */
export interface Inventory {
  entries: ObjectRef[];
}
