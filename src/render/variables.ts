/**
 * Layered variables, as in the seed's `replace.json` files. The layers, lowest first:
 *
 *   1. variable files in the repository root          (repo defaults)
 *   2. the environment's variables                     (Environments rule `vars`)
 *   3. variable files in each directory below the root down to the rendered path, nearest last
 *   4. the Kustomization's postBuild.substituteFrom entries, then postBuild.substitute
 *   5. --vars-file files, in order
 *   6. --var K=V
 *
 * Within one directory `.env` < `replace.json` < `vars.yaml`/`vars.yml`. A later layer wins.
 * Values are text: JSON/YAML numbers and booleans become their text, newlines are removed (as
 * Flux does), and every name must be a shell-style identifier.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { parseYamlOne, SluiceError, secureReadFile, secureResolve } from "../core/index.js";
import { validateVarName } from "./envsubst.js";

/** File names that hold variables rather than Kubernetes objects, in ascending precedence. */
export const VARIABLE_FILES = [".env", "replace.json", "vars.yaml", "vars.yml"] as const;

export interface VariableLayer {
  /** Where the values came from, for error messages and `sluice render --explain`. */
  source: string;
  vars: Record<string, string>;
}

export interface LayerInputs {
  root: string;
  /** The rendered directory (absolute, inside root). */
  dir: string;
  environment?: Record<string, string>;
  unit?: VariableLayer[];
  varsFiles?: string[];
  vars?: Record<string, string>;
  maxFileBytes: number;
}

/** Builds the ordered layers for one render. */
export function collectLayers(inp: LayerInputs): VariableLayer[] {
  const root = resolve(inp.root);
  const dirs: string[] = [];
  for (let d = resolve(inp.dir); ; d = dirname(d)) {
    dirs.unshift(d);
    if (d === root || d === dirname(d) || relative(root, d).startsWith("..")) break;
  }
  const layers: VariableLayer[] = [];
  const fileLayers = (d: string) => {
    for (const name of VARIABLE_FILES) {
      const p = join(d, name);
      if (existsSync(p)) layers.push(readVariableFile(root, p, inp.maxFileBytes));
    }
  };
  const [rootDir, ...below] = dirs;
  if (rootDir) fileLayers(rootDir);
  if (inp.environment) layers.push(checked({ source: "environment", vars: inp.environment }));
  for (const d of below) fileLayers(d);
  for (const l of inp.unit ?? []) layers.push(checked(l));
  for (const f of inp.varsFiles ?? []) layers.push(readVariableFile(undefined, f, inp.maxFileBytes));
  if (inp.vars) layers.push(checked({ source: "--var", vars: inp.vars }));
  return layers;
}

/** Merges layers, later wins. */
export function mergeLayers(layers: readonly VariableLayer[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of layers) for (const [k, v] of Object.entries(l.vars)) out.set(k, v);
  return out;
}

/** Reads `replace.json`, `vars.yaml`/`.yml`, `.env` or any file given by --vars-file (by extension). */
export function readVariableFile(
  root: string | undefined,
  path: string,
  maxFileBytes: number,
): VariableLayer {
  const text = root
    ? secureReadFile(root, path, maxFileBytes)
    : readFileSync(secureResolve(dirname(resolve(path)), path), "utf8");
  const source = root ? relative(root, path) || basename(path) : path;
  const name = basename(path);
  let raw: Record<string, unknown>;
  if (name === ".env" || name.endsWith(".env")) {
    raw = parseDotenv(text, source);
  } else {
    let value: unknown;
    if (name.endsWith(".json")) {
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new SluiceError("ConfigInvalid", `${source}: not valid JSON: ${(e as Error).message}`, {
          detail: { file: source },
        });
      }
    } else {
      value = parseYamlOne(text, source)?.value ?? {};
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new SluiceError("ConfigInvalid", `${source}: a variable file must hold one map of NAME: value`, {
        detail: { file: source },
      });
    }
    raw = value as Record<string, unknown>;
  }
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") vars[k] = String(v);
    else if (v === null) vars[k] = "";
    else {
      throw new SluiceError(
        "ConfigInvalid",
        `${source}: variable ${k} must be a string, number or boolean, not ${Array.isArray(v) ? "a list" : "a map"}`,
        {
          detail: { file: source, field: k },
        },
      );
    }
  }
  return checked({ source, vars });
}

function checked(l: VariableLayer): VariableLayer {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(l.vars)) {
    if (!validateVarName(k)) {
      throw new SluiceError(
        "VariableNameInvalid",
        `${l.source}: variable name '${k}' is invalid, must match ^[_a-zA-Z][_a-zA-Z0-9]*$`,
        {
          detail: { source: l.source, name: k },
        },
      );
    }
    vars[k] = v.replace(/\r?\n/g, "");
  }
  return { source: l.source, vars };
}

/** KEY=VALUE lines; `#` comments; optional `export `; single or double quotes stripped. */
export function parseDotenv(text: string, source: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith("#")) return;
    const m = /^(?:export\s+)?([^=\s]+)\s*=\s*(.*)$/.exec(t);
    if (!m)
      throw new SluiceError("ConfigInvalid", `${source}:${i + 1}: expected KEY=VALUE`, {
        detail: { file: source, line: i + 1 },
      });
    let v = m[2]!;
    if (
      (v.startsWith('"') && v.endsWith('"') && v.length >= 2) ||
      (v.startsWith("'") && v.endsWith("'") && v.length >= 2)
    )
      v = v.slice(1, -1);
    out[m[1]!] = v;
  });
  return out;
}
