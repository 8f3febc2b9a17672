/**
 * Loads the declarative configuration: every YAML document under a config path, validated
 * against the supported kinds. Errors name the file, the document index, the line and the field
 * path, e.g. `clusters/local/apps.yaml: document 1 (Kustomization flux-system/api), line 12:
 * spec.prun: unknown field`. Plain v1 ConfigMaps and Secrets are accepted as the supporting
 * objects Flux kinds refer to (substituteFrom, secretRef).
 */
import { readdirSync, realpathSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { z } from "zod";
import { parseYamlStream, SluiceError, secureReadFile, secureResolve, type YamlDoc } from "../core/index.js";
import { KINDS, type KindName, type Metadata, metadataSchema } from "./kinds.js";

export const DEFAULT_NAMESPACE = "flux-system";

export interface ConfigObject<K extends KindName = KindName> {
  kind: K;
  apiVersion: string;
  metadata: Metadata & { namespace: string };
  spec: z.infer<(typeof KINDS)[K]["spec"]>;
  /** Where it was defined: `file#document`. */
  origin: string;
}

export interface SupportingObject {
  kind: "ConfigMap" | "Secret";
  metadata: { name: string; namespace: string };
  /** Decoded string data (Secret data is base64-decoded). Never log. */
  data: Record<string, string>;
  origin: string;
}

export interface Config {
  objects: ConfigObject[];
  supporting: SupportingObject[];
}

export function byKind<K extends KindName>(c: Config, kind: K): ConfigObject<K>[] {
  return c.objects.filter((o): o is ConfigObject<K> => o.kind === kind);
}

export function findObject<K extends KindName>(
  c: Config,
  kind: K,
  namespace: string,
  name: string,
): ConfigObject<K> | undefined {
  return byKind(c, kind).find((o) => o.metadata.name === name && o.metadata.namespace === namespace);
}

/** Loads every *.yaml/*.yml under `path` (a file or directory inside `root`). */
export function loadConfig(root: string, path: string, opts: { maxFileBytes?: number } = {}): Config {
  const realRoot = realpathSync(root);
  const abs = secureResolve(realRoot, path);
  const files = statSync(abs).isDirectory() ? listFiles(realRoot, abs) : [abs];
  const config: Config = { objects: [], supporting: [] };
  for (const f of files) {
    const rel = relative(realRoot, f);
    const docs = parseYamlStream(secureReadFile(realRoot, f, opts.maxFileBytes ?? 4 * 1024 * 1024), rel);
    for (const d of docs) {
      if (d.value === null) continue;
      const obj = parseObject(rel, d);
      if ("spec" in obj) config.objects.push(obj);
      else config.supporting.push(obj);
    }
  }
  const seen = new Set<string>();
  for (const o of [...config.objects, ...config.supporting]) {
    const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
    if (seen.has(key))
      throw new SluiceError("ConfigInvalid", `${o.origin}: ${key} is defined twice`, {
        detail: { object: key },
      });
    seen.add(key);
  }
  return config;
}

/** Validates one parsed document. Exported for the fuzz tests and for API-submitted objects. */
export function parseObject(file: string, d: YamlDoc): ConfigObject | SupportingObject {
  const where = (path: (string | number)[], what: string) => {
    const line = d.lineOf(path);
    return `${file}: document ${d.index}, line ${line}: ${path.length ? `${path.join(".")}: ` : ""}${what}`;
  };
  const fail = (path: (string | number)[], what: string, hint?: string) =>
    new SluiceError("ConfigInvalid", where(path, what), {
      detail: { file, document: d.index, line: d.lineOf(path), field: path.join(".") },
      ...(hint ? { hint } : {}),
    });
  const v = d.value;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw fail([], "expected a Kubernetes-style object (a map)");
  const o = v as Record<string, unknown>;
  if (typeof o.kind !== "string") throw fail(["kind"], "missing kind");
  if (typeof o.apiVersion !== "string") throw fail(["apiVersion"], "missing apiVersion");
  if ((o.kind === "ConfigMap" || o.kind === "Secret") && o.apiVersion === "v1")
    return supporting(file, d, o, fail);
  const def = (KINDS as Record<string, (typeof KINDS)[KindName]>)[o.kind];
  if (!def) {
    throw fail(
      ["kind"],
      `unknown kind ${o.kind}`,
      `supported kinds: ${Object.keys(KINDS).join(", ")}, and v1 ConfigMap/Secret`,
    );
  }
  if (!(def.versions as readonly string[]).includes(o.apiVersion)) {
    throw fail(
      ["apiVersion"],
      `${o.kind} apiVersion ${o.apiVersion} is not supported`,
      `use ${def.versions.join(" or ")}`,
    );
  }
  for (const k of Object.keys(o)) {
    if (!["apiVersion", "kind", "metadata", "spec", "status"].includes(k)) throw fail([k], "unknown field");
  }
  const md = metadataSchema.safeParse(o.metadata);
  if (!md.success) throw zodFail(["metadata"], md.error, fail);
  const spec = def.spec.safeParse(o.spec);
  if (!spec.success) throw zodFail(["spec"], spec.error, fail);
  const namespace = md.data.namespace ?? DEFAULT_NAMESPACE;
  return {
    kind: o.kind as KindName,
    apiVersion: o.apiVersion,
    metadata: { ...md.data, namespace },
    spec: spec.data,
    origin: `${file}#${d.index}`,
  } as ConfigObject;
}

type Fail = (path: (string | number)[], what: string, hint?: string) => SluiceError;

function zodFail(prefix: (string | number)[], err: z.ZodError, fail: Fail): SluiceError {
  const issue = err.issues[0]!;
  const path = [...prefix, ...issue.path.map((p) => (typeof p === "symbol" ? String(p) : p))];
  if (issue.code === "unrecognized_keys") {
    const keys = (issue as { keys: string[] }).keys;
    return fail(
      [...path, keys[0]!],
      keys.length === 1 ? "unknown field" : `unknown fields ${keys.join(", ")}`,
    );
  }
  return fail(path, issue.message);
}

function supporting(file: string, d: YamlDoc, o: Record<string, unknown>, fail: Fail): SupportingObject {
  const md = metadataSchema.safeParse(o.metadata);
  if (!md.success) throw zodFail(["metadata"], md.error, fail);
  const data: Record<string, string> = {};
  const put = (field: string, decode: boolean) => {
    const m = o[field];
    if (m === undefined) return;
    if (typeof m !== "object" || m === null || Array.isArray(m))
      throw fail([field], "must be a map of strings");
    for (const [k, val] of Object.entries(m)) {
      if (typeof val !== "string") throw fail([field, k], "must be a string");
      data[k] = decode ? Buffer.from(val, "base64").toString("utf8") : val;
    }
  };
  put("data", o.kind === "Secret");
  put("stringData", false);
  return {
    kind: o.kind as "ConfigMap" | "Secret",
    metadata: { name: md.data.name, namespace: md.data.namespace ?? DEFAULT_NAMESPACE },
    data,
    origin: `${file}#${d.index}`,
  };
}

function listFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".")) continue;
    const p = secureResolve(root, join(dir, name));
    if (statSync(p).isDirectory()) out.push(...listFiles(root, p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}
