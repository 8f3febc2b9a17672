/**
 * ImagePolicy tag selection with Flux's exact behaviour (image-reflector-controller
 * internal/policy): `semver` (Masterminds ranges, semver.ts), `alphabetical` and `numerical`
 * with `order` (`asc`, the default, picks the greatest; `desc` the least), after `filterTags`
 * (RE2 `pattern`, `extract` template; regex.ts). Flux's facts kept here:
 *
 * - semver: tags that are not strict `X.Y.Z[-pre][+build]` (one leading `v` allowed) are ignored;
 *   the highest match wins, the first one among equal versions; the tag keeps its `v`.
 * - numerical: every candidate must parse as a Go float64, else the policy fails naming the tag.
 * - filterTags: candidates are the extracted values; when two tags extract the same value the
 *   later tag is the one returned (Flux keeps them in a map). Flux iterates that map in random
 *   order; Sluice keeps first-seen order, so its choice among equal versions is deterministic.
 * - No candidate: "version list argument cannot be empty"; candidates but no semver match:
 *   "unable to determine latest version from provided list" (Flux's messages).
 */
import type { ImagePolicySpec } from "../config/index.js";
import { SluiceError } from "../core/index.js";
import { goStringCompare } from "./compare.js";
import { parseGoFloat } from "./numeric.js";
import {
  compileRe2,
  type ExpandTemplate,
  expand,
  parseTemplate,
  type Re2Regexp,
  Re2SyntaxError,
} from "./regex.js";
import {
  type Constraints,
  compareVersions,
  parseConstraints,
  parseTagVersion,
  type SemVer,
  SemVerError,
  satisfies,
} from "./semver.js";
import type { LatestImage, PolicyOptions } from "./types.js";

export type PolicyKind = "semver" | "alphabetical" | "numerical";

/** A validated ImagePolicy, ready to select from tag lists many times. */
export interface CompiledPolicy {
  readonly kind: PolicyKind;
  /** `asc`/`desc` for alphabetical and numerical; the range for semver. */
  readonly detail: string;
  /**
   * The selected tag (the original registry tag, before any extraction).
   * @throws SluiceError NotFound (no candidate), ConfigInvalid (numerical over a non-number).
   */
  select(tags: readonly string[]): string;
}

const EMPTY = "version list argument cannot be empty";
const NO_MATCH = "unable to determine latest version from provided list";

function noCandidates(subject: string, filtered: boolean, total: number): never {
  throw new SluiceError(
    "NotFound",
    `${subject}: ${EMPTY}${filtered ? ` (filterTags.pattern kept none of ${total} tags)` : ""}`,
    {
      hint: filtered
        ? "Check spec.filterTags.pattern against the tags in the registry."
        : "The repository has no tags yet (or the exclusion list removed them all).",
    },
  );
}

type Selector = (candidates: readonly string[]) => string;

function semverSelector(range: string, subject: string): { select: Selector; constraints: Constraints } {
  let constraints: Constraints;
  try {
    constraints = parseConstraints(range);
  } catch (e) {
    if (!(e instanceof SemVerError)) throw e;
    throw new SluiceError(
      "ConfigInvalid",
      `${subject}: spec.policy.semver.range ${JSON.stringify(range)} is not a valid semver range: ${e.message}`,
      {
        hint: "Use a Masterminds/semver range such as '>=1.0.0', '1.2.x', '^1.0', '~1.2.3', '>=1.0.0-0' (with pre-releases).",
      },
    );
  }
  const select: Selector = (candidates) => {
    let best: SemVer | undefined;
    for (const tag of candidates) {
      const v = parseTagVersion(tag);
      if (v === undefined || !satisfies(v, constraints)) continue;
      if (best === undefined || compareVersions(v, best) > 0) best = v;
    }
    if (best === undefined) {
      throw new SluiceError(
        "NotFound",
        `${subject}: ${NO_MATCH} (no tag satisfies the range ${JSON.stringify(range)})`,
        {
          hint: "Tags must be X.Y.Z[-pre][+build] (a leading v is allowed); pre-releases count only when the range names one, e.g. '>=1.0.0-0'.",
        },
      );
    }
    return best.original;
  };
  return { select, constraints };
}

function alphabeticalSelector(order: "asc" | "desc"): Selector {
  return (candidates) => {
    let best = candidates[0]!;
    for (let i = 1; i < candidates.length; i++) {
      const c = candidates[i]!;
      const d = goStringCompare(c, best);
      if (order === "asc" ? d > 0 : d < 0) best = c;
    }
    return best;
  };
}

