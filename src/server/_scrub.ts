/**
 * The last line of defence for "secrets never appear in an API answer". The API serves store
 * records and source listings, which are written without secret values; on top of that, every
 * string of every answer (and of every streamed event) is scrubbed of
 * - the values of the Secrets in the loaded configuration (webhook tokens, Git credentials, …),
 * - credentials in URLs (`scheme://user:pass@host` → `scheme://***@host`, `?token=…` → `?token=***`),
 * so a Git error message that quotes its remote, say, cannot leak the password in it.
 */
import type { Config } from "../config/index.js";

/** Values shorter than this are not scrubbed: replacing every "ab" in an answer would garble it. */
const MIN_SECRET_LENGTH = 4;

const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@'"]+@/gi;
const URL_SECRET_PARAM =
  /([?&](?:access_token|private_token|token|password|secret|api_key|key)=)[^&\s'"#]*/gi;

export type Scrubber = <T>(value: T) => T;

export function redactUrls(s: string): string {
  return s.replace(URL_USERINFO, "$1***@").replace(URL_SECRET_PARAM, "$1***");
}

/** A scrubber for the secrets of `config`, longest first so a value containing another goes whole. */
export function makeScrubber(config: Config): Scrubber {
  const secrets = new Set<string>();
  for (const s of config.supporting) {
    if (s.kind !== "Secret") continue;
    for (const v of Object.values(s.data)) {
      if (v.length >= MIN_SECRET_LENGTH) secrets.add(v);
      const trimmed = v.trim();
      if (trimmed !== v && trimmed.length >= MIN_SECRET_LENGTH) secrets.add(trimmed);
    }
  }
  const list = [...secrets].sort((a, b) => b.length - a.length);
  const str = (s: string): string => {
    let out = s;
    for (const secret of list) if (out.includes(secret)) out = out.split(secret).join("***");
    return redactUrls(out);
  };
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return str(v);
    if (depth > 64 || v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x, depth + 1);
    return out;
  };
  return <T>(value: T) => walk(value, 0) as T;
}
