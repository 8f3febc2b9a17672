/**
 * Unit outputs. During a run, each unit's outputs are read at most once and cached (the point
 * Terragrunt's users make: no `init` per dependency, no recursive fetching). With Sluice's local
 * backend they come straight from the state file (JSON, no process); with a backend the unit
 * declares, from one `tofu output -json` in its already initialised working copy. After an apply
 * they are also written to outputs.json (mode 0600), which Kubernetes units read.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { SluiceError } from "../core/index.js";
import { SENSITIVE } from "./mask.js";
import type { MaskedOutput, OutputValue, StackOutputVariables } from "./types.js";
import { unitBase } from "./workdir.js";

export type Outputs = Record<string, OutputValue>;

export interface LocalState {
  /** The state file exists and is plain JSON Sluice can read (not encrypted). */
  readable: boolean;
  /** Resources or outputs exist: the unit has been applied and not destroyed. */
  present: boolean;
  resources: number;
  outputs: Outputs;
}

export function readLocalState(path: string): LocalState {
  if (!existsSync(path)) return { readable: true, present: false, resources: 0, outputs: {} };
  let v: { version?: unknown; outputs?: unknown; resources?: unknown };
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return { readable: false, present: true, resources: 0, outputs: {} };
  }
  if (v.version !== 4 || (v.outputs !== undefined && typeof v.outputs !== "object"))
    return { readable: false, present: true, resources: 0, outputs: {} };
  const outputs = normalize(v.outputs ?? {});
  const resources = Array.isArray(v.resources) ? v.resources.length : 0;
  return { readable: true, present: resources > 0 || Object.keys(outputs).length > 0, resources, outputs };
}

/** `tofu output -json` / state-file outputs → OutputValue records. */
export function normalize(raw: unknown): Outputs {
  const out: Outputs = {};
  if (!raw || typeof raw !== "object") return out;
  for (const [k, o] of Object.entries(raw as Record<string, unknown>)) {
    if (!o || typeof o !== "object") continue;
    const r = o as { value?: unknown; type?: unknown; sensitive?: unknown };
    out[k] = {
      value: r.value,
      ...(r.type !== undefined ? { type: r.type } : {}),
      sensitive: r.sensitive === true,
    };
  }
  return out;
}

export function maskOutputs(o: Outputs): Record<string, MaskedOutput> {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [
      k,
      { value: v.sensitive ? SENSITIVE : v.value, sensitive: v.sensitive },
    ]),
  );
}

export function writeOutputsRecord(file: string, outputs: Outputs): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ writtenAt: new Date().toISOString(), outputs }, null, 2)}\n`, {
    mode: 0o600,
  });
  renameSync(tmp, file);
}

export function removeOutputsRecord(file: string): void {
  rmSync(file, { force: true });
}

export function readOutputsRecord(file: string): Outputs | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return normalize((JSON.parse(readFileSync(file, "utf8")) as { outputs?: unknown }).outputs);
  } catch {
    return undefined;
  }
}

/** Text for one value: strings as they are, numbers and booleans as text, lists and maps as JSON. */
function asText(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === null || v === undefined) return "";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

/**
 * A stack unit's outputs as substitution variables for a Kubernetes unit in the same environment:
 * push the result as a render `unitVars` layer (postBuild.substituteFrom `kind: StackOutputs`).
 * Names keep OpenTofu's output names with `-` turned into `_`. Sensitive values are included (a
 * render needs them, like a Secret's in substituteFrom) and listed in `sensitive` for masking.
 * Throws DependencyNotReady when the unit has not been applied in that environment.
 */
export function stackOutputsAsVariables(
  stateDir: string,
  env: string,
  stack: string,
  unit: string,
): StackOutputVariables {
  const outputs = readUnitOutputs(stateDir, env, stack, unit);
  if (!outputs)
    throw new SluiceError(
      "DependencyNotReady",
      `StackOutputs ${stack}/${unit}: the unit has not been applied in environment ${env} (no outputs in ${unitBase(stateDir, env, stack, unit)})`,
      {
        detail: { stack, unit, env },
        hint: `run \`sluice stack apply --env ${env} ${unit}\` (or the whole stack) first`,
      },
    );
  const vars: Record<string, string> = {};
  const sensitive: string[] = [];
  for (const [name, o] of Object.entries(outputs).sort(([a], [b]) => a.localeCompare(b))) {
    const key = name.replace(/-/g, "_");
    vars[key] = asText(o.value);
    if (o.sensitive) sensitive.push(key);
  }
  return { source: `StackOutputs ${stack}/${unit}`, vars, sensitive };
}

/**
 * The outputs recorded by the unit's last apply in `env`, else (for Sluice's local backend) those
 * in its state file; undefined when it has none.
 */
export function readUnitOutputs(
  stateDir: string,
  env: string,
  stack: string,
  unit: string,
): Outputs | undefined {
  const base = unitBase(stateDir, env, stack, unit);
  const rec = readOutputsRecord(join(base, "outputs.json"));
  if (rec) return rec;
  const st = readLocalState(join(base, "terraform.tfstate"));
  return st.readable && st.present ? st.outputs : undefined;
}