function numericalSelector(order: "asc" | "desc", subject: string): Selector {
  return (candidates) => {
    let latest = "";
    let pv = 0;
    candidates.forEach((c, i) => {
      const cv = parseGoFloat(c);
      if (cv === undefined) {
        throw new SluiceError("ConfigInvalid", `${subject}: failed to parse invalid numeric value '${c}'`, {
          hint: "A numerical policy needs every candidate tag to be a number: add spec.filterTags.pattern (and extract) to keep only those.",
        });
      }
      // Flux: on ties, and for NaN, the later value wins.
      if (i !== 0 && ((order === "asc" && cv < pv) || (order === "desc" && cv > pv))) return;
      latest = c;
      pv = cv;
    });
    return latest;
  };
}

interface Filter {
  re: Re2Regexp;
  template: ExpandTemplate | undefined;
}

function compileFilter(spec: ImagePolicySpec, subject: string): Filter | undefined {
  const ft = spec.filterTags;
  if (!ft) return undefined;
  const pattern = ft.pattern ?? "";
  let re: Re2Regexp;
  try {
    re = compileRe2(pattern);
  } catch (e) {
    if (!(e instanceof Re2SyntaxError)) throw e;
    throw new SluiceError(
      "ConfigInvalid",
      `${subject}: spec.filterTags.pattern ${JSON.stringify(pattern)} is not a valid RE2 regular expression: ${e.message}`,
      {
        hint: "Patterns use Go's RE2 syntax: named groups as (?P<name>…), no backreferences or lookarounds.",
      },
    );
  }
  const extract = ft.extract ?? "";
  return { re, template: extract === "" ? undefined : parseTemplate(extract) };
}

/**
 * Validates an ImagePolicy spec once (range, pattern, order) for repeated selection.
 * @throws SluiceError ConfigInvalid naming the field.
 */
export function compilePolicy(
  spec: ImagePolicySpec,
  opts: Pick<PolicyOptions, "subject"> = {},
): CompiledPolicy {
  const subject = opts.subject ?? "ImagePolicy";
  const p = spec.policy as {
    semver?: { range: string };
    alphabetical?: { order?: string };
    numerical?: { order?: string };
  };
  let kind: PolicyKind;
  let detail: string;
  let selector: Selector;
  const orderOf = (o: string | undefined, field: string): "asc" | "desc" => {
    if (o === undefined || o === "asc" || o === "desc") return o ?? "asc";
    throw new SluiceError("ConfigInvalid", `${subject}: ${field} ${JSON.stringify(o)} must be asc or desc`, {
      hint: "asc (the default) selects the greatest tag, desc the least.",
    });
  };
  if (p.semver) {
    kind = "semver";
    detail = p.semver.range;
    selector = semverSelector(p.semver.range, subject).select;
  } else if (p.alphabetical) {
    kind = "alphabetical";
    detail = orderOf(p.alphabetical.order, "spec.policy.alphabetical.order");
    selector = alphabeticalSelector(detail as "asc" | "desc");
  } else if (p.numerical) {
    kind = "numerical";
    detail = orderOf(p.numerical.order, "spec.policy.numerical.order");
    selector = numericalSelector(detail as "asc" | "desc", subject);
  } else {
    throw new SluiceError("ConfigInvalid", `${subject}: spec.policy names no policy`, {
      hint: "Set exactly one of semver, alphabetical or numerical.",
    });
  }
  const filter = compileFilter(spec, subject);
  return {
    kind,
    detail,
    select(tags) {
      if (!filter) {
        if (tags.length === 0) noCandidates(subject, false, 0);
        return selector(tags);
      }
      const original = new Map<string, string>();
      const { re, template } = filter;
      for (const tag of tags) {
        const m = re.regexp.exec(tag);
        if (!m) continue;
        original.set(template ? expand(re, template, m) : tag, tag);
      }
      if (original.size === 0) noCandidates(subject, true, tags.length);
      return original.get(selector([...original.keys()]))!;
    },
  };
}

/**
 * Selects the latest tag of `tags` (a scan's result) for an ImagePolicy, as Flux does.
 * `opts.image` (the ImageRepository's `spec.image`) makes `image` the full `name:tag`.
 * @throws SluiceError ConfigInvalid (bad range, pattern or order; numerical over a non-number),
 *   NotFound (no tag qualifies).
 */
export function selectLatest(
  spec: ImagePolicySpec,
  tags: readonly string[],
  opts: PolicyOptions = {},
): LatestImage {
  const tag = compilePolicy(spec, opts).select(tags);
  const name = opts.image ?? "";
  return { tag, name, image: name === "" ? tag : `${name}:${tag}` };
}
