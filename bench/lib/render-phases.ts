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
import { isKubeObject, objectKey, parseYamlDocuments, secureReadFile } from "../../src/core/index.js";
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
import { substituteDocument, substitutionDisabled } from "../../src/render/substitute.js";
import { isSopsDocument } from "../../src/sops/index.js";

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
  let docs: ReturnType<typeof parseYamlDocuments>;
  if (req.mode === "kustomize") {
    const tree = walkKustomization(root, dir, { allowRemote: false, maxFileBytes: limits.maxFileBytes });
    for (const f of tree.files) {
      const text = secureReadFile(root, f, limits.maxFileBytes);
      if (text.includes("ENC[AES256_GCM,")) throw new Error("unexpected SOPS content");
    }
    lap("kustomization walk (confinement, SOPS check)");
    const text = await kustomizeBuild(dir, req.path, limits.timeoutMs);
    lap("kustomize build (child process)");
    docs = parseYamlDocuments(text, "kustomize build", {
      maxBytes: Number.MAX_SAFE_INTEGER,
      maxAliases: limits.maxAliases,
    }).filter((d) => d.doc.contents !== null);
    lap("YAML parse");
  } else {
    const files = listYamlFiles(dir);
    const texts = files.map((f) => secureReadFile(root, f, limits.maxFileBytes));
    lap("list and read files");
    docs = [];
    texts.forEach((text, i) => {
      for (const d of parseYamlDocuments(text, relative(root, files[i]!), { maxAliases: limits.maxAliases }))
        if (d.doc.contents !== null) docs.push(d);
    });
    lap("YAML parse");
    for (const d of docs) if (!isKubeObject(d.toValue())) throw new Error("not a Kubernetes object");
    lap("to JS values, 1st pass (Kubernetes check)");
  }
  for (const d of docs) {
    const name = `${String(d.doc.get("kind"))}/${String(d.doc.getIn(["metadata", "name"]))}`;
    if (!substitutionDisabled(d.doc)) {
      const missing = substituteDocument(d.doc, vars, true, name);
      if (missing.length > 0)
        throw new Error(`undefined variables: ${missing.map((m) => m.name).join(", ")}`);
    }
  }
  lap("${VAR} substitution");
  const objects = docs.map((d) => {
    const v = d.toValue();
    if (!isKubeObject(v) || isSopsDocument(v)) throw new Error("bad object");
    return v;
  });
  lap(req.mode === "plain" ? "to JS values, 2nd pass (after substitution)" : "to JS values");
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
