/**
 * sops' Tree.Encrypt for age recipients: a fresh 32-byte data key wrapped for each recipient, each
 * selected leaf sealed with AES-256-GCM (AAD = key path + ':'), and the MAC over all plaintext leaves
 * sealed with the lastmodified time as AAD. The output is what `sops --decrypt` reads.
 */
import { createHash, randomBytes } from "node:crypto";
import { armor, Encrypter } from "age-encryption";
import { SluiceError } from "../core/index.js";
import { sealValue } from "./cipher.js";
import { goRegExp, type Meta, shouldBeEncrypted } from "./decrypt.js";
import {
  fromValue,
  goFormatFloat,
  type Leaf,
  leafBytes,
  type MapEntry,
  type TNode,
  toValue,
} from "./tree.js";

export interface EncryptOptions {
  /** age recipients (`age1…`); at least one. */
  recipients: string[];
  /** At most one rule; with none, keys ending `_unencrypted` stay plain (sops' default). */
  encryptedRegex?: string;
  unencryptedRegex?: string;
  encryptedSuffix?: string;
  unencryptedSuffix?: string;
  macOnlyEncrypted?: boolean;
  /** For tests: the lastmodified time to record (default now). */
  now?: Date;
}

/** The sops version string written into the metadata (the format matches sops 3.9 and later). */
const WRITTEN_VERSION = "3.13.3";

function sealLeaf(l: Leaf, key: Uint8Array, aad: string): Leaf {
  switch (l.t) {
    case "null":
      return l;
    case "str":
      if (l.v === "") return l;
      return { t: "str", v: sealValue(Buffer.from(l.v, "utf8"), "str", key, aad) };
    case "int":
      return { t: "str", v: sealValue(Buffer.from(l.v.toString()), "int", key, aad) };
    case "float":
      return { t: "str", v: sealValue(Buffer.from(goFormatFloat(l.v)), "float", key, aad) };
    case "bool":
      return { t: "str", v: sealValue(Buffer.from(l.v ? "True" : "False"), "bool", key, aad) };
    case "time":
      return { t: "str", v: sealValue(Buffer.from(l.v), "time", key, aad) };
    case "bytes":
      // sops turns []byte into a string before encrypting.
      return { t: "str", v: sealValue(l.v, "str", key, aad) };
  }
}

/** Encrypts a plain document (a map) for age recipients; returns it with a `sops` metadata map. */
export async function encryptValue(
  value: Record<string, unknown>,
  file: string,
  opts: EncryptOptions,
): Promise<Record<string, unknown>> {
  if (opts.recipients.length === 0) {
    throw new SluiceError("DecryptionFailed", `cannot encrypt ${file}: no age recipients given`, {
      detail: { file },
    });
  }
  if ("sops" in value)
    throw new SluiceError("DecryptionFailed", `cannot encrypt ${file}: it already has a sops key`, {
      detail: { file },
    });
  const rules = (
    ["encryptedRegex", "unencryptedRegex", "encryptedSuffix", "unencryptedSuffix"] as const
  ).filter((k) => opts[k]);
  if (rules.length > 1)
    throw new SluiceError("DecryptionFailed", `cannot encrypt ${file}: use only one of ${rules.join(", ")}`, {
      detail: { file },
    });
  const meta: Meta = {
    age: [],
    lastModified: (opts.now ?? new Date()).toISOString().replace(/\.\d+Z$/, "Z"),
    mac: "",
    unencryptedSuffix: rules.length === 0 ? "_unencrypted" : (opts.unencryptedSuffix ?? ""),
    encryptedSuffix: opts.encryptedSuffix ?? "",
    unencryptedRegex: opts.unencryptedRegex
      ? goRegExp(opts.unencryptedRegex, file, "unencrypted_regex")
      : null,
    encryptedRegex: opts.encryptedRegex ? goRegExp(opts.encryptedRegex, file, "encrypted_regex") : null,
    byShape: false,
    macOnlyEncrypted: opts.macOnlyEncrypted === true,
  };
  const key = randomBytes(32);
  const hash = createHash("sha512");
  if (meta.macOnlyEncrypted)
    hash.update(Buffer.from("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69", "hex"));
  const walk = (node: TNode, path: string[]): TNode => {
    if (node.k === "map")
      return {
        k: "map",
        entries: node.entries.map(
          (e): MapEntry => ("key" in e ? { key: e.key, node: walk(e.node, [...path, e.key]) } : e),
        ),
      };
    if (node.k === "seq") return { k: "seq", items: node.items.map((i) => walk(i, path)) };
    if (node.leaf.t === "null") return node;
    const encrypted = shouldBeEncrypted(meta, path);
    if (!meta.macOnlyEncrypted || encrypted) {
      const b = leafBytes(node.leaf);
      if (b) hash.update(b);
    }
    return encrypted ? { k: "leaf", leaf: sealLeaf(node.leaf, key, `${path.join(":")}:`) } : node;
  };
  const root = fromValue(value, file);
  if (root.k !== "map")
    throw new SluiceError("DecryptionFailed", `cannot encrypt ${file}: not a mapping`, { detail: { file } });
  const out = toValue(walk(root, [])) as Record<string, unknown>;
  const age = [];
  for (const recipient of opts.recipients) {
    const enc = new Encrypter();
    enc.addRecipient(recipient);
    age.push({ recipient, enc: armor.encode(await enc.encrypt(key)) });
  }
  const md: Record<string, unknown> = {
    age,
    lastmodified: meta.lastModified,
    mac: sealValue(Buffer.from(hash.digest("hex").toUpperCase()), "str", key, meta.lastModified),
  };
  if (opts.encryptedRegex) md.encrypted_regex = opts.encryptedRegex;
  else if (opts.unencryptedRegex) md.unencrypted_regex = opts.unencryptedRegex;
  else if (opts.encryptedSuffix) md.encrypted_suffix = opts.encryptedSuffix;
  else md.unencrypted_suffix = meta.unencryptedSuffix;
  if (meta.macOnlyEncrypted) md.mac_only_encrypted = true;
  md.version = WRITTEN_VERSION;
  Object.defineProperty(out, "sops", { value: md, enumerable: true, writable: true, configurable: true });
  return out;
}
