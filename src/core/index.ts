/** Shared domain primitives: errors, the Kubernetes object model, bounded YAML and confined files. */
export { formatDuration, parseDuration } from "./duration.js";
export { type ErrorCode, errorMessage, isSluiceError, SluiceError } from "./errors.js";
export { analyzeGraph, type GraphAnalysis, type GraphNode } from "./graph.js";
export { groupOf, isKubeObject, type KubeObject, type ObjectRef, objectKey, refOf, subject } from "./kube.js";
export { isInside, secureReadFile, secureResolve } from "./securefs.js";
export {
  checkYamlNesting,
  defaultYamlLimits,
  parseYamlDocuments,
  parseYamlOne,
  parseYamlStream,
  type YamlDoc,
  type YamlLimits,
  type YamlNodeDoc,
} from "./yaml.js";
