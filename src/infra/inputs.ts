/**
 * A unit's inputs → the OpenTofu variables it is run with. The inputs come from the unit's
 * `inputsFile` (an `inputs.tfvars.json`, as in the seed) overlaid with its `inputs` map; then
 *
 *   1. `${dependency.<unit>.outputs.<name>}` takes that output (a whole-string reference keeps the
 *      output's type: a list stays a list); the caller decides real outputs or mockOutputs;
 *   2. every other `${VAR}` goes through the render pipeline's substitution (Flux's envsubst
 *      dialect, strict) with the same layered variables a Kubernetes unit at the unit's path gets:
 *      repository variable files (replace.json, vars.yaml, .env) from the root down to the unit's
 *      directory, the environment's variables, the Stack's `substitute`, --vars-file, --var.
 *
 * The substitution reuses render() through its public API: the inputs are rendered as one
 * `sluice.dev` object from a private temporary directory, with the repository's layers passed as
 * unit layers (render/index.ts exports no bare envsubst).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SluiceError, secureReadFile } from "../core/index.js";
import { collectLayers, defaultRenderLimits, render, type VariableLayer } from "../render/index.js";
import type { Masker } from "./mask.js";
import type { OutputValue, StackDefinition, StackUnitSpec } from "./types.js";

const DEP_REF = /\$\{dependency\.([a-z0-9][-a-z0-9_]*)\.outputs\.([A-Za-z_][-A-Za-z0-9_]*)\}/g;
const WHOLE_DEP_REF = /^\$\{dependency\.([a-z0-9][-a-z0-9_]*)\.outputs\.([A-Za-z_][-A-Za-z0-9_]*)\}$/;

export interface InputContext {
  root: string;
  stack: StackDefinition;
  unit: StackUnitSpec;
  /** The unit's directory (absolute, inside root). */
  unitDir: string;
  environmentVars?: Record<string, string>;
  varsFiles?: string[];
  vars?: Record<string, string>;
  /** Outputs per dependency, real or mock, as the caller decided. */
  depOutputs: ReadonlyMap<string, Record<string, OutputValue>>;
  masker: Masker;
}

/** The dependencies a unit's inputs refer to (to check they are declared). */
export function referencedDependencies(inputs: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown) => {
    if (typeof v === "string") for (const m of v.matchAll(DEP_REF)) out.add(m[1]!);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(inputs);
  return out;
}

/** The raw inputs: inputsFile overlaid with the inline map. */
export function rawInputs(
  root: string,
  stack: StackDefinition,
  unit: StackUnitSpec,
): Record<string, unknown> {
  let fromFile: Record<string, unknown> = {};
  if (unit.inputsFile) {
    const rel = join(unit.path, unit.inputsFile);
    const text = secureReadFile(root, rel, defaultRenderLimits.maxFileBytes);
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new SluiceError("ConfigInvalid", `${rel}: not valid JSON: ${(e as Error).message}`, {
        detail: { file: rel, stack: stack.name, unit: unit.name },
      });
    }
    if (!v || typeof v !== "object" || Array.isArray(v))
      throw new SluiceError(
        "ConfigInvalid",
        `${rel}: an inputs file must hold one JSON object of variables`,
        {
          detail: { file: rel },
        },
      );
    fromFile = v as Record<string, unknown>;
  }
  return { ...fromFile, ...(unit.inputs ?? {}) };
}

