/**
 * Property tests of the bounded YAML loader: whatever the text, `parseYamlStream` returns values or
 * throws a SluiceError (YamlInvalid / YamlTooLarge) — never another exception, never a hang, never
 * a memory blow-up — and what it accepts round-trips. The hostile sizes at the end are regression
 * tests for what the fuzzing found (see SECURITY.md).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { stringify } from "yaml";
import { isSluiceError } from "./errors.js";
import { defaultYamlLimits, parseYamlStream } from "./yaml.js";

/** Calls the loader; returns "ok" or the SluiceError code, fails on anything else, and times it. */
function load(text: string, limits = {}): { outcome: string; ms: number } {
  const t0 = performance.now();
  try {
    parseYamlStream(text, "fuzz.yaml", limits);
    return { outcome: "ok", ms: performance.now() - t0 };
  } catch (e) {
    const ms = performance.now() - t0;
    assert.ok(isSluiceError(e), `not a SluiceError: ${(e as Error)?.stack ?? String(e)}`);
    assert.ok(e.code === "YamlInvalid" || e.code === "YamlTooLarge", `code ${e.code}`);
    assert.ok(e.message.startsWith("fuzz.yaml"), "the message names the file");
    return { outcome: e.code, ms };
  }
}

// Pieces YAML is made of, glued at random: indicators, anchors, tags, directives, quotes, comments,
// block scalars, merge keys, placeholders, odd white space and line breaks.
const fragment = fc.oneof(
  fc.constantFrom(
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    ":",
    "- ",
    "? ",
    "&a ",
    "&b ",
    "*a",
    "*b",
    "!!str ",
    "!!map ",
    "!!binary ",
    "!t ",
    "!<tag:x> ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2000:\n",
    "\n",
    "\r\n",
    "\t",
    "  ",
    "'",
    '"',
    "\\",
    "# c\n",
    "|\n",
    ">-\n",
    "|2+\n",
    "<<: ",
    "${X}",
    "$${Y}",
    "\u0000",
    "\ufeff",
    "\u2028",
    "key",
    "1e9",
    "0x1F",
    "~",
    "null",
    ".inf",
  ),
  fc.string({ maxLength: 8 }),
);
const yamlish = fc.array(fragment, { maxLength: 200 }).map((xs) => xs.join(""));

test("property: any text loads or fails with YamlInvalid/YamlTooLarge, quickly", () => {
  let slowest = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        yamlish,
        fc.string({ unit: "binary", maxLength: 300 }),
        fc.string({ unit: "grapheme", maxLength: 300 }),
      ),
      (text) => {
        slowest = Math.max(slowest, load(text).ms);
      },
    ),
    { numRuns: 4000 },
  );
  assert.ok(slowest < 2000, `slowest input took ${Math.round(slowest)} ms`);
});

test("property: JSON-like values written as YAML (block and flow) load back equal", () => {
  const value = fc.jsonValue({ maxDepth: 6 });
  fc.assert(
    fc.property(value, fc.boolean(), (v, flow) => {
      // -0 and 0 are one number in YAML.
      const want = JSON.parse(JSON.stringify(v));
      const text = stringify(want, flow ? { collectionStyle: "flow" } : {});
      const docs = parseYamlStream(text, "rt.yaml");
      assert.equal(docs.length, 1);
      assert.deepEqual(docs[0]!.value, want);
    }),
    { numRuns: 1000 },
  );
});

test("property: the depth limit is exact, in flow and block style, maps and sequences", () => {
  const max = 12;
  const nested = (depth: number, style: "flow-seq" | "flow-map" | "block-seq" | "block-map"): string => {
    switch (style) {
      case "flow-seq":
        return `${"[".repeat(depth + 1)}x${"]".repeat(depth + 1)}`;
      case "flow-map":
        return `${"{a: ".repeat(depth + 1)}x${"}".repeat(depth + 1)}`;
      case "block-seq":
        return `${"- ".repeat(depth + 1)}x\n`;
      case "block-map":
        return `${Array.from({ length: depth + 1 }, (_, i) => `${"  ".repeat(i)}a:`).join("\n")} x\n`;
    }
  };
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 3 * max }),
      fc.constantFrom("flow-seq", "flow-map", "block-seq", "block-map") as fc.Arbitrary<
        "flow-seq" | "flow-map" | "block-seq" | "block-map"
      >,
      (depth, style) => {
        const r = load(nested(depth, style), { maxDepth: max });
        assert.equal(r.outcome, depth <= max ? "ok" : "YamlInvalid", `${style} at depth ${depth}`);
      },
    ),
    { numRuns: 500 },
  );
});

