/**
 * Rendezvous (highest random weight) hashing: an environment belongs to the member with the
 * highest `hash(member, env)`. Every replica computes the same answer from the same member set,
 * without coordination; adding a member moves exactly the environments it now wins (about 1/N),
 * removing one moves only that member's environments, spread over the rest.
 */
import { createHash } from "node:crypto";

/** The member's score for an environment: 64 bits of SHA-256 over `member \0 env`. */
export function score(member: string, env: string): bigint {
  return createHash("sha256").update(member).update("\0").update(env).digest().readBigUInt64BE(0);
}

/** The owner of `env` among `members` (undefined when there are none). Ties go to the smaller id. */
export function ownerOf(env: string, members: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const m of members) {
    const s = score(m, env);
    if (s > bestScore || (s === bestScore && best !== undefined && m < best)) {
      best = m;
      bestScore = s;
    }
  }
  return best;
}

/** Every environment's owner. */
export function assign(envs: Iterable<string>, members: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (members.length === 0) return out;
  for (const e of envs) out.set(e, ownerOf(e, members)!);
  return out;
}
