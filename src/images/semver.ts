/**
 * Semantic versions and range constraints with the semantics of Masterminds/semver v3 (v3.4.0),
 * the library Flux's ImagePolicy `semver` policy uses, NOT npm's `semver`. The differences that
 * matter (each is tested in semver.test.ts):
 *
 * - Pre-releases are decided per OR-group: if any constraint of an AND-group names a pre-release
 *   (`>=1.0.0-0`), pre-releases of EVERY version may satisfy that whole group (`1.5.0-rc.1`
 *   satisfies `>=1.0.0-0`, and `>=1.0.0-0 <2.0.0`). npm admits only pre-releases of the same
 *   `major.minor.patch` as the comparator's (or all of them with `includePrerelease`).
 * - `,` and whitespace both mean AND; `||` means OR; `1.2 - 1.4.5` needs the spaces around `-`.
 * - `x`/`X`/`*` wildcards and missing parts make a constraint "dirty": `>1.2` means `>=1.3.0`,
 *   `<=1.2` means `<1.3.0`, `!=1.x` excludes all of 1.x, `=1.2` means `~1.2`.
 * - `^0.0` means `>=0.0.0 <0.1.0`, `^0` means `<1.0.0`, `~1` means `<2.0.0`, `~0.0.0` means anything.
 *
 * The regular expressions below are Masterminds' own (Go RE2, leftmost-first), which JavaScript's
 * backtracking engine evaluates to the same matches; `\s` is spelled out as Go's `[\t\n\f\r ]`.
 * Numbers are uint64 as in Go (BigInt here), so `18446744073709551616.0.0` is rejected as there.
 */

export interface SemVer {
  major: bigint;
  minor: bigint;
  patch: bigint;
  /** Pre-release identifiers without the `-`, or "". */
  pre: string;
  /** Build metadata without the `+`, or "" (ignored in comparisons). */
  metadata: string;
  /** The string as parsed (a tag keeps its leading `v`). */
  original: string;
}

const S = "[\\t\\n\\f\\r ]";
const CV =
  "v?([0-9|x|X|\\*]+)(\\.[0-9|x|X|\\*]+)?(\\.[0-9|x|X|\\*]+)?" +
  "(-([0-9A-Za-z\\-]+(\\.[0-9A-Za-z\\-]+)*))?" +
  "(\\+([0-9A-Za-z\\-]+(\\.[0-9A-Za-z\\-]+)*))?";
