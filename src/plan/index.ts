/**
 * Plans: desired objects versus what runs → a `ChangeSet` (created / configured / unchanged /
 * deleted), and the `Inventory` a unit owns. Diffs are masked: Secret values never leave here.
 */

export { countActions, staleRefs } from "./changeset.js";
export type { ChangeAction, ChangeEntry, ChangeSet, Inventory } from "./types.js";
