/**
 * Infrastructure stacks: Terragrunt-style dependency graphs of OpenTofu units (issue 9).
 *
 * A `Stack` (sluice.dev/v1alpha1) lists units, each a directory of `.tf` files in the repository
 * with dependsOn, inputs (map or inputs.tfvars.json, `${VAR}` from the render pipeline's layered
 * variables), dependencies whose outputs it reads (`${dependency.<unit>.outputs.<name>}`),
 * mockOutputs (plan only) and hooks. `runStack` plans/applies/destroys/reads it with the real
 * `tofu`, in dependency order and in parallel; state is per environment and unit under the state
 * directory; `stackOutputsAsVariables` hands a unit's outputs to a Kubernetes unit's render.
 */

export { readUnitOutputs, stackOutputsAsVariables } from "./outputs.js";
export { runStack } from "./run.js";
export { checkStack, loadStacks, pickStack, stackFromConfig } from "./stack.js";
export { formatEvent, formatSummary } from "./summary.js";
export { resolveTofu } from "./tofu.js";
export type {
  MaskedOutput,
  OutputValue,
  ResolvedTofu,
  StackAction,
  StackDefinition,
  StackEvent,
  StackOutputVariables,
  StackRunOptions,
  StackRunResult,
  StackSpec,
  StackUnitSpec,
  TofuOptions,
  UnitResult,
  UnitStatus,
} from "./types.js";
export { unitBase as stackUnitStateDir } from "./workdir.js";
