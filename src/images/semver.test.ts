/**
 * Masterminds/semver v3 semantics (what Flux's semver policy uses), and where they differ from
 * npm's `semver`. Cases: Masterminds v3.4.0 constraints_test.go (TestConstraintsCheck,
 * TestNewConstraint), fluxcd/pkg version_test.go, image-reflector-controller semver_test.go and
 * factory_test.go; facts only, re-typed as tables.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import npmSemver from "semver";
import {
  compareVersions,
  looseParse,
  parseConstraints,
  parseTagVersion,
  parseTagVersionSlow,
  SemVerError,
  satisfies,
} from "./semver.js";

const check = (range: string, version: string) => satisfies(looseParse(version), parseConstraints(range));
const tagMatches = (range: string, tag: string) => {
  const v = parseTagVersion(tag);
  return v !== undefined && satisfies(v, parseConstraints(range));
};

// Masterminds constraints_test.go TestConstraintsCheck: [constraint, version (NewVersion), satisfied].
const MASTERMINDS_CHECK: [string, string, boolean][] = [
  ["*", "1.2.3", true],
  ["~0.0.0", "1.2.3", true],
  ["0.x.x", "1.2.3", false],
  ["0.0.x", "1.2.3", false],
  ["0.0.0", "1.2.3", false],
  ["*", "1.2.3", true],
  ["^0.0.0", "1.2.3", false],
  ["= 2.0", "1.2.3", false],
  ["= 2.0", "2.0.0", true],
  ["4.1", "4.1.0", true],
  ["4.1.x", "4.1.3", true],
  ["1.x", "1.4", true],
  ["!=4.1", "4.1.0", false],
  ["!=4.1-alpha", "4.1.0-alpha", false],
  ["!=4.1-alpha", "4.1.1-alpha", false],
  ["!=4.1-alpha", "4.1.0", true],
  ["!=4.1", "5.1.0", true],
  ["!=4.x", "5.1.0", true],
  ["!=4.x", "4.1.0", false],
  ["!=4.1.x", "4.2.0", true],
  ["!=4.2.x", "4.2.3", false],
  [">1.1", "4.1.0", true],
  [">1.1", "1.1.0", false],
  ["<1.1", "0.1.0", true],
  ["<1.1", "1.1.0", false],
  ["<1.1", "1.1.1", false],
  ["<1.x", "1.1.1", false],
  ["<1.x", "0.1.1", true],
  ["<1.x", "2.0.0", false],
  ["<1.1.x", "1.2.1", false],
  ["<1.1.x", "1.1.500", false],
  ["<1.1.x", "1.0.500", true],
  ["<1.2.x", "1.1.1", true],
  [">=1.1", "4.1.0", true],
  [">=1.1", "4.1.0-beta", false],
  [">=1.1", "1.1.0", true],
  [">=1.1", "0.0.9", false],
  ["<=1.1", "0.1.0", true],
  ["<=1.1", "0.1.0-alpha", false],
  ["<=1.1-a", "0.1.0-alpha", true],
  ["<=1.1", "1.1.0", true],
  ["<=1.x", "1.1.0", true],
  ["<=2.x", "3.0.0", false],
  ["<=1.1", "1.1.1", true],
  ["<=1.1.x", "1.2.500", false],
  ["<=4.5", "3.4.0", true],
  ["<=4.5", "3.7.0", true],
  ["<=4.5", "4.6.3", false],
  [">1.1, <2", "1.1.1", false],
  [">1.1, <2", "1.2.1", true],
  [">1.1, <3", "4.3.2", false],
  [">=1.1, <2, !=1.2.3", "1.2.3", false],
  [">1.1 <2", "1.1.1", false],
  [">1.1 <2", "1.2.1", true],
  [">1.1    <3", "4.3.2", false],
  [">=1.1    <2    !=1.2.3", "1.2.3", false],
  [">=1.1, <2, !=1.2.3 || > 3", "4.1.2", true],
  [">=1.1, <2, !=1.2.3 || > 3", "3.1.2", false],
  [">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true],
  [">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false],
  [">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false],
  [">=1.1 <2 !=1.2.3", "1.2.3", false],
  [">=1.1 <2 !=1.2.3 || > 3", "4.1.2", true],
  [">=1.1 <2 !=1.2.3 || > 3", "3.1.2", false],
  [">=1.1 <2 !=1.2.3 || >= 3", "3.0.0", true],
  [">=1.1 <2 !=1.2.3 || > 3", "3.0.0", false],
  [">=1.1 <2 !=1.2.3 || > 3", "1.2.3", false],
  ["> 1.1, <     2", "1.1.1", false],
  [">   1.1, <2", "1.2.1", true],
  [">1.1, <  3", "4.3.2", false],
  [">= 1.1, <     2, !=1.2.3", "1.2.3", false],
  ["> 1.1 < 2", "1.1.1", false],
  [">1.1 < 2", "1.2.1", true],
  ["> 1.1    <3", "4.3.2", false],
  [">=1.1    < 2    != 1.2.3", "1.2.3", false],
  [">= 1.1, <2, !=1.2.3 || > 3", "4.1.2", true],
  [">= 1.1, <2, != 1.2.3 || > 3", "3.1.2", false],
  [">= 1.1, <2, != 1.2.3 || >= 3", "3.0.0", true],
  [">= 1.1, <2, !=1.2.3 || > 3", "3.0.0", false],
  [">= 1.1, <2, !=1.2.3 || > 3", "1.2.3", false],
  [">= 1.1 <2 != 1.2.3", "1.2.3", false],
  [">= 1.1 <2 != 1.2.3 || > 3", "4.1.2", true],
  [">= 1.1 <2 != 1.2.3 || > 3", "3.1.2", false],
  [">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", true],
  [">= 1.1 < 2 !=1.2.3 || > 3", "3.0.0", false],
  [">=1.1 < 2 !=1.2.3 || > 3", "1.2.3", false],
  [">= 1.0.0  <= 2.0.0-beta", "1.0.1-beta", true],
  [">= 1.0.0  <= 2.0.0-beta", "1.0.1", true],
  [">= 1.0.0  <= 2.0.0-beta", "3.0.0", false],
  [">= 1.0.0  <= 2.0.0-beta || > 3", "1.0.1-beta", true],
  [">= 1.0.0  <= 2.0.0-beta || > 3", "3.0.1-beta", false],
  [">= 1.0.0  <= 2.0.0-beta != 1.0.1 || > 3", "1.0.1-beta", true],
  [">= 1.0.0  <= 2.0.0-beta != 1.0.1-beta || > 3", "1.0.1-beta", false],
  [">= 1.0.0-0  <= 2.0.0", "1.0.1-beta", true],
  ["1.1 - 2", "1.1.1", true],
  ["1.5.0 - 4.5", "3.7.0", true],
  ["1.1-3", "4.3.2", false],
  ["^1.1", "1.1.1", true],
  ["^1.1", "4.3.2", false],
  ["^1.x", "1.1.1", true],
  ["^2.x", "1.1.1", false],
  ["^1.x", "2.1.1", false],
  ["^1.x", "1.1.1-beta1", false],
  ["^1.1.2-alpha", "1.2.1-beta1", true],
  ["^1.2.x-alpha", "1.1.1-beta1", false],
  ["^0.0.1", "0.0.1", true],
  ["^0.0.1", "0.3.1", false],
  ["~*", "2.1.1", true],
  ["~1", "2.1.1", false],
  ["~1", "1.3.5", true],
  ["~1", "1.4", true],
  ["~1.x", "2.1.1", false],
  ["~1.x", "1.3.5", true],
  ["~1.x", "1.4", true],
  ["~1.1", "1.1.1", true],
  ["~1.1", "1.1.1-alpha", false],
  ["~1.1-alpha", "1.1.1-beta", true],
  ["~1.1.1-beta", "1.1.1-alpha", false],
  ["~1.1.1-beta", "1.1.1", true],
  ["~1.2.3", "1.2.5", true],
  ["~1.2.3", "1.2.2", false],
  ["~1.2.3", "1.3.2", false],
  ["~1.1", "1.2.3", false],
  ["~1.3", "2.4.5", false],
  ["1.0.0 - 2.0.0 <=2.0.0", "1.5.0", true],
  ["1.0.0 - 2.0.0, <=2.0.0", "1.5.0", true],
];

test("Masterminds TestConstraintsCheck: every case", () => {
  for (const [c, v, want] of MASTERMINDS_CHECK) assert.equal(check(c, v), want, `${c} ∋ ${v}`);
});

// Masterminds TestNewConstraint: [constraint, is an error].
const MASTERMINDS_NEW: [string, boolean][] = [
  [">= 1.1", false],
  [">40.50.60, < 50.70", false],
  ["2.0", false],
  ["v2.3.5-20161202202307-sha.e8fc5e5", false],
  [">= bar", true],
  ["BAR >= 1.2.3", true],
  [">= 1.2.3 < 2.0", false],
  [">= 1.2.3 < 2.0 || => 3.0 < 4", false],
  [">= 1.2.3, < 2.0", false],
  [">= 1.2.3, < 2.0 || => 3.0, < 4", false],
  ["3 - 4 || => 3.0, < 4", false],
  ["12.3.4.1234", true],
  ["12.23.4.1234", true],
  ["12.3.34.1234", true],
  ["12.3.34 ~1.2.3", false],
  ["12.3.34~ 1.2.3", true],
  ["1.0.0 - 2.0.0, <=2.0.0", false],
];

test("Masterminds TestNewConstraint: valid and invalid ranges", () => {
  for (const [c, isErr] of MASTERMINDS_NEW) {
    if (isErr) assert.throws(() => parseConstraints(c), SemVerError, c);
    else assert.doesNotThrow(() => parseConstraints(c), c);
  }
});

test("Flux NewSemVer: valid and invalid ranges (image-reflector-controller semver_test, factory_test)", () => {
  for (const r of ["1.0.x", "^1.0", "=1.0.0", "~1.0", ">=1.0", ">0,<2.0", "*", ">=1.0.0-0", "^1.x-0"]) {
    assert.doesNotThrow(() => parseConstraints(r), r);
  }
  for (const r of ["1.0.0p", "1x", "x1", "-1", "a", "", "*-*"]) {
    assert.throws(() => parseConstraints(r), SemVerError, r);
  }
  assert.throws(() => parseConstraints("1.0.0p"), /improper constraint: 1.0.0p/);
  assert.throws(() => parseConstraints("1x"), /constraint parser error/);
});

test("fluxcd/pkg ParseVersion: strict X.Y.Z[-pre][+build] after one optional v", () => {
  const ok = [
    "v1.2.3",
    "v1.2.0-x.Y.0+metadata",
    "v1.2.0-x.Y.0+metadata-width-hypen",
    "v1.2.3-rc1-with-hypen",
    "1.2.3",
  ];
  const bad = [
    "v1.0",
    "v1",
    "v1.2.beta",
    "v1.2-5",
    "v1.2-beta.5",
    "\nv1.2",
    "v1.2.3.4",
    "vv1.2.3",
    "01.2.3",
    "1.02.3",
    "1.2.3-01",
    "1.2.3+",
    "1.2.3-",
    "latest",
    "",
    "V1.2.3",
    " 1.2.3",
    "18446744073709551616.0.0",
  ];
  for (const t of ok) assert.ok(parseTagVersion(t), t);
  for (const t of bad) assert.equal(parseTagVersion(t), undefined, t);
  assert.equal(parseTagVersion("v1.2.3")!.original, "v1.2.3");
  assert.equal(parseTagVersion("18446744073709551615.0.0")!.major, 18446744073709551615n);
});

test("the fast tag parser decides exactly as the two Masterminds parsers Flux calls", () => {
  const piece = fc.constantFrom(
    "0",
    "1",
    "01",
    "12",
    "v",
    ".",
    "-",
    "+",
    "rc",
    "a",
    "Y",
    "x",
    "00",
    "9",
    "-1",
    ".0",
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 10 }), (parts) => {
      const tag = parts.join("");
      const fast = parseTagVersion(tag);
      const slow = parseTagVersionSlow(tag);
      assert.deepEqual(fast, slow, JSON.stringify(tag));
    }),
    { numRuns: 5000, seed: 42 },
  );
});

test("pre-releases: a range naming one admits pre-releases of EVERY version (per OR-group)", () => {
  assert.equal(tagMatches(">=1.0.0", "1.1.0-rc.1"), false);
  assert.equal(tagMatches(">=1.0.0-0", "1.1.0-rc.1"), true);
  assert.equal(tagMatches(">=1.0.0-0", "5.0.0-alpha"), true);
  assert.equal(tagMatches("^1.x-0", "1.1.0-rc.1"), true);
  assert.equal(tagMatches("^1.x-0", "2.0.0-rc.1"), false);
  assert.equal(tagMatches(">1.0.0-rc <2.0.0-rc", "1.5.0-beta"), true);
  // the whole AND-group opts in, even for its comparators without a pre-release
  assert.equal(tagMatches(">=1.0.0-0 <2.0.0", "1.5.0-rc.1"), true);
  assert.equal(tagMatches(">=1.0.0-0 <2.0.0", "2.0.0-rc.1"), true);
  // …but not the other OR-groups
  assert.equal(tagMatches(">=3.0.0-0 || ^1.0.0", "1.5.0-rc.1"), false);
  assert.equal(tagMatches(">=3.0.0-0 || ^1.0.0", "3.1.0-rc.1"), true);
});

test("differences from npm semver, checked against npm semver itself", () => {
  // [range, version, Masterminds (Flux), npm semver]
  const cases: [string, string, boolean, boolean][] = [
    [">=1.0.0-0", "1.5.0-rc.1", true, false],
    ["^1.x-0", "1.1.0-rc.1", true, false],
    [">=1.0.0-0 <2.0.0", "1.5.0-rc.1", true, false],
    [">=1.2.3-alpha", "1.3.0-beta", true, false],
    ["!=1.x", "2.0.0", true, false], // npm has no !=
    ["=> 1.2", "1.3.0", true, false], // nor =>
    ["<=1.2", "1.2.9", true, true],
    ["!=1.x", "1.5.0", false, false],
    ["=1.2", "1.2.7", true, true],
    ["1.2.3, <2.0.0", "1.2.3", true, false], // comma is AND for Masterminds; npm cannot parse it
    ["~1", "1.9.0", true, true],
    ["^0.0", "0.0.5", true, true],
    ["^0", "0.9.0", true, true],
  ];
  for (const [range, version, flux, npm] of cases) {
    assert.equal(check(range, version), flux, `Masterminds ${range} ∋ ${version}`);
    let npmResult = false;
    try {
      npmResult = npmSemver.satisfies(version, range);
    } catch {
      npmResult = false;
    }
    assert.equal(npmResult, npm, `npm semver ${range} ∋ ${version}`);
  }
});

test("range syntax: x wildcards, tilde, caret, hyphen ranges, comma and || ", () => {
  const inRange = (r: string, yes: string[], no: string[]) => {
    for (const v of yes) assert.equal(check(r, v), true, `${r} ∋ ${v}`);
    for (const v of no) assert.equal(check(r, v), false, `${r} ∌ ${v}`);
  };
  inRange("1.2.x", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.9"]);
  inRange("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]);
  inRange("^1.2.3", ["1.2.3", "1.9.0"], ["2.0.0", "1.2.2"]);
  inRange("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]);
  inRange("^0.0.3", ["0.0.3"], ["0.0.4"]);
  inRange("1.2 - 1.4.5", ["1.2.0", "1.4.5"], ["1.4.6", "1.1.9"]);
  inRange("1.2-1.4.5", [], ["1.3.0"]); // without spaces it is not a hyphen range: 1.2 with pre-release "1.4.5"
  inRange(">=1.0.0, <2.0.0", ["1.5.0"], ["2.0.0"]);
  inRange("<1.0.0 || >=2.0.0", ["0.5.0", "2.1.0"], ["1.5.0"]);
  inRange("*", ["0.0.0", "99.0.0"], ["1.0.0-rc.1"]);
  inRange(">11", ["12.0.0"], ["11.1.0"]);
  inRange(">11.1", ["11.2.1"], ["11.1.1"]);
});

test("precedence: pre-releases below their release, numeric identifiers numerically, build ignored", () => {
  const order = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
  ];
  for (let i = 0; i + 1 < order.length; i++) {
    assert.equal(
      compareVersions(looseParse(order[i]!), looseParse(order[i + 1]!)),
      -1,
      `${order[i]} < ${order[i + 1]}`,
    );
  }
  assert.equal(compareVersions(looseParse("1.0.0+a"), looseParse("1.0.0+b")), 0);
  // identifiers beyond uint64 compare as strings, as in Go
  assert.equal(compareVersions(looseParse("1.0.0-18446744073709551616"), looseParse("1.0.0-9")), 1);
});

test("Masterminds v3.4.0 itself: 483 ranges × 58 tags from testdata/go-cases.json", () => {
  const cases = JSON.parse(readFileSync(new URL("./testdata/go-cases.json", import.meta.url), "utf8")) as {
    versions: string[];
    semver: { range: string; go: { error?: string; matches?: (boolean | null)[]; latest?: string } }[];
  };
  for (const { range, go } of cases.semver) {
    if (go.error !== undefined) {
      assert.throws(
        () => parseConstraints(range),
        (e: Error) => e instanceof SemVerError && e.message === go.error,
        range,
      );
      continue;
    }
    const cs = parseConstraints(range);
    let latest: ReturnType<typeof parseTagVersion>;
    cases.versions.forEach((tag, i) => {
      const v = parseTagVersion(tag);
      const got = v === undefined ? null : satisfies(v, cs);
      assert.equal(got, go.matches![i], `${JSON.stringify(range)} ∋ ${JSON.stringify(tag)}`);
      if (v && got && (latest === undefined || compareVersions(v, latest) > 0)) latest = v;
    });
    assert.equal(latest?.original, go.latest, `latest for ${JSON.stringify(range)}`);
  }
});