test("property: alias bombs of any shape are refused, in bounded time", () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 2, max: 12 }), (width, levels) => {
      const lines = [`a0: &a0 [${Array(width).fill("x").join(", ")}]`];
      for (let i = 1; i < levels; i++)
        lines.push(
          `a${i}: &a${i} [${Array(width)
            .fill(`*a${i - 1}`)
            .join(", ")}]`,
        );
      const r = load(`${lines.join("\n")}\n`);
      // width^levels expansions; anything past the alias limit must be refused.
      const aliases = width * (levels - 1);
      if (aliases > defaultYamlLimits.maxAliases) assert.equal(r.outcome, "YamlInvalid");
      assert.ok(r.ms < 2000, `${width}x${levels} took ${Math.round(r.ms)} ms`);
    }),
    { numRuns: 200 },
  );
});

// --- regressions: hostile sizes that once hung or exhausted the agent --------------------------

test("regression: a long line with a syntax error is reported in linear time (was quadratic)", () => {
  // The hint for unquoted ${VAR} in flow collections used /[{[].*\$\{/ on the error's line:
  // about 10 minutes for this 1 MB line (an unclosed quote, so the brackets are not nesting).
  for (const text of [`a: "${"[".repeat(1_000_000)}`, `k: '${"{".repeat(1_000_000)}`]) {
    const r = load(text);
    assert.equal(r.outcome, "YamlInvalid");
    assert.ok(r.ms < 5000, `took ${Math.round(r.ms)} ms`);
  }
});

test("regression: megabytes of nesting are refused before the parser builds them", () => {
  // The parser builds about 1 KB per nesting level: 8 MB of `[` (under the size limit) took more
  // than 4 GB and crashed the process.
  const n = 4_000_000;
  const cases: [string, string][] = [
    ["flow sequences", `${"[".repeat(n)}${"]".repeat(n)}`],
    ["flow maps", `${"{a: ".repeat(n / 4)}1${"}".repeat(n / 4)}`],
    ["unclosed", "[".repeat(2 * n)],
    ["compact block sequences", `${"- ".repeat(n)}x\n`],
    ["explicit keys", `${"? ".repeat(n)}x\n`],
  ];
  for (const [what, text] of cases) {
    const before = process.memoryUsage().rss;
    const r = load(text);
    const grew = process.memoryUsage().rss - before;
    assert.equal(r.outcome, "YamlInvalid", what);
    assert.ok(r.ms < 5000, `${what}: took ${Math.round(r.ms)} ms`);
    assert.ok(grew < 512 * 1024 * 1024, `${what}: memory grew by ${Math.round(grew / 2 ** 20)} MB`);
  }
});

test("regression: deep but legitimate documents still load (the pre-check never over-counts)", () => {
  // 100 levels of flow, then block nesting on separate lines, and brackets inside strings,
  // comments and block scalars, which are not nesting at all.
  const deep = `${"[".repeat(101)}x${"]".repeat(101)}`;
  assert.equal(load(deep).outcome, "ok");
  const noise = `a: "${"[".repeat(500)}"\nb: '${"{".repeat(500)}'\n# ${"[".repeat(500)}\nc: |\n  ${"- [".repeat(500)}\nd: ${"x[".repeat(500)}\n`;
  assert.equal(load(noise).outcome, "ok");
  const items = `${Array.from({ length: 1000 }, (_, i) => `- [${i}, {k: [v]}]`).join("\n")}\n`;
  assert.equal(load(items).outcome, "ok");
});
