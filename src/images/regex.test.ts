/**
 * RE2 → JavaScript translation and Go's Regexp.Expand, compared with Go itself: testdata/go-cases.json
 * holds Go's answers (test/support/images-oracle) for 154 patterns × 45 inputs, and Go's
 * strconv.ParseFloat for the numerical policy's inputs.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { parseGoFloat } from "./numeric.js";
import { compileRe2, expand, parseTemplate, Re2SyntaxError } from "./regex.js";

interface GoRegexAnswer {
  error?: string;
  results?: ({ groups: (string | null)[]; expand?: string } | null)[];
}
const cases = JSON.parse(readFileSync(new URL("./testdata/go-cases.json", import.meta.url), "utf8")) as {
  regexInputs: string[];
  regex: { pattern: string; template: string; go: GoRegexAnswer }[];
  floatInputs: string[];
  float: (string | null)[];
};

/** Where the translation knowingly differs from Go (see regex.ts): refused or matched otherwise. */
const KNOWN_DIFFERENCES = new Set(["a(?i)bc", "(?i:a)b", "(|a)+"]);

test("every pattern Go compiles matches and expands like Go; every pattern Go refuses is refused", () => {
  let compared = 0;
  for (const { pattern, template, go } of cases.regex) {
    if (KNOWN_DIFFERENCES.has(pattern)) continue;
    if (go.error !== undefined) {
      assert.throws(
        () => compileRe2(pattern),
        Re2SyntaxError,
        `Go refuses ${JSON.stringify(pattern)}: ${go.error}`,
      );
      continue;
    }
    const re = compileRe2(pattern);
    const tpl = parseTemplate(template);
    cases.regexInputs.forEach((input, i) => {
      const want = go.results![i];
      const m = re.regexp.exec(input);
      const label = `${JSON.stringify(pattern)} on ${JSON.stringify(input)}`;
      if (want === null || want === undefined) {
        assert.equal(m, null, label);
        return;
      }
      assert.ok(m, label);
      assert.deepEqual(
        [...m].map((g) => g ?? null),
        want.groups,
        label,
      );
      if (template !== "") assert.equal(expand(re, tpl, m), want.expand, `${label} expand ${template}`);
      compared++;
    });
  }
  assert.ok(compared > 500, `compared ${compared} matches`);
});

test("the known differences are refused with a reason, or documented", () => {
  assert.throws(() => compileRe2("a(?i)bc"), /put \(\?i\) at the very start/);
  assert.throws(() => compileRe2("(?i:a)b"), /only part of the pattern/);
  assert.ok(compileRe2("(?i)abc").regexp.test("ABC"));
});

test("Flux's named groups: (?P<name>…) becomes a JavaScript group; names kept for extract", () => {
  const re = compileRe2("^main-[a-fA-F0-9]+-(?P<ts>.*)");
  const m = re.regexp.exec("main-abc1234-1611906999")!;
  assert.equal(expand(re, parseTemplate("$ts"), m), "1611906999");
  assert.equal(expand(re, parseTemplate("${ts}"), m), "1611906999");
  assert.equal(expand(re, parseTemplate("$1"), m), "1611906999");
  assert.equal(expand(re, parseTemplate("$1x"), m), "", "Go reads $1x as the group named 1x");
  assert.equal(expand(re, parseTemplate("${1}x"), m), "1611906999x");
  assert.equal(expand(re, parseTemplate("$$ts"), m), "$ts");
  assert.equal(expand(re, parseTemplate("v$ts-$nope"), m), "v1611906999-");
  // JavaScript itself rejects the Go spelling: that is why we translate
  const goSpelling = "(?P<ts>.*)";
  assert.throws(() => new RegExp(goSpelling), SyntaxError);
});

test("constructs RE2 refuses are refused with the reason", () => {
  const refused: [string, RegExp][] = [
    ["(a)\\1", /backreferences/],
    ["\\k<n>", /backreferences/],
    ["(?P=n)", /backreferences/],
    ["(?=a)", /lookahead/],
    ["(?!a)", /lookahead/],
    ["(?<=a)b", /lookbehind/],
    ["(?<!a)b", /lookbehind/],
    ["(?>a)", /atomic/],
    ["a*+", /nested repetition/],
    ["a**", /nested repetition/],
    ["x{1001}", /repeat count/],
    ["[z-a]", /character class range/],
    ["(", /missing closing \)/],
    ["\\Z", /not supported/],
    ["(?x)a", /Perl syntax/],
  ];
  for (const [p, why] of refused) assert.throws(() => compileRe2(p), why, p);
});

test("Go's \\s, . and POSIX classes keep their ASCII meaning", () => {
  assert.equal(compileRe2("^\\s$").regexp.test("\u000b"), false, "Go's \\s has no \\v");
  assert.equal(compileRe2("^\\s$").regexp.test("\u00a0"), false, "nor Unicode spaces");
  assert.equal(compileRe2("^.$").regexp.test("\r"), true, "Go's . matches \\r (JavaScript's does not)");
  assert.equal(compileRe2("^.$").regexp.test("\n"), false);
  assert.equal(compileRe2("(?s)^.$").regexp.test("\n"), true);
  assert.equal(compileRe2("^[[:alpha:]]+$").regexp.test("abcXYZ"), true);
  assert.equal(compileRe2("^[[:^digit:]]+$").regexp.test("ab-"), true);
  assert.equal(compileRe2("^a{,2}$").regexp.test("a{,2}"), true, "a brace that is no repeat is literal");
});

test("Go's strconv.ParseFloat, as the numerical policy parses tags", () => {
  cases.floatInputs.forEach((input, i) => {
    const want = cases.float[i];
    const got = parseGoFloat(input);
    if (want === null) {
      assert.equal(got, undefined, JSON.stringify(input));
      return;
    }
    const w = want === "+Inf" ? Infinity : want === "-Inf" ? -Infinity : want === "NaN" ? NaN : Number(want);
    assert.ok(
      (got !== undefined && Object.is(got, w)) || got === w,
      `${JSON.stringify(input)}: Go ${want}, got ${got}`,
    );
  });
  assert.equal(parseGoFloat("1234e56789"), undefined, "overflow is an error in Go");
  assert.equal(parseGoFloat("3f2a9c1b7d"), undefined);
  assert.equal(parseGoFloat("1e3"), 1000, "a commit-id-like tag can be a number");
});
