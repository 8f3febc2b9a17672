/**
 * The render pipeline: a path in a checkout → Kubernetes objects (kustomize or plain YAML,
 * SOPS decryption, layered `${VAR}` substitution). See render.ts for the algorithm.
 */

export { envsubst } from "./envsubst.js";
export { compareLegacy, sortLegacy } from "./order.js";
export {
  defaultRenderLimits,
  maskSecrets,
  type RenderLimits,
  type RenderOptions,
  type RenderResult,
  render,
  toYamlStream,
} from "./render.js";
export {
  collectLayers,
  mergeLayers,
  readVariableFile,
  VARIABLE_FILES,
  type VariableLayer,
} from "./variables.js";
