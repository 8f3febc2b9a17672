/**
 * Plans: desired objects versus what runs → a `ChangeSet` (created / configured / unchanged /
 * deleted), and the `Inventory` a unit owns. Diffs are masked: Secret values never leave here.
 */

export { countActions, staleRefs } from "./changeset.js";
export {
  DEFAULT_MARKDOWN_MAX,
  FULL_PLAN_PLACEHOLDER,
  formatPlanMarkdown,
  formatPlanText,
  type MarkdownOptions,
  summaryLine,
} from "./format.js";
export {
  canonicalJson,
  diffObjectSets,
  type ObjectAction,
  type ObjectPlan,
  type ObjectSetDiff,
  objectDiff,
  type SecretKeyChange,
} from "./objectdiff.js";
export {
  type CheckedOutRevision,
  checkoutRevision,
  type ResolvedRevision,
  resolveRevision,
} from "./refs.js";
export {
  DEFAULT_CONFIG_PATH,
  type EnvironmentPlan,
  type LivePlanner,
  type PlanOptions,
  type PlanSide,
  planRevisions,
  planTrees,
  type RevisionPlan,
  type RevisionPlanOptions,
  type UnitCounts,
  type UnitPlan,
} from "./revisions.js";
export type { ChangeAction, ChangeEntry, ChangeSet, Inventory } from "./types.js";
