/** Environments: branch and pull-request → environment rules, names, TTLs and purges, the local override. */

export {
  addToExpiry,
  extendedExpiry,
  type PurgeCandidate,
  type PurgeDecision,
  type PurgePolicy,
  purgeDue,
  purgePolicy,
  purgeVictims,
} from "./lifecycle.js";
export { OVERRIDE_FILE, type Override, readOverride } from "./override.js";
export {
  defaultEnvironment,
  type Environment,
  environmentFor,
  expandName,
  expandTemplate,
  matchBranch,
  type PullRequestRef,
  type Resolution,
  type ResolveOptions,
  resolveEnvironments,
  type TemplateContext,
} from "./rules.js";
