/** Environments: branch → environment rules, the local override file, TTLs. */

export { OVERRIDE_FILE, type Override, readOverride } from "./override.js";
export {
  type Environment,
  environmentFor,
  expandName,
  matchBranch,
  type Resolution,
  resolveEnvironments,
} from "./rules.js";
