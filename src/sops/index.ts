/**
 * SOPS decryption for age-encrypted files, a hand-written port of getsops/sops (AES-256-GCM values,
 * MAC check) using node:crypto and the `age-encryption` package for the data key, plus Flux's
 * handling of sops-encrypted Kubernetes Secrets. Errors are SluiceError("DecryptionFailed") naming the
 * file, and never carry a plaintext value.
 */
import type { KubeObject } from "../core/index.js";
import { type DecryptOptions, decryptValue } from "./decrypt.js";
import { type EncryptOptions, encryptValue } from "./encrypt.js";
import { decryptFileBytes, decryptKubeObject, hasSopsMetadata, type SopsFormat } from "./files.js";
import type { AgeIdentities } from "./keys.js";

export type { DecryptOptions } from "./decrypt.js";
export type { EncryptOptions } from "./encrypt.js";
export { detectSopsFormat, formatForKey, type SopsFormat } from "./files.js";
export { type AgeIdentities, loadAgeIdentities, parseAgeIdentities } from "./keys.js";

/** A parsed document with a top-level `sops` map holding a `mac` (what sops and Flux look for). */
export function isSopsDocument(value: unknown): boolean {
  return hasSopsMetadata(value);
}

/**
 * Decrypts a parsed sops document (YAML or JSON, already parsed): returns it without the `sops` key,
 * values decrypted to their types (string, number, boolean; timestamps and bytes as strings), after
 * checking the MAC. Key order of integer-like keys is lost in parsed objects, so when the exact text
 * is at hand prefer decryptSopsFile.
 */
export function decryptSopsDocument(
  value: Record<string, unknown>,
  file: string,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<Record<string, unknown>> {
  return decryptValue(value, file, ids, opts);
}

/**
 * Decrypts a whole sops file and returns the plaintext in the same format: YAML (all documents),
 * JSON, dotenv, or binary (the `{"data": ENC[…], "sops": …}` envelope → the original content as
 * UTF-8 text; use decryptSopsFileBytes for content that is not text).
 */
export async function decryptSopsFile(
  text: string,
  file: string,
  format: SopsFormat,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<string> {
  return (await decryptFileBytes(text, file, format, ids, opts)).toString("utf8");
}

/** Like decryptSopsFile, returning bytes (exact for binary files that are not UTF-8). */
export function decryptSopsFileBytes(
  text: string,
  file: string,
  format: SopsFormat,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<Buffer> {
  return decryptFileBytes(text, file, format, ids, opts);
}

/**
 * Flux semantics for one object: with `sops` metadata it is decrypted whole (as decryptSopsDocument);
 * otherwise, for a Secret, each `data` (base64) or `stringData` entry that is itself a sops file
 * (dotenv, JSON, YAML or binary, detected by its marker) is decrypted and written in the format its key
 * names (`*.env` dotenv, `*.json`/`.dockerconfigjson` JSON, `*.yaml`/`*.yml` YAML, else binary).
 * Other objects, and objects annotated `kustomize.toolkit.fluxcd.io/decrypt: disabled`, come back
 * unchanged. The input is not modified.
 */
export function decryptResource(
  obj: KubeObject,
  file: string,
  ids: AgeIdentities,
  opts: DecryptOptions = {},
): Promise<KubeObject> {
  return decryptKubeObject(obj, file, ids, opts, (v, f) => decryptValue(v, f, ids, opts));
}

/**
 * Encrypts a plain document for age recipients the way `sops --encrypt` does (fresh data key, typed
 * ENC[…] values, MAC); the result, written as YAML or JSON, is readable by `sops --decrypt`.
 * Comments are not kept. When writing YAML, quote `sops.lastmodified` (sops' reader rejects an
 * unquoted timestamp there). Mostly for tests and tooling.
 */
export function encryptSopsDocument(
  value: Record<string, unknown>,
  file: string,
  opts: EncryptOptions,
): Promise<Record<string, unknown>> {
  return encryptValue(value, file, opts);
}
