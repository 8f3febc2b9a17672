/**
 * render: a path in a checkout → the exact objects an environment should run.
 *
 *   1. confine: the path and everything it references must stay inside the repository root;
 *   2. build: a directory with a kustomization goes through the real kustomize (SOPS files it
 *      reads are decrypted first, in a private temporary copy, as Flux does for its sources);
 *      any other directory is every YAML file under it, decrypted, in kustomize's legacy order;
 *   3. substitute: `${VAR}` from the layered variables (variables.ts), strict by default;
 *   4. check: every document is a Kubernetes object, no duplicates, limits respected.
 * Nothing is written outside the temporary copy, and an error at any step returns no objects.
 */
import {
  cpSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, relative } from "node:path";
import { type Document, stringify } from "yaml";
import {
  defaultYamlLimits,
  isKubeObject,
  type KubeObject,
  objectKey,
  parseYamlDocuments,
  SluiceError,
  secureReadFile,
  secureResolve,
  subject,
} from "../core/index.js";
import type { AgeIdentities } from "../sops/index.js";
import { fastParse, looksLikeObjectValue, objectNameOf, substituteValue } from "./fast.js";
import { kustomizationFile, kustomizeBuild, walkKustomization } from "./kustomize.js";
import { sortLegacy } from "./order.js";
import { type Missing, substituteDocument, substitutionDisabled } from "./substitute.js";
import { collectLayers, mergeLayers, VARIABLE_FILES, type VariableLayer } from "./variables.js";

export interface RenderLimits {
  /** Largest file read from the repository. */
  maxFileBytes: number;
  /** Most objects one render may produce. */
  maxObjects: number;
  /** Longest a kustomize build may run. */
  timeoutMs: number;
  /** Most YAML alias expansions per document. */
  maxAliases: number;
}

export const defaultRenderLimits: RenderLimits = {
  maxFileBytes: 4 * 1024 * 1024,
  maxObjects: 20_000,
  timeoutMs: 120_000,
  maxAliases: 100,
};

export interface RenderOptions {
  /** Repository root: nothing outside it is ever read. */
  root: string;
  /** Directory (or single file) to render, relative to root. */
  path: string;
  /** `--var K=V`: the highest layer. */
  vars?: Record<string, string>;
  /** `--vars-file F`: below --var, in order. */
  varsFiles?: string[];
  /** The environment's variables (Environments rule). */
  environmentVars?: Record<string, string>;
  /** Unit-level layers (postBuild.substituteFrom, then postBuild.substitute). */
  unitVars?: VariableLayer[];
  /** Flux's behaviour: an undefined variable becomes "". Default false (strict). */
  allowUndefined?: boolean;
  /** Needed only when the path holds SOPS-encrypted content. */
  ageIdentities?: AgeIdentities;
  /** Let kustomizations reference remote bases. Default false. */
  allowRemoteResources?: boolean;
  limits?: Partial<RenderLimits>;
}

export interface RenderResult {
  objects: KubeObject[];
  warnings: string[];
  /** The variable layers used, names only (values may be secret). */
  layers: { source: string; names: string[] }[];
}