export async function resolveInputs(c: InputContext): Promise<Record<string, unknown>> {
  const where = `Stack ${c.stack.name}, unit ${c.unit.name}`;
  const raw = rawInputs(c.root, c.stack, c.unit);
  const declared = new Set((c.unit.dependencies ?? []).map((d) => d.name));
  for (const d of referencedDependencies(raw)) {
    if (!declared.has(d))
      throw new SluiceError(
        "ConfigInvalid",
        `${where}: inputs use dependency.${d}, but ${d} is not in the unit's dependencies`,
        { hint: `add {name: ${d}} to the unit's dependencies (with mockOutputs to plan before it exists)` },
      );
  }
  const nonce = Math.random().toString(36).slice(2, 10);
  const typed = new Map<string, unknown>(); // whole-string placeholders → typed output values
  const depVars: Record<string, string> = {};
  let needsSubstitution = false;
  const output = (dep: string, name: string, field: string): unknown => {
    const outs = c.depOutputs.get(dep);
    const o = outs?.[name];
    if (!outs || !o)
      throw new SluiceError(
        "DependencyNotReady",
        `${where}: input ${field} uses dependency.${dep}.outputs.${name}, but ${dep} has no output ${name}` +
          (outs ? ` (its outputs: ${Object.keys(outs).sort().join(", ") || "none"})` : ""),
        { detail: { stack: c.stack.name, unit: c.unit.name, dependency: dep, output: name } },
      );
    if (o.sensitive) c.masker.add(o.value);
    return o.value;
  };
  const walk = (v: unknown, field: string): unknown => {
    if (typeof v === "string") {
      const whole = WHOLE_DEP_REF.exec(v);
      if (whole) {
        const key = `__sluice_${nonce}_${typed.size}__`;
        typed.set(key, output(whole[1]!, whole[2]!, field));
        return key;
      }
      const s = v.replace(DEP_REF, (_m, dep: string, name: string) => {
        const val = output(dep, name, field);
        const varName = `__sluice_dep_${nonce}_${Object.keys(depVars).length}`;
        depVars[varName] = typeof val === "string" ? val : JSON.stringify(val);
        return `\${${varName}}`;
      });
      if (s.includes("$")) needsSubstitution = true;
      return s;
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, `${field}[${i}]`));
    if (v && typeof v === "object")
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, field ? `${field}.${k}` : k)]));
    return v;
  };
  let inputs = walk(raw, "") as Record<string, unknown>;

  if (needsSubstitution) {
    const layers: VariableLayer[] = collectLayers({
      root: c.root,
      dir: c.unitDir,
      ...(c.environmentVars ? { environment: c.environmentVars } : {}),
      unit: c.stack.spec.substitute
        ? [{ source: `Stack ${c.stack.name} substitute`, vars: c.stack.spec.substitute }]
        : [],
      ...(c.varsFiles ? { varsFiles: c.varsFiles } : {}),
      ...(c.vars ? { vars: c.vars } : {}),
      maxFileBytes: defaultRenderLimits.maxFileBytes,
    });
    if (Object.keys(depVars).length) layers.push({ source: "dependency outputs", vars: depVars });
    inputs = await substitute(inputs, layers, c);
  }
  const restore = (v: unknown): unknown => {
    if (typeof v === "string") return typed.has(v) ? typed.get(v) : v;
    if (Array.isArray(v)) return v.map(restore);
    if (v && typeof v === "object")
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, restore(x)]));
    return v;
  };
  return restore(inputs) as Record<string, unknown>;
}

let scratch: string | undefined;
let scratchSeq = 0;

/** One private scratch directory per process (removed at exit), one file per substitution. */
function scratchFile(): { dir: string; file: string } {
  if (!scratch || !existsSync(scratch)) {
    const dir = mkdtempSync(join(tmpdir(), "sluice-inputs-"));
    scratch = dir;
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return { dir: scratch, file: `inputs-${++scratchSeq}.json` };
}

async function substitute(
  inputs: Record<string, unknown>,
  layers: VariableLayer[],
  c: InputContext,
): Promise<Record<string, unknown>> {
  const { dir, file } = scratchFile();
  try {
    const doc = {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "StackUnitInputs",
      metadata: { name: `${c.stack.name}.${c.unit.name}` },
      spec: inputs,
    };
    // JSON is YAML whose strings are all quoted: substituted values stay strings.
    writeFileSync(join(dir, file), JSON.stringify(doc), { mode: 0o600 });
    try {
      const r = await render({ root: dir, path: file, unitVars: layers });
      const spec = (r.objects[0] as unknown as { spec?: Record<string, unknown> } | undefined)?.spec;
      return spec ?? {};
    } catch (e) {
      const msg = c.masker.text(
        (e as Error).message
          .replaceAll(join(dir, file), c.unit.path)
          .replaceAll(file, c.unit.path)
          .replaceAll(`StackUnitInputs/${c.stack.name}.${c.unit.name} at spec.`, "input "),
      );
      throw new SluiceError(
        (e as { code?: string }).code === "VariableUndefined" ? "VariableUndefined" : "SubstitutionFailed",
        `Stack ${c.stack.name}, unit ${c.unit.name}: inputs: ${msg}`,
        {
          detail: { stack: c.stack.name, unit: c.unit.name },
          hint: "define the variable in a replace.json, the environment's vars, the Stack's substitute, or --var",
        },
      );
    }
  } finally {
    rmSync(join(dir, file), { force: true });
  }
}
