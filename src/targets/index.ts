/** Targets: where rendered objects run. The contract is in types.ts; implementations per folder. */

export { LazyTarget } from "./lazy.js";
export {
  type ApplyOptions,
  type ApplyResult,
  type HealthReport,
  type HealthStatus,
  healthOrder,
  isWorse,
  LABEL_ENV,
  LABEL_OWNER,
  LABEL_UNIT,
  type ObjectHealth,
  type Orphan,
  ownerOf,
  type Target,
  type UnitId,
} from "./types.js";
