// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about literal ${...} text.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isSluiceError } from "../core/index.js";
import { envsubst, hasSubstitution } from "./envsubst.js";

const runs = { numRuns: 500 };

/** Strings dense in the characters the parser cares about, plus non-ASCII, NUL and lone surrogates. */
const syntaxUnit = fc.constantFrom(
  "$",
  "$",
  "${",
  "{",
  "}",
  "}",
  ":",
  "=",
  "-",
  "+",
  "?",
  "#",
  "%",
  "/",
  "\\",
  "^",
  ",",
  "*",
  "[",
  "]",
  "a",
  "b",
  "v",
  "_",
  "0",
  "1",
  " ",
  "\n",
  "é",
  "😀",
  "\u0000",
  "\ud800",
);
const syntaxString = fc.string({ unit: syntaxUnit, maxLength: 40 });
const anyString = fc.oneof(fc.string({ unit: "binary", maxLength: 60 }), syntaxString);
const name: fc.Arbitrary<string> = fc.constantFrom("a", "b", "v", "_", "a1", "APP");
const varsArb = fc
  .array(fc.tuple(name, fc.oneof(fc.string({ maxLength: 8 }), syntaxString)), { maxLength: 4 })
  .map((entries) => new Map(entries));
const noDollar = (s: string): string => s.replaceAll("$", "");

describe("envsubst properties", () => {
  test("never throws anything but SluiceError, and both modes render the same text", () => {
    fc.assert(
      fc.property(anyString, varsArb, (text, vars) => {
        let strict: ReturnType<typeof envsubst> | undefined;
        try {
          strict = envsubst(text, vars, { strict: true });
        } catch (e) {
          if (!isSluiceError(e, "SubstitutionFailed")) throw e;
          assert.throws(
            () => envsubst(text, vars, { strict: false }),
            (e2) => isSluiceError(e2, "SubstitutionFailed"),
          );
          return;
        }
        const lax = envsubst(text, vars, { strict: false });
        assert.equal(lax.output, strict.output);
        assert.deepEqual(lax.missing, []);
        assert.equal(new Set(strict.missing).size, strict.missing.length);
        for (const m of strict.missing) assert.equal(vars.has(m), false);
      }),
      runs,
    );
  });

  test("text with no $ is returned unchanged", () => {
    fc.assert(
      fc.property(anyString.map(noDollar), varsArb, (text, vars) => {
        assert.deepEqual(envsubst(text, vars, { strict: true }), { output: text, missing: [] });
      }),
      runs,
    );
  });

  test("text that hasSubstitution rejects is returned unchanged", () => {
    fc.assert(
      fc.property(anyString, varsArb, (text, vars) => {
        fc.pre(!hasSubstitution(text));
        assert.equal(envsubst(text, vars, { strict: true }).output, text);
      }),
      runs,
    );
  });

  test("escaping every $ as $$ renders the original string", () => {
    fc.assert(
      fc.property(anyString, varsArb, (text, vars) => {
        const escaped = text.replaceAll("$", "$$$$");
        assert.deepEqual(envsubst(escaped, vars, { strict: true }), { output: text, missing: [] });
      }),
      runs,
    );
  });

  test("a value is inserted verbatim, whatever it contains", () => {
    fc.assert(
      fc.property(anyString.map(noDollar), anyString, anyString.map(noDollar), (before, value, after) => {
        const vars = new Map([["v", value]]);
        assert.equal(
          envsubst(`${before}\${v}${after}`, vars, { strict: true }).output,
          before + value + after,
        );
      }),
      runs,
    );
  });

  test("matches a simple model for text, ${v} and ${v:-default}, and a second pass changes nothing", () => {
    const literal = fc.string({ maxLength: 10 }).map(noDollar);
    const piece = fc.oneof(
      literal.map((text) => ({ kind: "text" as const, text })),
      name.map((n) => ({ kind: "var" as const, name: n })),
      fc
        .tuple(
          name,
          fc.constantFrom(":-", ":=", "="),
          literal.map((d) => d.replaceAll("}", "")),
        )
        .map(([n, op, def]) => ({ kind: "default" as const, name: n, op, def })),
    );
    const values = fc
      .array(fc.tuple(name, fc.string({ maxLength: 8 }).map(noDollar)), { maxLength: 4 })
      .map((entries) => new Map(entries));
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), values, (pieces, vars) => {
        let template = "";
        let expected = "";
        const missing: string[] = [];
        for (const p of pieces) {
          if (p.kind === "text") {
            template += p.text;
            expected += p.text;
          } else if (p.kind === "var") {
            template += `\${${p.name}}`;
            expected += vars.get(p.name) ?? "";
            if (!vars.has(p.name) && !missing.includes(p.name)) missing.push(p.name);
          } else {
            template += `\${${p.name}${p.op}${p.def}}`;
            const v = vars.get(p.name) ?? "";
            expected += v === "" ? p.def : v;
          }
        }
        const first = envsubst(template, vars, { strict: true });
        assert.deepEqual(first, { output: expected, missing });
        assert.equal(first.output.includes("$"), false);
        assert.deepEqual(envsubst(first.output, vars, { strict: true }), {
          output: first.output,
          missing: [],
        });
      }),
      runs,
    );
  });
});