export async function render(opts: RenderOptions): Promise<RenderResult> {
  const limits = { ...defaultRenderLimits, ...opts.limits };
  const root = realpathSync(opts.root);
  const target = secureResolve(root, opts.path);
  const display = relative(root, target) || ".";
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(target);
  } catch {
    throw new SluiceError("NotFound", `render path ${opts.path} does not exist in ${root}`, {
      detail: { path: opts.path },
    });
  }
  const dir = st.isDirectory() ? target : join(target, "..");
  const layers = collectLayers({
    root,
    dir,
    environment: opts.environmentVars,
    unit: opts.unitVars,
    varsFiles: opts.varsFiles,
    vars: opts.vars,
    maxFileBytes: limits.maxFileBytes,
  });
  const vars = mergeLayers(layers);
  const warnings: string[] = [];

  const strict = !opts.allowUndefined;
  const missing: Missing[] = [];
  const objects: unknown[] = [];
  /** Parses one stream (a file, or kustomize's output), substitutes, and collects its objects. */
  const addStream = (text: string, file: string, maxBytes: number) => {
    const fast = fastParse(text, file, defaultYamlLimits.maxDepth);
    if (fast) {
      fast.forEach((doc, index) => {
        if (doc === null || doc === undefined) return;
        if (!looksLikeObjectValue(doc)) throw notKubernetes(file, index, doc);
        const r = substituteValue(doc, vars, strict, objectNameOf(doc, file, index));
        missing.push(...r.missing);
        objects.push(r.value);
        if (objects.length > limits.maxObjects) throw tooMany(display, limits.maxObjects);
      });
      return;
    }
    // The `yaml` path: aliases (bounded), and errors with file, document and line.
    for (const d of parseYamlDocuments(text, file, { maxBytes, maxAliases: limits.maxAliases })) {
      if (d.doc.contents === null) continue;
      if (!looksLikeObject(d.doc)) throw notKubernetes(file, d.index, d.toValue());
      if (!substitutionDisabled(d.doc))
        missing.push(...substituteDocument(d.doc, vars, strict, objectName(d.doc, file, d.index)));
      objects.push(d.toValue());
      if (objects.length > limits.maxObjects) throw tooMany(display, limits.maxObjects);
    }
  };

  const built = st.isDirectory() && !!kustomizationFile(target);
  if (built) {
    addStream(
      await buildKustomization(root, target, display, opts, limits),
      `kustomize build ${display}`,
      Number.MAX_SAFE_INTEGER,
    );
  } else {
    for (const f of st.isDirectory() ? listYamlFiles(root, target) : [target]) {
      const rel = relative(root, f);
      let text = secureReadFile(root, f, limits.maxFileBytes);
      // sops' MAC covers every document of a file, so an encrypted file is decrypted whole,
      // from its text (key order and timestamps as sops hashed them), before parsing.
      if (looksEncrypted(text))
        text = await (await sops()).decryptSopsFile(text, rel, "yaml", requireIdentities(opts, rel));
      addStream(text, rel, limits.maxFileBytes);
    }
  }
  if (missing.length > 0) throw undefinedVariables(display, missing);
  for (const value of objects) {
    if (!isKubeObject(value)) throw notKubernetes(display, objects.indexOf(value), value);
    if (isSopsMetadata(value)) {
      throw new SluiceError("DecryptionFailed", `${subject(value)}: still SOPS-encrypted after the build`, {
        detail: { object: subject(value) },
        hint: "encrypted files must be listed as kustomize resources or generator inputs inside the repository",
      });
    }
  }
  const seen = new Map<string, number>();
  (objects as KubeObject[]).forEach((o, i) => {
    const k = objectKey(o);
    if (seen.has(k))
      throw new SluiceError("ConfigInvalid", `${display}: ${subject(o)} is defined twice`, {
        detail: { object: subject(o) },
      });
    seen.set(k, i);
  });
  const ordered = built ? (objects as KubeObject[]) : sortLegacy(objects as KubeObject[]);
  return {
    objects: ordered,
    warnings,
    layers: layers.map((l) => ({ source: l.source, names: Object.keys(l.vars) })),
  };
}

/** A YAML stream of the objects, `---` between documents, no anchors, no line folding. */
export function toYamlStream(objects: readonly KubeObject[]): string {
  return objects.map((o) => stringify(o, { aliasDuplicateObjects: false, lineWidth: 0 })).join("---\n");
}

/** Masks Secret values (data, stringData) for output that people or logs see. */
export function maskSecrets(objects: readonly KubeObject[]): KubeObject[] {
  return objects.map((o) => {
    if (o.kind !== "Secret" || o.apiVersion !== "v1") return o;
    const out: KubeObject = { ...o };
    for (const f of ["data", "stringData"] as const) {
      const m = o[f];
      if (m && typeof m === "object") out[f] = Object.fromEntries(Object.keys(m).map((k) => [k, "***"]));
    }
    return out;
  });
}

