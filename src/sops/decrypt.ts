/**
 * A port of sops' Tree.Decrypt and MAC check (getsops/sops sops.go, cmd/sops/common) for age:
 * which leaves are encrypted (suffix/regex rules), the AAD of each value (the map keys on its path
 * joined by ':' plus a trailing ':'; list indices are not part of the path), and the MAC, a SHA-512
 * over the plaintext bytes of the leaves in document order, stored encrypted with the lastmodified
 * string as AAD.
 */
import { createHash, type Hash } from "node:crypto";
import { SluiceError } from "../core/index.js";
import { isEncValue, openValue, parseEncValue } from "./cipher.js";
import { type AgeIdentities, type AgeStanzaEntry, unwrapDataKey } from "./keys.js";
import {
  type Branch,
  fromValue,
  goTimestamp,
  type Leaf,
  leafBytes,
  type MapEntry,
  type TNode,
  toValue,
} from "./tree.js";

/** sops.MACOnlyEncryptedInitialization: sha256("sops"), hashed first when mac_only_encrypted is set. */
const MAC_ONLY_ENCRYPTED_INIT = Buffer.from(
  "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69",
  "hex",
);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const OTHER_KEY_TYPES = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];
const RULE_KEYS = [
  "unencrypted_suffix",
  "encrypted_suffix",
  "unencrypted_regex",
  "encrypted_regex",
  "unencrypted_comment_regex",
  "encrypted_comment_regex",
] as const;

export interface DecryptOptions {
  /**
   * Check the MAC (default true). Flux's kustomize-controller skips it for resources that went
   * through kustomize, because kustomize may add fields (namespace, labels) the MAC covers.
   */
  verifyMac?: boolean;
}

export interface Meta {
  age: AgeStanzaEntry[];
  lastModified: string;
  mac: string;
  unencryptedSuffix: string;
  encryptedSuffix: string;
  unencryptedRegex: RegExp | null;
  encryptedRegex: RegExp | null;
  /** A comment regex is set: encryption depends on comments, which we do not keep, so decide by value shape. */
  byShape: boolean;
  macOnlyEncrypted: boolean;
}

