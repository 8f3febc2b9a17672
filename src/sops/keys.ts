/**
 * age identities (where sops finds them) and the data key: each `sops.age[]` entry holds the
 * 32-byte data key as an ASCII-armored age file encrypted to one recipient.
 */
import { readFile } from "node:fs/promises";
import { armor, Decrypter } from "age-encryption";
import { SluiceError } from "../core/index.js";

export interface AgeIdentities {
  /** `AGE-SECRET-KEY-1…` (or post-quantum `AGE-SECRET-KEY-PQ-1…`) strings. */
  identities: string[];
}

const MAX_KEY_FILE_BYTES = 1024 * 1024;

/** Parses an age key file: one identity per line, `#` comments and blank lines ignored. */
export function parseAgeIdentities(text: string, source: string): string[] {
  const out: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    if (/^AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]+$/.test(line)) {
      out.push(line);
      return;
    }
    // Never echo the line: it may be (part of) a key.
    const what = line.startsWith("AGE-PLUGIN-")
      ? "an age plugin identity, which Sluice does not support"
      : "not an age identity (AGE-SECRET-KEY-1…)";
    throw new SluiceError("DecryptionFailed", `${source}: line ${i + 1} is ${what}`, {
      detail: { source, line: i + 1 },
      hint: "an age key file holds one AGE-SECRET-KEY-1… per line, and # comments",
    });
  });
  return out;
}

/**
 * The age identities to decrypt with: the file named by `keyFile` (--age-key-file), else the file
 * named by SOPS_AGE_KEY_FILE, else the keys in SOPS_AGE_KEY (several allowed, one per line).
 */
export async function loadAgeIdentities(opts: {
  keyFile?: string;
  env?: NodeJS.ProcessEnv;
}): Promise<AgeIdentities> {
  const env = opts.env ?? process.env;
  const file = opts.keyFile ?? (env.SOPS_AGE_KEY_FILE || undefined);
  if (file !== undefined) {
    let text: string;
    try {
      const buf = await readFile(file);
      if (buf.length > MAX_KEY_FILE_BYTES) throw new Error(`larger than ${MAX_KEY_FILE_BYTES} bytes`);
      text = buf.toString("utf8");
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
      throw new SluiceError("DecryptionFailed", `cannot read age key file ${file}: ${reason}`, {
        detail: { file },
        hint: opts.keyFile !== undefined ? "check --age-key-file" : "check SOPS_AGE_KEY_FILE",
      });
    }
    return { identities: parseAgeIdentities(text, file) };
  }
  if (env.SOPS_AGE_KEY) return { identities: parseAgeIdentities(env.SOPS_AGE_KEY, "SOPS_AGE_KEY") };
  return { identities: [] };
}

export interface AgeStanzaEntry {
  recipient: string;
  enc: string;
}

/**
 * Recovers the data key from the age entries, trying every identity on every entry. Throws
 * DecryptionFailed naming the file and the recipients when no identity fits.
 */
export async function unwrapDataKey(
  entries: AgeStanzaEntry[],
  ids: AgeIdentities,
  file: string,
): Promise<Uint8Array> {
  const recipients = entries.map((e) => e.recipient).filter((r) => r !== "");
  const recipientList = recipients.length > 0 ? recipients.join(", ") : "(none listed)";
  if (ids.identities.length === 0) {
    throw new SluiceError(
      "DecryptionFailed",
      `no age identity can decrypt ${file}: no age identities are loaded; recipients: ${recipientList}`,
      {
        detail: { file, recipients },
        hint: "pass --age-key-file, or set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY to the matching AGE-SECRET-KEY",
      },
    );
  }
  const dec = new Decrypter();
  for (const id of ids.identities) dec.addIdentity(id);
  const problems: string[] = [];
  for (const entry of entries) {
    let raw: Uint8Array;
    try {
      raw = armor.decode(entry.enc);
    } catch {
      problems.push(
        `the entry for ${entry.recipient || "an unnamed recipient"} is not an ASCII-armored age file`,
      );
      continue;
    }
    let key: Uint8Array;
    try {
      key = await dec.decrypt(raw);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (/no identity matched/i.test(msg)) continue;
      problems.push(
        `the entry for ${entry.recipient || "an unnamed recipient"} cannot be decrypted (${msg})`,
      );
      continue;
    }
    if (key.length !== 32) {
      problems.push(
        `the entry for ${entry.recipient || "an unnamed recipient"} holds a ${key.length}-byte data key, not 32 bytes`,
      );
      continue;
    }
    return key;
  }
  const extra = problems.length > 0 ? ` (${problems.join("; ")})` : "";
  throw new SluiceError(
    "DecryptionFailed",
    `no age identity can decrypt ${file}; recipients: ${recipientList}${extra}`,
    {
      detail: { file, recipients },
      hint: "the loaded age keys do not match any recipient of the file: use the key the file was encrypted for, or re-encrypt it (sops updatekeys)",
    },
  );
}