async function buildKustomization(
  root: string,
  dir: string,
  display: string,
  opts: RenderOptions,
  limits: RenderLimits,
): Promise<string> {
  const tree = walkKustomization(root, dir, {
    allowRemote: opts.allowRemoteResources ?? false,
    maxFileBytes: limits.maxFileBytes,
  });
  const encrypted = tree.files.filter((f) => looksEncrypted(secureReadFile(root, f, limits.maxFileBytes)));
  if (encrypted.length === 0) return kustomizeBuild(dir, display, limits.timeoutMs);
  // Decrypt into a private copy of the repository, build there, then remove the plaintext.
  const ids = requireIdentities(opts, relative(root, encrypted[0]!));
  const tmp = mkdtempSync(join(tmpdir(), "sluice-render-"));
  try {
    cpSync(root, tmp, { recursive: true, filter: (src) => !src.split("/").includes(".git") });
    for (const f of encrypted) {
      const rel = relative(root, f);
      const text = secureReadFile(root, f, limits.maxFileBytes);
      const plain = await (await sops()).decryptSopsFile(text, rel, formatOf(f), ids);
      writeFileSync(join(tmp, rel), plain, { mode: 0o600 });
    }
    return await kustomizeBuild(join(tmp, relative(root, dir)), display, limits.timeoutMs);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The SOPS module (and its crypto) is loaded only when a repository holds encrypted files. */
function sops() {
  return import("../sops/index.js");
}

/** A rendered object still carrying sops metadata (an encrypted file kustomize did not read). */
function isSopsMetadata(value: object): boolean {
  const m = (value as { sops?: unknown }).sops;
  return typeof m === "object" && m !== null && "mac" in m;
}

/** Cheap test before parsing: sops writes `ENC[AES256_GCM,` values and a `sops` metadata key. */
function looksEncrypted(text: string): boolean {
  return text.includes("ENC[AES256_GCM,") && /(^|\n)\s*"?sops"?\s*:/.test(text);
}

function formatOf(f: string): "yaml" | "json" | "dotenv" | "binary" {
  const e = extname(f);
  if (e === ".yaml" || e === ".yml") return "yaml";
  if (e === ".json") return "json";
  if (e === ".env" || f.endsWith("/.env")) return "dotenv";
  return "binary";
}

/** Every *.yaml / *.yml below dir, sorted, skipping hidden folders and variable files. */
function listYamlFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 64)
      throw new SluiceError("LimitExceeded", `${relative(root, d)}: directories nested too deeply`, {});
    for (const name of readdirSync(d).sort()) {
      if (name.startsWith(".")) continue;
      const p = join(d, name);
      const ls = lstatSync(p);
      const real = ls.isSymbolicLink() ? secureResolve(root, p) : p;
      const st = ls.isSymbolicLink() ? statSync(real) : ls;
      if (st.isDirectory()) walk(real, depth + 1);
      else if (/\.ya?ml$/.test(name) && !(VARIABLE_FILES as readonly string[]).includes(name)) out.push(real);
    }
  };
  walk(dir, 0);
  return out;
}

function requireIdentities(opts: RenderOptions, file: string): AgeIdentities {
  if (opts.ageIdentities && opts.ageIdentities.identities.length > 0) return opts.ageIdentities;
  throw new SluiceError("DecryptionFailed", `${file} is SOPS-encrypted but no age identity was given`, {
    detail: { file },
    hint: "pass --age-key-file, or set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY",
  });
}

function objectName(doc: Document, file: string, index: number): string {
  const kind = doc.get("kind");
  const name = doc.getIn(["metadata", "name"]);
  const ns = doc.getIn(["metadata", "namespace"]);
  if (typeof kind === "string" && typeof name === "string")
    return ns ? `${kind}/${ns}/${name}` : `${kind}/${name}`;
  return `${file} document ${index}`;
}

function looksLikeObject(doc: Document): boolean {
  return (
    typeof doc.get("apiVersion") === "string" &&
    typeof doc.get("kind") === "string" &&
    typeof doc.getIn(["metadata", "name"]) === "string"
  );
}

function notKubernetes(file: string, index: number, value: unknown): SluiceError {
  const what =
    value && typeof value === "object" && !Array.isArray(value)
      ? "has no apiVersion, kind and metadata.name"
      : "is not a map";
  return new SluiceError(
    "NotKubernetes",
    `${file}: document ${index} is not a Kubernetes object: it ${what}`,
    {
      detail: { file, document: index },
      hint: "keep non-Kubernetes YAML out of rendered directories (variable files must be named vars.yaml, replace.json or .env)",
    },
  );
}

function tooMany(display: string, max: number): SluiceError {
  return new SluiceError("LimitExceeded", `${display}: more than ${max} objects`, {
    hint: "split the unit, or raise --max-objects",
  });
}

function undefinedVariables(display: string, missing: Missing[]): SluiceError {
  const names = [...new Set(missing.map((m) => m.name))];
  const lines = missing.map((m) => `  \${${m.name}} in ${m.object} at ${m.field}`);
  return new SluiceError(
    "VariableUndefined",
    `${display}: ${names.length} undefined variable${names.length === 1 ? "" : "s"} (${names.join(", ")}):\n${lines.join("\n")}`,
    {
      detail: { missing },
      hint: "define them in replace.json/vars.yaml/.env, --vars-file or --var, give a default (${NAME:=value}), or pass --allow-undefined",
    },
  );
}
