import { createHash } from "node:crypto";

const MAX = 63;
const HASH_LEN = 8;

function shortHash(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex").slice(0, HASH_LEN);
}

/**
 * A DNS-1123 label for a branch name (for `preview-{{branch.slug}}`): diacritics folded, lowercase,
 * every run of other characters turned into one `-`, no leading or trailing `-`. When the result is
 * longer than 63 characters it is cut and suffixed with 8 hex digits of the branch's SHA-256, so
 * two long branches sharing a prefix stay distinct; a branch with no usable character becomes
 * `branch-<hash>`. Deterministic and idempotent (a slug slugifies to itself).
 *
 * @example slugifyBranch("feature/Login_Page") === "feature-login-page"
 */
export function slugifyBranch(branch: string): string {
  const folded = branch.normalize("NFKD").replace(/[\u0300-\u036f]/g, "");
  const slug = folded
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  if (slug === "") return `branch-${shortHash(branch)}`;
  if (slug.length <= MAX) return slug;
  const head = slug.slice(0, MAX - HASH_LEN - 1).replace(/-+$/g, "");
  return `${head}-${shortHash(branch)}`;
}
