/**
 * ImageRepository scanning: list the repository's tags (registry.ts), drop those matching the
 * exclusion list (Go RE2 patterns, unanchored as Go's MatchString), and report them the way Flux's
 * `status.lastScanResult` does.
 */
import type { ImageRepositorySpec } from "../config/index.js";
import { parseDuration, SluiceError } from "../core/index.js";
import { goStringCompare } from "./compare.js";
import { parseImageRef } from "./ref.js";
import { compileRe2, Re2SyntaxError } from "./regex.js";
import { listTags } from "./registry.js";
import type { ScanOptions, ScanResult } from "./types.js";

/**
 * Sluice's exclusion list when `spec.exclusionList` is absent: cosign's signature (`.sig`),
 * attestation (`.att`) and SBOM (`.sbom`) tags, none of which is a runnable image. Flux's own
 * default is only `^.*\.sig$`; an explicit list (even `[]`) replaces this one, as in Flux.
 */
export const DEFAULT_EXCLUSION_LIST: readonly string[] = ["^.*\\.sig$", "^.*\\.att$", "^.*\\.sbom$"];
/** Flux's CRD allows at most 25 entries. */
const MAX_EXCLUSIONS = 25;
const LATEST_TAGS = 10;
const DEFAULT_TIMEOUT_MS = 60_000;

/** Compiles an exclusion list; the error names the entry. */
export function compileExclusions(list: readonly string[], subject = "ImageRepository"): RegExp[] {
  if (list.length > MAX_EXCLUSIONS) {
    throw new SluiceError(
      "ConfigInvalid",
      `${subject}: spec.exclusionList has ${list.length} entries; at most ${MAX_EXCLUSIONS} are allowed (as in Flux)`,
      { hint: "Combine patterns with | (e.g. ^.*\\.(sig|att|sbom)$)." },
    );
  }
  return list.map((pattern, i) => {
    try {
      return compileRe2(pattern).regexp;
    } catch (e) {
      if (!(e instanceof Re2SyntaxError)) throw e;
      throw new SluiceError(
        "ConfigInvalid",
        `${subject}: spec.exclusionList[${i}] ${JSON.stringify(pattern)} is not a valid RE2 regular expression: ${e.message}`,
        { hint: "Patterns use Go's RE2 syntax: no backreferences or lookarounds." },
      );
    }
  });
}

/** Tags not matched by any pattern, in their order. */
export function applyExclusions(tags: readonly string[], patterns: readonly RegExp[]): string[] {
  if (patterns.length === 0) return [...tags];
  return tags.filter((t) => !patterns.some((re) => re.test(t)));
}

/**
 * Scans one ImageRepository: lists its tags on the registry and applies the exclusion list.
 * Credentials come from `opts.dockerConfig` (the parsed `.dockerconfigjson` of `spec.secretRef`'s
 * Secret); `spec.insecure` allows plain HTTP. The time bound is `opts.timeoutMs`, else
 * `spec.timeout`, else the interval up to 60 s.
 * @throws SluiceError ConfigInvalid (image or exclusion list), and the registry's errors (see listTags).
 */
export async function scanRepository(spec: ImageRepositorySpec, opts: ScanOptions = {}): Promise<ScanResult> {
  const subject = opts.subject ?? "ImageRepository";
  const ref = parseImageRef(spec.image);
  if (ref.tag !== undefined || ref.digest !== undefined) {
    throw new SluiceError(
      "ConfigInvalid",
      `${subject}: spec.image ${JSON.stringify(spec.image)} must name a repository, without a tag or digest`,
      {
        hint: `Remove '${ref.tag !== undefined ? `:${ref.tag}` : `@${ref.digest}`}'; policies choose the tag.`,
      },
    );
  }
  const exclusionList = [...(spec.exclusionList ?? DEFAULT_EXCLUSION_LIST)];
  const patterns = compileExclusions(exclusionList, subject);
  const specTimeout = spec.timeout !== undefined ? parseDuration(spec.timeout) : undefined;
  const interval = parseDuration(spec.interval);
  const timeoutMs =
    opts.timeoutMs ??
    specTimeout ??
    Math.min(interval && interval > 0 ? interval : DEFAULT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS);
  const listed = await listTags(ref, {
    ...opts,
    timeoutMs,
    insecure: opts.insecure ?? spec.insecure ?? false,
  });
  const tags = applyExclusions(listed.tags, patterns);
  const latestTags = [...tags].sort((a, b) => goStringCompare(b, a)).slice(0, LATEST_TAGS);
  return {
    image: spec.image,
    canonicalImageName: ref.canonical,
    tags,
    count: tags.length,
    scannedAt: new Date().toISOString(),
    latestTags,
    exclusionList,
    excluded: listed.tags.length - tags.length,
    stats: listed.stats,
  };
}