function fail(file: string, message: string, hint?: string): never {
  throw new SluiceError("DecryptionFailed", message, { detail: { file }, ...(hint ? { hint } : {}) });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Go RE2 syntax to a JavaScript RegExp (leading inline flags like `(?i)` become RegExp flags). */
export function goRegExp(pattern: string, file: string, field: string): RegExp {
  let src = pattern;
  let flags = "";
  const m = /^\(\?([imsU]+)\)/.exec(src);
  if (m) {
    if (m[1]!.includes("U"))
      fail(file, `${file}: sops ${field} uses the (?U) flag, which Sluice does not support`);
    flags = [...new Set(m[1]!.split(""))].join("");
    src = src.slice(m[0].length);
  }
  try {
    return new RegExp(src, flags);
  } catch {
    fail(
      file,
      `${file}: sops ${field} ${JSON.stringify(pattern)} is not a regular expression Sluice can use`,
    );
  }
}

/** RFC 3339 as Go's time.Format(time.RFC3339) re-prints it: no fraction, `Z` for a zero offset. */
function normalizeLastModified(v: unknown, file: string): string {
  if (v instanceof Date) return v.toISOString().replace(/\.\d+Z$/, "Z");
  if (typeof v !== "string" || v === "") fail(file, `${file}: sops metadata has no lastmodified`);
  const m = /^(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.\d+)?([Zz]|[+-]\d\d:\d\d)$/.exec(v);
  if (!m) fail(file, `${file}: sops lastmodified ${JSON.stringify(v)} is not an RFC 3339 time`);
  const zone = m[3] === "z" || m[3] === "Z" || m[3] === "+00:00" || m[3] === "-00:00" ? "Z" : m[3];
  return `${m[1]}T${m[2]}${zone}`;
}

function ageEntries(v: unknown): AgeStanzaEntry[] {
  if (!Array.isArray(v)) return [];
  return v.filter(isRecord).map((e) => ({
    recipient: typeof e.recipient === "string" ? e.recipient : "",
    enc: typeof e.enc === "string" ? e.enc : "",
  }));
}

/** Reads the `sops` metadata map (already unflattened for dotenv). */
export function parseMeta(md: Record<string, unknown>, file: string): Meta {
  let age = ageEntries(md.age);
  const groups = Array.isArray(md.key_groups) ? md.key_groups.filter(isRecord) : [];
  if (groups.length > 1) {
    fail(
      file,
      `${file} splits its data key over ${groups.length} key groups (Shamir), which Sluice does not support`,
      "re-encrypt the file with a single key group",
    );
  }
  if (groups.length === 1) age = [...age, ...ageEntries(groups[0]!.age)];
  if (age.length === 0) {
    const holders = [md, ...groups];
    const others = OTHER_KEY_TYPES.filter((t) => holders.some((h) => Array.isArray(h[t]) && h[t].length > 0));
    fail(
      file,
      `no age identity can decrypt ${file}: it has no age recipients${others.length ? ` (encrypted for ${others.join(", ")})` : ""}`,
      "Sluice decrypts sops files encrypted for age; add an age recipient (sops updatekeys / --add-age)",
    );
  }
  const str = (k: string) => (typeof md[k] === "string" ? (md[k] as string) : "");
  const rules = RULE_KEYS.filter((k) => str(k) !== "");
  if (rules.length > 1) fail(file, `${file}: sops metadata sets more than one of ${rules.join(", ")}`);
  const macOnly = md.mac_only_encrypted;
  return {
    age,
    lastModified: normalizeLastModified(md.lastmodified, file),
    mac: str("mac"),
    unencryptedSuffix: rules.length === 0 ? "_unencrypted" : str("unencrypted_suffix"),
    encryptedSuffix: str("encrypted_suffix"),
    unencryptedRegex: str("unencrypted_regex")
      ? goRegExp(str("unencrypted_regex"), file, "unencrypted_regex")
      : null,
    encryptedRegex: str("encrypted_regex") ? goRegExp(str("encrypted_regex"), file, "encrypted_regex") : null,
    byShape: str("unencrypted_comment_regex") !== "" || str("encrypted_comment_regex") !== "",
    macOnlyEncrypted: macOnly === true || (typeof macOnly === "string" && /^(true|1|t)$/i.test(macOnly)),
  };
}

/** sops' Tree.shouldBeEncrypted for a value at `path` (comment regexes handled by the caller). */
export function shouldBeEncrypted(meta: Meta, path: readonly string[]): boolean {
  let encrypted = true;
  if (meta.unencryptedSuffix !== "" && path.some((p) => p.endsWith(meta.unencryptedSuffix)))
    encrypted = false;
  if (meta.encryptedSuffix !== "") encrypted = path.some((p) => p.endsWith(meta.encryptedSuffix));
  if (meta.unencryptedRegex && path.some((p) => meta.unencryptedRegex!.test(p))) encrypted = false;
  if (meta.encryptedRegex) encrypted = path.some((p) => meta.encryptedRegex!.test(p));
  return encrypted;
}

function aadOf(path: readonly string[]): string {
  return `${path.join(":")}:`;
}

function showPath(path: readonly string[]): string {
  return path.length === 0 ? "(top level)" : path.join(".");
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The typed value of decrypted bytes (aes/cipher.go Decrypt), or null when they do not parse. */
function typedLeaf(plain: Buffer, type: string): Leaf | null {
  const s = plain.toString("utf8");
  switch (type) {
    case "str":
      try {
        return { t: "str", v: utf8.decode(plain) };
      } catch {
        return { t: "bytes", v: plain };
      }
    case "int": {
      if (!/^[+-]?\d+$/.test(s)) return null;
      const v = BigInt(s.replace(/^\+/, ""));
      return v < INT64_MIN || v > INT64_MAX ? null : { t: "int", v };
    }
    case "float": {
      if (/^[+-]?(inf|infinity)$/i.test(s))
        return { t: "float", v: s.startsWith("-") ? -Infinity : Infinity };
      if (/^[+-]?nan$/i.test(s)) return { t: "float", v: Number.NaN };
      if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return null;
      return { t: "float", v: Number(s) };
    }
    case "bool":
      if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return { t: "bool", v: true };
      if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return { t: "bool", v: false };
      return null;
    case "bytes":
      return { t: "bytes", v: plain };
    case "time": {
      const ts = goTimestamp(s);
      return ts === null ? null : { t: "time", v: ts };
    }
    case "comment":
      return { t: "str", v: s };
    default:
      return null;
  }
}

interface Walk {
  meta: Meta;
  key: Uint8Array;
  file: string;
  hash: Hash;
}

function decryptLeaf(leaf: Leaf, path: string[], w: Walk): Leaf {
  const encrypted = w.meta.byShape ? leaf.t === "str" && isEncValue(leaf.v) : shouldBeEncrypted(w.meta, path);
  let out = leaf;
  if (encrypted) {
    if (leaf.t !== "str") {
      fail(
        w.file,
        `${w.file}: value at ${showPath(path)} should be sops-encrypted but is a plain ${leaf.t}`,
        "re-encrypt the file with sops",
      );
    }
    if (leaf.v !== "") {
      const enc = parseEncValue(leaf.v);
      if (!enc)
        fail(
          w.file,
          `${w.file}: value at ${showPath(path)} should be sops-encrypted but is not an ENC[AES256_GCM,…] value`,
          "re-encrypt the file with sops",
        );
      let plain: Buffer;
      try {
        plain = openValue(enc, w.key, aadOf(path));
      } catch {
        fail(
          w.file,
          `${w.file}: cannot decrypt the value at ${showPath(path)}: authentication failed (the value was modified, moved, or encrypted with another data key)`,
          "restore the file from git history or re-encrypt it with sops",
        );
      }
      const typed = typedLeaf(plain, enc.type);
      if (!typed)
        fail(w.file, `${w.file}: the value at ${showPath(path)} does not decode as sops type '${enc.type}'`);
      out = typed;
    }
  }
  if (!w.meta.macOnlyEncrypted || encrypted) {
    const b = leafBytes(out);
    if (b) w.hash.update(b);
  }
  return out;
}

function decryptComment(text: string, path: string[], w: Walk): string {
  if (!w.meta.byShape && !shouldBeEncrypted(w.meta, path)) return text;
  const enc = parseEncValue(text);
  if (!enc) return text;
  try {
    const plain = openValue(enc, w.key, aadOf(path));
    // sops keeps a comment it cannot decrypt as it is ("possibly unencrypted comment").
    return plain.toString("utf8");
  } catch {
    return text;
  }
}

function walkEntries(entries: MapEntry[], path: string[], w: Walk): MapEntry[] {
  return entries.map((e) =>
    "comment" in e
      ? { comment: decryptComment(e.comment, path, w) }
      : { key: e.key, node: walkNode(e.node, [...path, e.key], w) },
  );
}

function walkNode(node: TNode, path: string[], w: Walk): TNode {
  switch (node.k) {
    case "map":
      return { k: "map", entries: walkEntries(node.entries, path, w) };
    case "seq":
      return { k: "seq", items: node.items.map((i) => walkNode(i, path, w)) };
    case "leaf":
      return node.leaf.t === "null" ? node : { k: "leaf", leaf: decryptLeaf(node.leaf, path, w) };
  }
}

/** Decrypts every branch (document) of a file with the data key the metadata gives, and checks the MAC. */
export async function decryptBranches(
  branches: Branch[],
  md: Record<string, unknown>,
  file: string,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<Branch[]> {
  const meta = parseMeta(md, file);
  const key = await unwrapDataKey(meta.age, ids, file);
  const hash = createHash("sha512");
  if (meta.macOnlyEncrypted) hash.update(MAC_ONLY_ENCRYPTED_INIT);
  const w: Walk = { meta, key, file, hash };
  const out = branches.map((b) => walkEntries(b, [], w));
  const computed = hash.digest("hex").toUpperCase();
  if (opts.verifyMac !== false) {
    const macMismatch: () => never = () =>
      fail(
        file,
        `MAC mismatch in ${file}: the file was modified after encryption`,
        "restore the file from git history, or re-encrypt it with sops",
      );
    const enc = meta.mac === "" ? null : parseEncValue(meta.mac);
    if (!enc) macMismatch();
    let stored: string;
    try {
      stored = openValue(enc, key, meta.lastModified).toString("utf8");
    } catch {
      macMismatch();
    }
    if (stored !== computed) macMismatch();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Metadata location per format

/** Splits `sops` off YAML/JSON branches: metadata from the first document, removed from all. */
export function extractNestedMeta(
  branches: Branch[],
  file: string,
): { branches: Branch[]; md: Record<string, unknown> } {
  let md: unknown;
  const rest = branches.map((b, i) =>
    b.filter((e) => {
      if (!("key" in e) || e.key !== "sops") return true;
      if (i === 0) md = toValue(e.node);
      return false;
    }),
  );
  if (!isRecord(md))
    fail(file, `${file} is not a sops-encrypted file: no sops metadata map in its first document`);
  return { branches: rest, md };
}

/** Unflattens dotenv metadata (`sops_age__list_0__map_enc=…`) into the nested map. */
export function extractFlatMeta(
  branch: Branch,
  file: string,
): { branch: Branch; md: Record<string, unknown> } {
  const md: Record<string, unknown> = {};
  const rest: Branch = [];
  let found = false;
  for (const e of branch) {
    if (!("key" in e) || !e.key.startsWith("sops_")) {
      rest.push(e);
      continue;
    }
    found = true;
    const value = e.node.k === "leaf" && e.node.leaf.t === "str" ? e.node.leaf.v : "";
    const tokens = e.key.slice("sops_".length).split(/(?=__map_|__list_)/);
    let cur: Record<string, unknown> | unknown[] = md;
    tokens.forEach((tok, i) => {
      const last = i === tokens.length - 1;
      const next = tokens[i + 1];
      const make = () => (next?.startsWith("__list_") ? [] : {});
      const k: string | number = tok.startsWith("__list_")
        ? Number(tok.slice("__list_".length))
        : tok.startsWith("__map_")
          ? tok.slice("__map_".length)
          : tok;
      const holder = cur as Record<string | number, unknown>;
      if (typeof k === "number" && (!Number.isInteger(k) || k < 0 || k > 1000))
        fail(file, `${file}: bad sops metadata key ${e.key}`);
      if (typeof k === "string" && (k === "__proto__" || k === "constructor" || k === "prototype"))
        fail(file, `${file}: bad sops metadata key ${e.key}`);
      if (last) {
        holder[k] = value;
      } else {
        if (typeof holder[k] !== "object" || holder[k] === null) holder[k] = make();
        cur = holder[k] as Record<string, unknown> | unknown[];
      }
    });
  }
  if (!found) fail(file, `${file} is not a sops-encrypted dotenv file: no sops_* metadata lines`);
  return { branch: rest, md };
}

/** Decrypts a parsed document (a map holding a top-level `sops` map) into a plain value without `sops`. */
export async function decryptValue(
  value: Record<string, unknown>,
  file: string,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<Record<string, unknown>> {
  const root = fromValue(value, file);
  if (root.k !== "map") fail(file, `${file}: a sops document must be a mapping`);
  const { branches, md } = extractNestedMeta([root.entries], file);
  const [out] = await decryptBranches(branches, md, file, ids, opts);
  return toValue({ k: "map", entries: out! }) as Record<string, unknown>;
}
