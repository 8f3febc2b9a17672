/**
 * The types of the infra module: Terragrunt-style stacks of OpenTofu units. A `Stack` (kind in
 * `sluice.dev/v1alpha1`, schema in src/config/kinds.ts) lists units; each unit is a directory of
 * `.tf` files in the repository, run by the real `tofu` (or `terraform`) binary.
 */
import type { StackSpec, StackUnitSpec } from "../config/index.js";

export type { StackSpec, StackUnitSpec };

/** A Stack read from the repository. */
export interface StackDefinition {
  name: string;
  namespace: string;
  /** Where it was defined: `file#document`. */
  origin: string;
  spec: StackSpec;
}

export type StackAction = "plan" | "apply" | "destroy" | "output";

/** How OpenTofu is run. Every field has a default (see `resolveTofu`). */
export interface TofuOptions {
  /** The binary: `tofu` or `terraform`. Default: $SLUICE_TOFU, ~/.cache/sluice/bin/tofu, PATH. */
  binary?: string;
  /** CLI configuration (TF_CLI_CONFIG_FILE). Default: ~/.cache/sluice/tofu.rc when it exists. */
  cliConfigFile?: string;
  /** Extra environment for every tofu process (credentials for a remote backend, …). */
  env?: Record<string, string>;
  /** Longest one tofu command may run. Default 30 minutes. */
  timeoutMs?: number;
}

export interface ResolvedTofu {
  binary: string;
  cliConfigFile?: string;
  env: Record<string, string>;
  timeoutMs: number;
}

/** One line of progress while a stack runs. Never holds a sensitive value. */
export type StackEvent =
  | { type: "start"; unit: string; action: StackAction; at: number }
  | { type: "step"; unit: string; action: StackAction; step: string; at: number }
  | { type: "done"; unit: string; action: StackAction; result: UnitResult; at: number };

export interface StackRunOptions {
  /** Repository root: unit paths, modules and inputs files must stay inside it. */
  root: string;
  stack: StackDefinition;
  action: StackAction;
  /** Environment name (state is kept per environment). */
  env: string;
  /** Sluice's state directory: state goes to `<stateDir>/infra/<env>/<stack>/<unit>/`. */
  stateDir: string;
  /** Only these units (their dependencies' outputs are read from state). Default: all. */
  units?: string[];
  /** Most units at once. Default: the Stack's `parallelism`, else the number of cores. */
  parallelism?: number;
  /** The environment's variables (Environments rule `vars`). */
  environmentVars?: Record<string, string>;
  /** `--vars-file` files, then `--var` values: the highest variable layers. */
  varsFiles?: string[];
  vars?: Record<string, string>;
  tofu?: TofuOptions;
  /** Longest wait for another run holding a unit's lock. Default 5 minutes. */
  lockTimeoutMs?: number;
  onEvent?: (e: StackEvent) => void;
  signal?: AbortSignal;
}

export type UnitStatus =
  /** Done, nothing to change (plan: no changes). */
  | "ok"
  /** plan only: the unit has changes. */
  | "changes"
  | "failed"
  /** Not run: a dependency failed or was skipped, or nothing to do (destroy without state). */
  | "skipped";

export interface UnitResult {
  unit: string;
  action: StackAction;
  status: UnitStatus;
  adds: number;
  changes: number;
  destroys: number;
  /** Epoch milliseconds; equal when the unit never started. */
  startedAt: number;
  endedAt: number;
  durationMs: number;
  /** Why it failed or was skipped (masked: never a sensitive value). */
  message?: string;
  /** Dependencies whose mockOutputs this plan used (they had no state yet). */
  mocked?: string[];
  /** `output`, and after `apply`: the unit's outputs, sensitive values replaced by "(sensitive)". */
  outputs?: Record<string, MaskedOutput>;
}

export interface MaskedOutput {
  value: unknown;
  sensitive: boolean;
}

export interface StackRunResult {
  stack: string;
  env: string;
  action: StackAction;
  /** No unit failed. */
  ok: boolean;
  /** plan: some unit has changes. */
  changes: boolean;
  units: UnitResult[];
  durationMs: number;
}

/** An output as OpenTofu reports it (`tofu output -json`, state file). Values may be secret. */
export interface OutputValue {
  value: unknown;
  type?: unknown;
  sensitive: boolean;
}

/**
 * A stack unit's outputs as substitution variables for a Kubernetes unit's render: the shape of a
 * render `VariableLayer` plus the names whose values are sensitive (mask them in every message).
 */
export interface StackOutputVariables {
  /** `StackOutputs <stack>/<unit>`, for error messages. */
  source: string;
  /** Output name (`-` becomes `_`) → value as text (lists and maps as JSON). */
  vars: Record<string, string>;
  /** Variable names whose values came from `sensitive = true` outputs. */
  sensitive: string[];
}
