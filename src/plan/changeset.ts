import { type ObjectRef, objectKey } from "../core/index.js";
import type { ChangeAction, ChangeSet, Inventory } from "./types.js";

/** Objects in the previous inventory that the new desired set no longer has: the prune list. */
export function staleRefs(previous: Inventory | undefined, desired: readonly ObjectRef[]): ObjectRef[] {
  if (!previous) return [];
  const keep = new Set(desired.map((r) => objectKey(r)));
  return previous.entries.filter((r) => !keep.has(objectKey(r)));
}

export function countActions(cs: ChangeSet): Record<ChangeAction, number> {
  const out: Record<ChangeAction, number> = {
    created: 0,
    configured: 0,
    unchanged: 0,
    deleted: 0,
    skipped: 0,
    "not-applicable": 0,
  };
  for (const e of cs.entries) out[e.action]++;
  return out;
}
