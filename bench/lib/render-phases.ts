/**
 * Breakdown worker: repeats what `render()` (src/render/render.ts) does, one step at a time, with
 * a timer around each, in a fresh process (so the first iteration is as cold as a CLI run).
 * Run: `node --import tsx bench/lib/render-phases.ts '<json PhaseRequest>'`; prints JSON on stdout.
 *
 * It calls the same functions render() calls (some are private to src/render; this file imports
 * them for measurement only) in the same order; `render()` itself is timed last for comparison.
 */
import { closeSync, openSync, readdirSync, statSync, writeSync } from "node:fs";
import { join, relative } from "node:path";
import { performance } from "node:perf_hooks";
import { defaultYamlLimits, isKubeObject, objectKey, secureReadFile } from "../../src/core/index.js";
import { fastParse, looksLikeObjectValue, objectNameOf, substituteValue } from "../../src/render/fast.js";
import {
  collectLayers,
  defaultRenderLimits,
  maskSecrets,
  mergeLayers,
  render,
  sortLegacy,
  toYamlStream,
  VARIABLE_FILES,
} from "../../src/render/index.js";
import { kustomizeBuild, kustomizeRunner, walkKustomization } from "../../src/render/kustomize.js";

export interface PhaseRequest {
  mode: "kustomize" | "plain";
  root: string;
  path: string;
  vars: Record<string, string>;
  /** Times everything this many times in this process; phase times are per iteration. */
  iterations: number;
  /** Also time toYamlStream + the write to /dev/null (what the CLI adds to render()). */
  serialize: boolean;
  /** Skip the phases; only call render() `iterations` times (for a CPU profile). */
  renderOnly?: boolean;
}

export type PhaseTimes = Record<string, number>;

async function phases(req: PhaseRequest): Promise<PhaseTimes> {
  const t: PhaseTimes = {};
  let last = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    t[name] = (t[name] ?? 0) + (now - last);
    last = now;
  };
  const root = req.root;
  const dir = join(root, req.path);
  const limits = defaultRenderLimits;
  if (req.mode === "kustomize") {
    await kustomizeRunner();
    lap("find kustomize (`kustomize version`, `kubectl version`)");
  }
  const vars = mergeLayers(collectLayers({ root, dir, vars: req.vars, maxFileBytes: limits.maxFileBytes }));
  lap("variable layers");
  // render() parses with js-yaml (src/render/fast.ts) and substitutes the parsed values; the
  // `yaml` document path is only its fallback for aliases and syntax errors (not in these inputs).
  let parsed: unknown[] = [];
  const parse = (text: string, file: string) => {
    const docs = fastParse(text, file, defaultYamlLimits.maxDepth);
    if (!docs) throw new Error(`${file}: would take the yaml fallback path`);
    for (const d of docs) if (d !== null && d !== undefined) parsed.push(d);
  };
  if (req.mode === "kustomize") {
    const tree = walkKustomization(root, dir, { allowRemote: false, maxFileBytes: limits.maxFileBytes });
    for (const f of tree.files) {
      const text = secureReadFile(root, f, limits.maxFileBytes);
      if (text.includes("ENC[AES256_GCM,")) throw new Error("unexpected SOPS content");
    }
    lap("kustomization walk (confinement, SOPS check)");
    const text = await kustomizeBuild(dir, req.path, limits.timeoutMs);
    lap("kustomize build (child process)");
    parse(text, "kustomize build");
    lap("YAML parse (js-yaml)");
  } else {
    const files = listYamlFiles(dir);
    const texts = files.map((f) => secureReadFile(root, f, limits.maxFileBytes));
    lap("list and read files");
    texts.forEach((text, i) => {
      parse(text, relative(root, files[i]!));
    });
    lap("YAML parse (js-yaml)");
  }
  const objects = parsed.map((doc, i) => {
    if (!looksLikeObjectValue(doc)) throw new Error("not a Kubernetes object");
    const r = substituteValue(doc, vars, true, objectNameOf(doc, "bench", i));
    if (r.missing.length > 0)
      throw new Error(`undefined variables: ${r.missing.map((m) => m.name).join(", ")}`);
    if (!isKubeObject(r.value)) throw new Error("bad object");
    return r.value;
  });
  parsed = [];
  lap("${VAR} substitution (to plain values)");
  const seen = new Set<string>();
  for (const o of objects) {
    const k = objectKey(o);
    if (seen.has(k)) throw new Error(`duplicate ${k}`);
    seen.add(k);
  }
  const ordered = req.mode === "plain" ? sortLegacy(objects) : objects;
  lap(req.mode === "plain" ? "duplicate check, legacy sort" : "duplicate check");
  if (req.serialize) {
    const text = toYamlStream(maskSecrets(ordered));
    lap("serialize YAML (toYamlStream)");
    const fd = openSync("/dev/null", "w");
    writeSync(fd, text);
    closeSync(fd);
    lap("write stdout");
  }
  t.objects = ordered.length;
  return t;
}

function listYamlFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      if (name.startsWith(".")) continue;
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(name) && !(VARIABLE_FILES as readonly string[]).includes(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

async function main(): Promise<void> {
  const req = JSON.parse(process.argv[2] ?? "{}") as PhaseRequest;
  const runs: PhaseTimes[] = [];
  const renders: number[] = [];
  for (let i = 0; i < req.iterations; i++) {
    if (!req.renderOnly) runs.push(await phases(req));
    const t0 = performance.now();
    await render({ root: req.root, path: req.path, vars: req.vars });
    renders.push(performance.now() - t0);
  }
  process.stdout.write(`${JSON.stringify({ runs, renders })}\n`);
}

await main();
