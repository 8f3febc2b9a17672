/** Declarative configuration from Git: the supported Flux and Sluice kinds, strictly validated. */
export { formatDuration, parseDuration } from "../core/index.js";
export * from "./kinds.js";
export {
  byKind,
  type Config,
  type ConfigObject,
  DEFAULT_NAMESPACE,
  findObject,
  loadConfig,
  parseObject,
  type SupportingObject,
} from "./load.js";