const OPS = "=||!=|>|<|>=|=>|<=|=<|~|~>|\\^";
const constraintRe = new RegExp(`^${S}*(${OPS})${S}*(${CV})${S}*$`);
const rangeRe = new RegExp(`${S}*(${CV})${S}+-${S}+(${CV})${S}*`, "g");
const findConstraintRe = new RegExp(`(${OPS})${S}*(${CV})`, "g");
const validConstraintRe = new RegExp(
  `^(${S}*(${OPS})${S}*(${CV})${S}*)((?:${S}+|,${S}*)(${OPS})${S}*(${CV})${S}*)*$`,
);
const looseVersionRe =
  /^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?(\+([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$/;

const MAX_U64 = (1n << 64n) - 1n;
const NUM = "(0|[1-9][0-9]*)";
const PRE_ID = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
const STRICT_TAG = new RegExp(
  `^v?${NUM}\\.${NUM}\\.${NUM}(?:-(${PRE_ID}(?:\\.${PRE_ID})*))?(?:\\+([0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*))?$`,
);
const DIGITS = /^[0-9]*$/;
const ALLOWED = /^[0-9A-Za-z-]*$/;

export class SemVerError extends Error {}

function parseUint(s: string): bigint {
  if (s === "" || !/^[0-9]+$/.test(s)) throw new SemVerError(`invalid number "${s}"`);
  const n = BigInt(s);
  if (n > MAX_U64) throw new SemVerError(`error parsing version segment: value out of range`);
  return n;
}

function validatePrerelease(p: string): void {
  for (const part of p.split(".")) {
    if (part === "") throw new SemVerError("invalid prerelease string");
    if (DIGITS.test(part)) {
      if (part.length > 1 && part[0] === "0") throw new SemVerError("version segment starts with 0");
    } else if (!ALLOWED.test(part)) throw new SemVerError("invalid prerelease string");
  }
}

function validateMetadata(m: string): void {
  for (const part of m.split(".")) {
    if (part === "" || !ALLOWED.test(part)) throw new SemVerError("invalid metadata string");
  }
}

/** Masterminds `StrictNewVersion`: exactly `X.Y.Z[-pre][+meta]`, no `v`, no leading zeros. */
export function strictParse(v: string): SemVer {
  if (v === "") throw new SemVerError("version string empty");
  // strings.SplitN(v, ".", 3)
  const i1 = v.indexOf(".");
  const i2 = i1 < 0 ? -1 : v.indexOf(".", i1 + 1);
  if (i1 < 0 || i2 < 0) throw new SemVerError("invalid semantic version");
  const parts = [v.slice(0, i1), v.slice(i1 + 1, i2), v.slice(i2 + 1)];
  let metadata = "";
  let pre = "";
  let last = parts[2]!;
  const plus = last.indexOf("+");
  if (plus >= 0) {
    metadata = last.slice(plus + 1);
    last = last.slice(0, plus);
    validateMetadata(metadata);
  }
  const dash = last.indexOf("-");
  if (dash >= 0) {
    pre = last.slice(dash + 1);
    last = last.slice(0, dash);
    validatePrerelease(pre);
  }
  parts[2] = last;
  for (const p of parts) {
    if (!DIGITS.test(p)) throw new SemVerError("invalid characters in version");
    if (p.length > 1 && p[0] === "0") throw new SemVerError("version segment starts with 0");
  }
  return {
    major: parseUint(parts[0]!),
    minor: parseUint(parts[1]!),
    patch: parseUint(parts[2]!),
    pre,
    metadata,
    original: v,
  };
}

/** Masterminds `NewVersion` (coercing): `v1`, `1.2`, `01.2.3` are accepted. */
export function looseParse(v: string): SemVer {
  const m = looseVersionRe.exec(v);
  if (!m) throw new SemVerError("invalid semantic version");
  const pre = m[5] ?? "";
  const metadata = m[8] ?? "";
  const sv: SemVer = {
    major: parseUint(m[1]!),
    minor: m[2] ? parseUint(m[2].slice(1)) : 0n,
    patch: m[3] ? parseUint(m[3].slice(1)) : 0n,
    pre,
    metadata,
    original: v,
  };
  if (pre !== "") validatePrerelease(pre);
  if (metadata !== "") validateMetadata(metadata);
  return sv;
}

/**
 * A tag as Flux reads it (fluxcd/pkg/version.ParseVersion): strict after removing ONE leading `v`;
 * undefined when it is not a version (such tags are ignored by semver policies).
 */
export function parseTagVersion(tag: string): SemVer | undefined {
  // One regular expression equal to StrictNewVersion (after one optional `v`) followed by
  // NewVersion, without their exceptions: most registry tags are not versions, and throwing per
  // tag would dominate a 10,000-tag selection. semver.test.ts checks both paths agree.
  const m = STRICT_TAG.exec(tag);
  if (!m) return undefined;
  const major = BigInt(m[1]!);
  const minor = BigInt(m[2]!);
  const patch = BigInt(m[3]!);
  if (major > MAX_U64 || minor > MAX_U64 || patch > MAX_U64) return undefined;
  return { major, minor, patch, pre: m[4] ?? "", metadata: m[5] ?? "", original: tag };
}

/** The same decision by the two Masterminds parsers, as Flux calls them (kept for the tests). */
export function parseTagVersionSlow(tag: string): SemVer | undefined {
  try {
    strictParse(tag.startsWith("v") ? tag.slice(1) : tag);
    return looseParse(tag);
  } catch (e) {
    if (e instanceof SemVerError) return undefined;
    throw e;
  }
}

const U64_NUMERIC = /^[0-9]+$/;

function prePartNumber(s: string): bigint | undefined {
  if (!U64_NUMERIC.test(s)) return undefined;
  const n = BigInt(s);
  return n > MAX_U64 ? undefined : n;
}

function byteCompare(a: string, b: string): number {
  if (a === b) return 0;
  // Pre-release identifiers are ASCII, where UTF-16 order equals Go's byte order.
  return a > b ? 1 : -1;
}

function comparePrePart(s: string, o: string): number {
  if (s === o) return 0;
  if (s === "") return -1;
  if (o === "") return 1;
  const oi = prePartNumber(o);
  const si = prePartNumber(s);
  if (oi === undefined && si === undefined) return byteCompare(s, o);
  if (oi === undefined) return -1;
  if (si === undefined) return 1;
  return si > oi ? 1 : -1;
}

function comparePrerelease(v: string, o: string): number {
  const sp = v.split(".");
  const op = o.split(".");
  const l = Math.max(sp.length, op.length);
  for (let i = 0; i < l; i++) {
    const d = comparePrePart(sp[i] ?? "", op[i] ?? "");
    if (d !== 0) return d;
  }
  return 0;
}

function cmpU(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Semantic-version precedence (build metadata ignored): -1, 0 or 1. */
export function compareVersions(v: SemVer, o: SemVer): number {
  const d = cmpU(v.major, o.major) || cmpU(v.minor, o.minor) || cmpU(v.patch, o.patch);
  if (d !== 0) return d;
  if (v.pre === "" && o.pre === "") return 0;
  if (v.pre === "") return 1;
  if (o.pre === "") return -1;
  return comparePrerelease(v.pre, o.pre);
}

type Op = "" | "=" | "!=" | ">" | "<" | ">=" | "=>" | "<=" | "=<" | "~" | "~>" | "^";

interface Constraint {
  op: Op;
  con: SemVer;
  orig: string;
  dirty: boolean;
  minorDirty: boolean;
  patchDirty: boolean;
}

const isX = (s: string) => s === "x" || s === "X" || s === "*";

function parseConstraint(c: string): Constraint {
  const m = constraintRe.exec(c);
  if (!m) throw new SemVerError(`improper constraint: ${c}`);
  const op = m[1] as Op;
  const orig = m[2]!;
  const major = m[3] ?? "";
  const minor = m[4] ?? "";
  const patch = m[5] ?? "";
  const preWithDash = m[6] ?? "";
  let ver = orig;
  let dirty = false;
  let minorDirty = false;
  let patchDirty = false;
  if (isX(major) || major === "") {
    ver = `0.0.0${preWithDash}`;
    dirty = true;
  } else if (isX(minor.slice(1)) || minor === "") {
    minorDirty = true;
    dirty = true;
    ver = `${major}.0.0${preWithDash}`;
  } else if (isX(patch.slice(1)) || patch === "") {
    dirty = true;
    patchDirty = true;
    ver = `${major}${minor}.0${preWithDash}`;
  }
  let con: SemVer;
  try {
    con = looseParse(ver);
  } catch {
    throw new SemVerError("constraint parser error");
  }
  return { op, con, orig, dirty, minorDirty, patchDirty };
}

function lessThan(v: SemVer, o: SemVer): boolean {
  return compareVersions(v, o) < 0;
}

function tilde(v: SemVer, c: Constraint): boolean {
  if (lessThan(v, c.con)) return false;
  if (c.con.major === 0n && c.con.minor === 0n && c.con.patch === 0n && !c.minorDirty && !c.patchDirty)
    return true;
  if (v.major !== c.con.major) return false;
  if (v.minor !== c.con.minor && !c.minorDirty) return false;
  return true;
}

function caret(v: SemVer, c: Constraint): boolean {
  if (lessThan(v, c.con)) return false;
  if (c.con.major > 0n || c.minorDirty) return v.major === c.con.major;
  if (c.con.major === 0n && v.major > 0n) return false;
  if (c.con.minor > 0n || c.patchDirty) return v.minor === c.con.minor;
  if (c.con.minor === 0n && v.minor > 0n) return false;
  return c.con.patch === v.patch;
}

function check(v: SemVer, c: Constraint, includePre: boolean): boolean {
  if (v.pre !== "" && !includePre) return false;
  switch (c.op) {
    case "":
    case "=":
      return c.dirty ? tilde(v, c) : compareVersions(v, c.con) === 0;
    case "!=": {
      if (c.dirty) {
        if (c.con.major !== v.major) return true;
        if (c.con.minor !== v.minor && !c.minorDirty) return true;
        if (c.minorDirty) return false;
        if (c.con.patch !== v.patch && !c.patchDirty) return true;
        if (c.patchDirty) {
          if (v.pre !== "" || c.con.pre !== "") return comparePrerelease(v.pre, c.con.pre) !== 0;
          return false;
        }
      }
      return compareVersions(v, c.con) !== 0;
    }
    case ">": {
      if (!c.dirty) return compareVersions(v, c.con) === 1;
      if (v.major > c.con.major) return true;
      if (v.major < c.con.major) return false;
      if (c.minorDirty) return false;
      if (c.patchDirty) return v.minor > c.con.minor;
      return compareVersions(v, c.con) === 1;
    }
    case "<":
      return compareVersions(v, c.con) < 0;
    case ">=":
    case "=>":
      return compareVersions(v, c.con) >= 0;
    case "<=":
    case "=<": {
      if (!c.dirty) return compareVersions(v, c.con) <= 0;
      if (v.major > c.con.major) return false;
      if (v.major === c.con.major && v.minor > c.con.minor && !c.minorDirty) return false;
      return true;
    }
    case "~":
    case "~>":
      return tilde(v, c);
    case "^":
      return caret(v, c);
  }
}

function rewriteRange(i: string): string {
  const matches = [...i.matchAll(rangeRe)];
  let o = i;
  for (const m of matches) {
    // strings.Replace(o, whole, t, 1): the first occurrence of the matched text.
    const t = `>= ${m[1]}, <= ${m[11]} `;
    const at = o.indexOf(m[0]);
    if (at >= 0) o = o.slice(0, at) + t + o.slice(at + m[0].length);
  }
  return o;
}

/** A parsed range: OR-groups of AND-ed constraints. */
export interface Constraints {
  readonly range: string;
  readonly groups: readonly { constraints: readonly Constraint[]; containsPre: boolean }[];
}

/**
 * Parses a range like Masterminds `NewConstraint`.
 * @throws SemVerError with Masterminds' reason (`improper constraint: 1.0.0p`, `constraint parser error`).
 */
export function parseConstraints(range: string): Constraints {
  const c = rewriteRange(range);
  const groups = c.split("||").map((seg) => {
    if (!validConstraintRe.test(seg)) throw new SemVerError(`improper constraint: ${seg}`);
    let found = seg.match(findConstraintRe) as string[] | null;
    if (!found) found = [seg];
    const constraints = found.map(parseConstraint);
    return { constraints, containsPre: constraints.some((k) => k.con.pre !== "") };
  });
  return { range, groups };
}

/** Masterminds `Constraints.Check` (with `IncludePrerelease` false, as Flux uses it). */
export function satisfies(v: SemVer, cs: Constraints): boolean {
  for (const g of cs.groups) {
    let ok = true;
    for (const k of g.constraints) {
      if (!check(v, k, g.containsPre)) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
  }
  return false;
}
