/**
 * The sops value cipher (getsops/sops aes/cipher.go): AES-256-GCM with a 32-byte nonce, the data key
 * as key and a caller-chosen string as additional authenticated data. Values are stored as
 * `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool|bytes|time|comment>]`.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const ENC_RE = /^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]/s;
const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const NONCE_SIZE = 32;
const TAG_SIZE = 16;

export interface EncValue {
  data: Buffer;
  iv: Buffer;
  tag: Buffer;
  type: string;
}

/** True when `s` has the shape of an encrypted sops value. */
export function isEncValue(s: unknown): s is string {
  return typeof s === "string" && ENC_RE.test(s);
}

/** Parses an `ENC[...]` string; null when it does not have that shape or holds invalid base64. */
export function parseEncValue(s: string): EncValue | null {
  const m = ENC_RE.exec(s);
  if (!m) return null;
  const parts = [m[1]!, m[2]!, m[3]!];
  if (!parts.every((p) => B64_RE.test(p) && p.length % 4 === 0)) return null;
  return {
    data: Buffer.from(parts[0]!, "base64"),
    iv: Buffer.from(parts[1]!, "base64"),
    tag: Buffer.from(parts[2]!, "base64"),
    type: m[4]!,
  };
}

/** Decrypts the ciphertext of a parsed value; throws (without any plaintext) when authentication fails. */
export function openValue(v: EncValue, key: Uint8Array, aad: string): Buffer {
  if (v.iv.length === 0) throw new Error("empty IV");
  if (v.tag.length !== TAG_SIZE) throw new Error("invalid tag length");
  const d = createDecipheriv("aes-256-gcm", key, v.iv, { authTagLength: TAG_SIZE });
  d.setAAD(Buffer.from(aad, "utf8"));
  d.setAuthTag(v.tag);
  return Buffer.concat([d.update(v.data), d.final()]);
}

/** Encrypts plaintext bytes into the sops value format, with a fresh random 32-byte nonce. */
export function sealValue(plain: Uint8Array, type: string, key: Uint8Array, aad: string): string {
  const iv = randomBytes(NONCE_SIZE);
  const c = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_SIZE });
  c.setAAD(Buffer.from(aad, "utf8"));
  const data = Buffer.concat([c.update(plain), c.final()]);
  const tag = c.getAuthTag();
  return `ENC[AES256_GCM,data:${data.toString("base64")},iv:${iv.toString("base64")},tag:${tag.toString("base64")},type:${type}]`;
}
