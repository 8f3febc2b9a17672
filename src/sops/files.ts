/**
 * Whole-file decryption in sops' store formats (YAML, JSON, dotenv, binary), and Flux's handling of
 * Kubernetes objects: whole-object decryption when the object carries `sops` metadata, and in-place
 * decryption of Secret entries that are themselves sops files (kustomize-controller
 * internal/decryptor: DecryptResource, detectFormatFromMarkerBytes, formatForPath).
 */
import { type KubeObject, SluiceError, subject } from "../core/index.js";
import { type DecryptOptions, decryptBranches, extractFlatMeta, extractNestedMeta } from "./decrypt.js";
import type { AgeIdentities } from "./keys.js";
import {
  type Branch,
  emitBinary,
  emitDotenv,
  emitJson,
  emitYaml,
  fromDotenvText,
  fromYamlText,
} from "./tree.js";

export type SopsFormat = "yaml" | "json" | "dotenv" | "binary";

function fail(file: string, message: string, hint?: string): never {
  throw new SluiceError("DecryptionFailed", message, { detail: { file }, ...(hint ? { hint } : {}) });
}

/** Loads and decrypts an encrypted file into its branches (documents). */
export async function decryptToBranches(
  text: string,
  file: string,
  format: SopsFormat,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<Branch[]> {
  if (format === "dotenv") {
    const { branch, md } = extractFlatMeta(fromDotenvText(text, file), file);
    return decryptBranches([branch], md, file, ids, opts);
  }
  const docs = fromYamlText(text, file, format === "yaml" ? "YAML" : "JSON");
  if (format !== "yaml" && docs.length !== 1)
    fail(file, `${file}: a sops ${format} file holds exactly one JSON object`);
  const { branches, md } = extractNestedMeta(docs, file);
  return decryptBranches(branches, md, file, ids, opts);
}

/** Writes decrypted branches in a store format. */
export function emitBranches(branches: Branch[], file: string, format: SopsFormat): Buffer {
  switch (format) {
    case "yaml":
      return Buffer.from(emitYaml(branches), "utf8");
    case "json":
    case "dotenv":
    case "binary": {
      if (branches.length !== 1)
        fail(file, `${file}: ${branches.length} YAML documents cannot be written as ${format}`);
      const b = branches[0]!;
      if (format === "json") return Buffer.from(emitJson(b), "utf8");
      if (format === "dotenv") return Buffer.from(emitDotenv(b, file), "utf8");
      return emitBinary(b, file);
    }
  }
}

export async function decryptFileBytes(
  text: string,
  file: string,
  format: SopsFormat,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<Buffer> {
  return emitBranches(await decryptToBranches(text, file, format, ids, opts), file, format);
}

// ---------------------------------------------------------------------------------------------
// Flux: Kubernetes objects

const DECRYPT_ANNOTATION = "kustomize.toolkit.fluxcd.io/decrypt";

/** Input format of a Secret entry from sops' marker bytes (Flux detectFormatFromMarkerBytes). */
export function detectSopsFormat(data: string): "yaml" | "json" | "dotenv" | "ini" | null {
  if (data.includes('"mac": "ENC[')) return "json";
  if (data.includes("sops_mac=ENC[")) return "dotenv";
  if (data.includes("mac: ENC[")) return "yaml";
  if (data.includes("[sops]")) return "ini";
  return null;
}

/** Output format of a Secret entry from its key (Flux formatForPath / sops formats.FormatForPath). */
export function formatForKey(key: string): SopsFormat | "ini" {
  if (key.endsWith(".dockerconfigjson") || key.endsWith(".json")) return "json";
  if (key.endsWith(".yaml") || key.endsWith(".yml")) return "yaml";
  if (key.endsWith(".env")) return "dotenv";
  if (key.endsWith(".ini")) return "ini";
  return "binary";
}

function isStrictBase64(s: string): boolean {
  return s.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(s);
}

/** True for a map with a top-level `sops` map holding a non-empty `mac` (Flux isSOPSEncryptedResource). */
export function hasSopsMetadata(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const md = (value as Record<string, unknown>).sops;
  if (typeof md !== "object" || md === null || Array.isArray(md)) return false;
  const mac = (md as Record<string, unknown>).mac;
  return typeof mac === "string" && mac !== "";
}

/** Decrypts one Secret entry that is itself a sops file; null when it is not one. */
async function decryptEntry(
  raw: string,
  key: string,
  where: string,
  ids: AgeIdentities,
  opts: DecryptOptions,
): Promise<Buffer | null> {
  const inF = detectSopsFormat(raw);
  if (inF === null) return null;
  const outF = formatForKey(key);
  if (inF === "ini" || outF === "ini") {
    fail(
      where,
      `${where}: sops INI files are not supported`,
      "store the entry as YAML, JSON, dotenv or binary",
    );
  }
  const branches = await decryptToBranches(raw, where, inF, ids, opts);
  return emitBranches(branches, where, outF);
}

/**
 * Flux's DecryptResource: an object with `sops` metadata is decrypted whole; otherwise a Secret's
 * `data` (base64) and `stringData` entries that are sops files are decrypted in place, written in the
 * format their key names (`*.yaml`, `*.json`, `*.env`, anything else binary). Objects annotated
 * `kustomize.toolkit.fluxcd.io/decrypt: disabled` are returned unchanged.
 */
export async function decryptKubeObject(
  obj: KubeObject,
  file: string,
  ids: AgeIdentities,
  opts: DecryptOptions,
  decryptWhole: (v: Record<string, unknown>, file: string) => Promise<Record<string, unknown>>,
): Promise<KubeObject> {
  const ann = obj.metadata?.annotations?.[DECRYPT_ANNOTATION];
  if (typeof ann === "string" && ann.toLowerCase() === "disabled") return obj;
  if (hasSopsMetadata(obj)) return (await decryptWhole(obj as Record<string, unknown>, file)) as KubeObject;
  if (obj.kind !== "Secret") return obj;
  const out: KubeObject = { ...obj };
  const name = subject(obj);
  for (const field of ["data", "stringData"] as const) {
    const map = obj[field];
    if (typeof map !== "object" || map === null || Array.isArray(map)) continue;
    const copy: Record<string, unknown> = { ...(map as Record<string, unknown>) };
    for (const [key, value] of Object.entries(copy)) {
      if (typeof value !== "string") continue;
      let raw: string;
      if (field === "data") {
        // Flux leaves entries that are not valid base64 for the apply to reject.
        if (!isStrictBase64(value)) continue;
        raw = Buffer.from(value, "base64").toString("utf8");
      } else {
        raw = value;
      }
      const where = `${file} (${name} ${field}.${key})`;
      const plain = await decryptEntry(raw, key, where, ids, opts);
      if (plain === null) continue;
      copy[key] = field === "data" ? plain.toString("base64") : plain.toString("utf8");
    }
    out[field] = copy;
  }
  return out;
}
