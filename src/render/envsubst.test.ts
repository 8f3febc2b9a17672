// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these tests are about literal ${...} text.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isSluiceError, SluiceError } from "../core/index.js";
import { envsubst, hasSubstitution, validateVarName } from "./envsubst.js";

const vars = (o: Record<string, string>): Map<string, string> => new Map(Object.entries(o));
const sub = (text: string, o: Record<string, string> = {}, strict = false): string =>
  envsubst(text, vars(o), { strict }).output;

function assertFails(text: string, reason: RegExp, o: Record<string, string> = {}): SluiceError {
  let caught: unknown;
  try {
    envsubst(text, vars(o), { strict: true });
  } catch (e) {
    caught = e;
  }
  assert.ok(
    isSluiceError(caught, "SubstitutionFailed"),
    `expected SubstitutionFailed for ${text}, got ${caught}`,
  );
  assert.match(caught.message, reason);
  return caught;
}

type Case = [input: string, params: Record<string, string>, output: string];

function table(cases: Case[]): void {
  for (const [input, params, output] of cases) {
    test(`${JSON.stringify(input)} with ${JSON.stringify(params)} → ${JSON.stringify(output)}`, () => {
      assert.equal(sub(input, params), output);
    });
  }
}

describe("semantics.md section 1 and Flux's eval_test.go cases", () => {
  const p = "/home/bozo/ideas/thoughts.for.today";
  const z = "abcABC123ABCabc";
  table([
    ["${v}", { v: "abc" }, "abc"],
    ["${v}", {}, ""],
    ["$v", { v: "abc" }, "$v"],
    ["$${v}", { v: "abc" }, "${v}"],
    ["$$x", { x: "abc" }, "$x"],
    ["some text ${v}$${v$${v}$v${v}", { v: "abcd" }, "some text abcd${v${v}$vabcd"],
    [
      "some text ${var01}$${var$${var01}$var01${var01}",
      { var01: "abcdEFGH28ij" },
      "some text abcdEFGH28ij${var${var01}$var01abcdEFGH28ij",
    ],
    ["$${x=${d}}", { d: "foo" }, "${x=foo}"],
    ["something $${var=${default_var}}", { default_var: "foo" }, "something ${var=foo}"],
    ["${x:=xyz}", {}, "xyz"],
    ["${x=xyz}", {}, "xyz"],
    ["${x:-xyz}", {}, "xyz"],
    ["${x:=xyz}", { x: "abc" }, "abc"],
    ["${x=xyz}", { x: "abc" }, "abc"],
    ["${x:-xyz}", { x: "abc" }, "abc"],
    ["${x:=xyz}", { x: "" }, "xyz"],
    ["${x=xyz}", { x: "" }, "xyz"],
    ["${x:-xyz}", { x: "" }, "xyz"],
    ["something ${var=${default_var}}", { default_var: "foo" }, "something foo"],
    ["foo: ${x=${d}-suffix}", { d: "foo1" }, "foo: foo1-suffix"],
    ["foo: ${x=prefix${d}-suffix}", { d: "foo1" }, "foo: prefixfoo1-suffix"],
    ["${var=${var01^^}}", { var01: "abcdEFGH28ij" }, "ABCDEFGH28IJ"],
    ["${#v}", { v: "abcdEFGH28ij" }, "12"],
    ["${v^}", { v: "abcdEFGH28ij" }, "AbcdEFGH28ij"],
    ["${v^^}", { v: "abcdEFGH28ij" }, "ABCDEFGH28IJ"],
    ["${v,}", { v: "ABCDEFGH28IJ" }, "aBCDEFGH28IJ"],
    ["${v,,}", { v: "ABCDEFGH28IJ" }, "abcdefgh28ij"],
    ["${p:11}", { p }, "ideas/thoughts.for.today"],
    ["${p:11:5}", { p }, "ideas"],
    ["${s/abc/xyz}", { s: z }, "xyzABC123ABCabc"],
    ["${s//abc/xyz}", { s: z }, "xyzABC123ABCxyz"],
    ["${s/#abc/XYZ}", { s: z }, "XYZABC123ABCabc"],
    ["${s/%abc/XYZ}", { s: z }, "abcABC123ABCXYZ"],
    ["${s/#/prefix-}", { s: "somevalue" }, "prefix-somevalue"],
    ["${s/%/-suffix}", { s: "somevalue" }, "somevalue-suffix"],
    ["${f#*.}", { f: "bash.string.txt" }, "string.txt"],
    ["${f##*.}", { f: "bash.string.txt" }, "txt"],
    ["${f%.*}", { f: "bash.string.txt" }, "bash.string"],
    ["${f%%.*}", { f: "bash.string.txt" }, "bash"],
    ["${f#*/}", { f: "path/to/file" }, "to/file"],
    ["${f#*/}", { f: "/path/to/file" }, "path/to/file"],
    ["${f##*/}", { f: "path/to/file" }, "file"],
    ["${f##*/}", { f: "/path/to/file" }, "file"],
    ["${s/\\//-}", { s: "foo/bar" }, "foo-bar"],
    ["${s//\\//-}", { s: "foo/bar/baz" }, "foo-bar-baz"],
    ["\\\\something ${var=${default_var}}", { default_var: "foo" }, "\\\\something foo"],
    ["${s/./}", { s: "foo.bar" }, "foobar"],
    ["abcdEFGH28ij", {}, "abcdEFGH28ij"],
    ["name: ${APP_NAME}-config", { APP_NAME: "myapp" }, "name: myapp-config"],
    ["namespace: ${APP_NAMESPACE:=default}", {}, "namespace: default"],
    ["port: ${quote}${id}${quote}", { quote: '"', id: "9797" }, 'port: "9797"'],
  ]);
});

describe("text that is not an expression", () => {
  table([
    ["", {}, ""],
    ["no dollars at all", {}, "no dollars at all"],
    ["}text", {}, "}text"],
    ["http://github.com", {}, "http://github.com"],
    ["\\\\.\\pipe\\pipename", {}, "\\\\.\\pipe\\pipename"],
    ["$", {}, "$"],
    ["a $ b $", {}, "a $ b $"],
    ["$1 $@ $(cmd) $ {v}", { v: "x" }, "$1 $@ $(cmd) $ {v}"],
    ["$$", {}, "$"],
    ["$$$", {}, "$$"],
    ["$$$$", {}, "$$"],
    ["$$${v}", { v: "x" }, "$x"],
    ["$$$${v}", { v: "x" }, "$${v}"],
    ["price: 5$", {}, "price: 5$"],
    ["a\u0000${v}b", { v: "x" }, "a\u0000xb"],
    ["multi\nline ${a}\n${b}\n", { a: "1", b: "2" }, "multi\nline 1\n2\n"],
    ["${v}", { v: "has ${x} and $$ inside" }, "has ${x} and $$ inside"],
    ["${v}", { v: "a\nb" }, "a\nb"],
  ]);

  test("returns the very same string when nothing changes", () => {
    const text = "kind: ConfigMap\ndata:\n  script: echo $HOME\n".repeat(10);
    assert.equal(envsubst(text, vars({ HOME: "/x" }), { strict: true }).output, text);
  });
});

describe("defaults", () => {
  table([
    ["${x:=}", {}, ""],
    ["${x:-}", { x: "set" }, "set"],
    ["${x=a b c}", {}, "a b c"],
    ["${x:=${y:=${z}}}", { z: "deep" }, "deep"],
    ["${x:-$${y}}", { y: "v" }, "$v"],
    ["${x:-a:b/c#d%e}", {}, "a:b/c#d%e"],
    ["${x:-{nested}", {}, "{nested"],
    ["${x==y}", {}, "=y"],
    ["${x:=a}${x}", {}, "a"],
  ]);

  test("a default does not assign the variable (later ${x} is still empty)", () => {
    assert.equal(sub("${x:=a}-${x}"), "a-");
  });
});

describe("length and case", () => {
  table([
    ["${#v}", {}, "0"],
    ["${#v}", { v: "" }, "0"],
    ["${#v}", { v: "café" }, "5"], // Flux counts UTF-8 bytes (Go len)
    ["${v^}", { v: "" }, ""],
    ["${v^}", { v: "élan" }, "Élan"],
    ["${v^^}", { v: "straße" }, "STRAßE"], // Go maps one rune to one rune
    ["${v,,}", { v: "ÀÉÎ" }, "àéî"],
    ["${v,}", { v: "Ünï" }, "ünï"],
    ["${v,,}", { v: "İSTANBUL" }, "istanbul"],
    ["${v,^}", { v: "AbC" }, "AbC"], // mixed casing operators: Flux falls back to the value
  ]);
});

describe("substrings", () => {
  const v = "0123456789";
  table([
    ["${v:0}", { v }, v],
    ["${v:3}", { v }, "3456789"],
    ["${v:10}", { v }, ""],
    ["${v:99}", { v }, ""],
    ["${v:-3}", { v }, v], // that is the :- default, as in bash
    ["${v:${neg}}", { v, neg: "-3" }, "789"],
    ["${v:${neg}}", { v, neg: "-30" }, v],
    ["${v:2:3}", { v }, "234"],
    ["${v:2:0}", { v }, ""],
    ["${v:8:5}", { v }, "89"],
    ["${v:12:5}", { v }, ""],
    ["${v:1:-1}", { v }, "12345678"],
    ["${v:5:-6}", { v }, ""],
    ["${v:x}", { v }, v], // unparsable offset: the value as-is, like bash
    ["${v:1:x}", { v }, v],
    ["${v: 1}", { v }, v],
    ["${v:1:2:3}", { v }, v],
    ["${v:99999999999999999999}", { v }, v], // out of int64 range: not a number
    ["${v:1:9223372036854775807}", { v }, "123456789"],
    ["${v:${o}:${l}}", { v, o: "2", l: "2" }, "23"],
    ["${v:${o}}", { v }, v],
    ["${v:1:2}", { v: "aéb" }, "é"], // byte offsets, as in Flux
    ["${v:2}", {}, ""],
  ]);
});

describe("replacement", () => {
  table([
    ["${s/a/b}", { s: "aaa" }, "baa"],
    ["${s//a/b}", { s: "aaa" }, "bbb"],
    ["${s/x/y}", { s: "aaa" }, "aaa"],
    ["${s/a/}", { s: "banana" }, "bnana"],
    ["${s//a/}", { s: "banana" }, "bnn"],
    ["${s//a/$$&}", { s: "banana" }, "b$&n$&n$&"], // no JS replace patterns
    ["${s/#ba/X}", { s: "banana" }, "Xnana"],
    ["${s/#na/X}", { s: "banana" }, "banana"],
    ["${s/%na/X}", { s: "banana" }, "banaX"],
    ["${s/%ba/X}", { s: "banana" }, "banana"],
    ["${s/#ba/}", { s: "banana" }, "banana"], // Flux needs both arguments for /# and /%
    ["${s/%na/}", { s: "banana" }, "banana"],
    ["${s///-}", { s: "abc" }, "-a-b-c-"], // empty pattern with // (Go strings.Replace)
    ["${s//\\\\/\\/}", { s: "a\\b" }, "a/b"],
    ["${s/a\\/b/c}", { s: "xa/by" }, "xcy"],
    ["${s/$$/d}", { s: "a$b" }, "adb"],
    ["${s/${p}/${r}}", { s: "hello", p: "l", r: "L" }, "heLlo"],
    ["${s//${p}/${r}}", { s: "hello", p: "l", r: "L" }, "heLLo"],
    ["${s/a//b}", { s: "xay" }, "xby"], // the delimiter scan takes every '/'
    ["${s/a}b/c}", { s: "a}b" }, "c"], // a pattern may contain '}' (Flux's scanner)
    ["${s/#/x}", {}, "x"],
    ["${s/%/x}", {}, "x"],
  ]);
});

describe("trimming with globs", () => {
  table([
    ["${f#*}", { f: "abc" }, "bc"], // Flux never considers the empty match
    ["${f##*}", { f: "abc" }, ""],
    ["${f%*}", { f: "abc" }, "ab"],
    ["${f%%*}", { f: "abc" }, ""],
    ["${f#?}", { f: "abc" }, "bc"],
    ["${f%??}", { f: "abc" }, "a"],
    ["${f#x}", { f: "abc" }, "abc"],
    ["${f#abc}", { f: "abc" }, ""],
    ["${f#[ab]}", { f: "abc" }, "bc"],
    ["${f##[ab]*}", { f: "abc" }, ""],
    ["${f#[^b]}", { f: "abc" }, "bc"],
    ["${f#[^a]}", { f: "abc" }, "abc"],
    ["${f%[0-9]}", { f: "v12" }, "v1"],
    ["${f%%[0-9]*}", { f: "v12" }, "v"],
    ["${f%[0-9][0-9]}", { f: "v12" }, "v"],
    ["${f#v[0-9]}", { f: "v12" }, "2"],
    ["${f#\\*}", { f: "*x" }, "x"],
    ["${f%\\*}", { f: "x*" }, "x"],
    ["${f#[}", { f: "[x" }, "[x"], // malformed glob: unchanged
    ["${f#\\}", { f: "\\x" }, "\\x"],
    ["${f#[]]}", { f: "]x" }, "]x"],
    ["${f#*-}", { f: "a-b-c" }, "b-c"],
    ["${f##*-}", { f: "a-b-c" }, "c"],
    ["${f%-*}", { f: "a-b-c" }, "a-b"],
    ["${f%%-*}", { f: "a-b-c" }, "a"],
    ["${f%.*}", { f: "naïve.tär" }, "naïve"],
    ["${f#?}", { f: "éa" }, "a"],
    ["${f#${p}}", { f: "prefix-rest", p: "prefix-" }, "rest"],
    ["${f#${p}}", { f: "abc" }, "abc"],
    ["${f#$%:*{}", { f: "$%:x{y" }, "y"],
    ["${f###}", { f: "##x" }, "#x"],
    ["${f#*}", {}, ""],
  ]);

  test("trims long values quickly (no backtracking blow-up)", () => {
    const f = "a".repeat(20_000);
    const t0 = performance.now();
    assert.equal(sub("${f##*a*a*a*a*b}", { f }), f);
    assert.equal(sub("${f%%a*a*a}", { f }), "");
    assert.ok(performance.now() - t0 < 2000);
  });
});

describe("strict mode and missing variables", () => {
  test("an unset variable is reported and renders empty; set-but-empty is fine", () => {
    assert.deepEqual(envsubst("a${missing}b", vars({}), { strict: true }), {
      output: "ab",
      missing: ["missing"],
    });
    assert.deepEqual(envsubst("${foo}", vars({ foo: "" }), { strict: true }), { output: "", missing: [] });
  });

  test("non-strict mode renders the same text and reports nothing", () => {
    const text = "${a} ${#b} ${c^^} ${d:0:10} ${e/a/b} ${f%pat}";
    const strict = envsubst(text, vars({}), { strict: true });
    const lax = envsubst(text, vars({}), { strict: false });
    assert.equal(lax.output, strict.output);
    assert.equal(lax.output, " 0    ");
    assert.deepEqual(lax.missing, []);
    assert.deepEqual(strict.missing, ["a", "b", "c", "d", "e", "f"]);
  });

  const operators = [
    "${#missing}",
    "${missing^}",
    "${missing^^}",
    "${missing,}",
    "${missing,,}",
    "${missing:0}",
    "${missing:0:10}",
    "${missing/pattern/replacement}",
    "${missing//pattern/replacement}",
    "${missing/#pattern/replacement}",
    "${missing/%pattern/replacement}",
    "${missing#pattern}",
    "${missing##pattern}",
    "${missing%pattern}",
    "${missing%%pattern}",
  ];
  for (const text of operators) {
    test(`${text} counts as missing in strict mode`, () => {
      assert.deepEqual(envsubst(text, vars({ other: "x" }), { strict: true }).missing, ["missing"]);
    });
  }

  for (const [text, out] of [
    ["${missing:=default}", "default"],
    ["${missing:-fallback}", "fallback"],
    ["${missing=assigned}", "assigned"],
  ] as const) {
    test(`${text} is not missing (it has a default)`, () => {
      assert.deepEqual(envsubst(text, vars({ foo: "bar" }), { strict: true }), { output: out, missing: [] });
    });
  }

  test("missing names are unique and in order of first appearance", () => {
    const r = envsubst("${b} ${a} ${b} ${c:=${d}} ${a} ${e:0:${f}}", vars({}), { strict: true });
    assert.deepEqual(r.missing, ["b", "a", "d", "e", "f"]);
  });

  test("a default's nested reference is evaluated even when the variable is set (as in Flux)", () => {
    const r = envsubst("${x:=${fallback}}", vars({ x: "set" }), { strict: true });
    assert.deepEqual(r, { output: "set", missing: ["fallback"] });
  });

  test("escaped expressions are never missing", () => {
    assert.deepEqual(envsubst("$${missing} $$missing", vars({}), { strict: true }), {
      output: "${missing} $missing",
      missing: [],
    });
  });
});

describe("parse errors", () => {
  const cases: [string, RegExp][] = [
    ["${v", /missing closing brace/],
    ["text ${", /unable to parse variable name/],
    ["${}", /unable to parse variable name/],
    ["${ v}", /unable to parse variable name/],
    ["${.v}", /unable to parse variable name/],
    ["${my-var}", /missing closing brace.*"-"/],
    ["${v-default}", /missing closing brace.*"-"/],
    ["${v+x}", /unsupported operator "\+"/],
    ["${v?x}", /unsupported operator "\?"/],
    ["${v:+x}", /unsupported operator ":\+"/],
    ["${v:?x}", /unsupported operator ":\?"/],
    ["${v.x}", /missing closing brace/],
    ["${v x}", /missing closing brace/],
    ["${v:=abc", /missing closing brace/],
    ["${v:}", /unable to parse substitution within function/],
    ["${v::1}", /unable to parse substitution within function/],
    ["${v:1", /bad substitution/],
    ["${v:1${x}}", /bad substitution/],
    ["${v#}", /unable to parse substitution within function/],
    ["${v#a${x}}", /bad substitution/],
    ["${v/a}", /bad substitution/],
    ["${v//x}", /bad substitution/],
    ["${v/a/b", /bad substitution/],
    ["${v^^^}", /bad substitution/],
    ["${#}", /bad substitution/],
    ["${#v:1}", /bad substitution/],
    ["${x:=${}}", /unable to parse variable name/],
    ["ok ${a} then ${b", /missing closing brace/],
  ];
  for (const [text, reason] of cases) {
    test(`${JSON.stringify(text)} fails: ${reason.source}`, () => {
      assertFails(text, reason);
    });
  }

  test("errors name the line, column and the expression, with a hint", () => {
    const e = assertFails("kind: ConfigMap\ndata:\n  k: ${my-var}\n", /missing closing brace/);
    assert.match(e.message, /"\$\{my-/);
    assert.match(e.message, /line 3, column 10/);
    assert.equal(e.detail.line, 3);
    assert.ok(e.hint && e.hint.length > 0);
  });

  test("an error anywhere fails the whole text, in both modes", () => {
    assert.throws(() => envsubst("${a} ${b", vars({ a: "1" }), { strict: false }), SluiceError);
  });

  test("values are not parsed, so a value can't cause a parse error", () => {
    assert.equal(sub("${v}", { v: "${" }), "${");
  });

  test("deep nesting is rejected cleanly", () => {
    const deep = `${"${a:=".repeat(500)}x${"}".repeat(500)}`;
    assertFails(deep, /nested more than 100 levels/);
    const ok = `${"${a:=".repeat(50)}x${"}".repeat(50)}`;
    assert.equal(sub(ok), "x");
  });
});

describe("names", () => {
  test("validateVarName accepts Flux's ASCII identifiers only", () => {
    for (const n of ["a", "_", "A_1", "_x9", "APP_NAME", "cluster_env"])
      assert.equal(validateVarName(n), true, n);
    for (const n of ["", "1abc", "my-var", "a.b", "é", "a b", "$a", "a\n"])
      assert.equal(validateVarName(n), false, n);
  });

  test("expressions accept Flux's wider (Unicode) names and just find them unset", () => {
    assert.deepEqual(envsubst("${1abc}${é}", vars({}), { strict: true }).missing, ["1abc", "é"]);
  });
});

describe("hasSubstitution", () => {
  test("is true exactly when envsubst could change the text", () => {
    for (const t of ["${a}", "x $${a}", "$$", "a${"]) assert.equal(hasSubstitution(t), true, t);
    for (const t of ["", "plain", "$a $ b", "{a}", "$ {a}", "a$"]) {
      assert.equal(hasSubstitution(t), false, t);
      assert.equal(sub(t, { a: "x" }), t);
    }
  });
});

describe("performance", () => {
  test("10,000 manifest texts substitute in well under a second", () => {
    const manifest = (i: number): string =>
      [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        `  name: \${APP_NAME}-${i}`,
        "  namespace: ${APP_NAMESPACE:=default}",
        "  labels:",
        "    env: ${cluster_env}",
        "spec:",
        "  replicas: 2",
        "  template:",
        "    spec:",
        "      containers:",
        "        - name: app",
        "          image: registry.example.com/app:${TAG}",
        '          args: ["--mode=$MODE", "--price=$$5"]',
        "          env:",
        "            - name: PLAIN",
        "              value: no substitution here at all, just some longer text to scan",
      ].join("\n");
    const plain = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n".repeat(3);
    const texts = Array.from({ length: 10_000 }, (_, i) => (i % 4 === 0 ? plain : manifest(i)));
    const v = vars({ APP_NAME: "web", cluster_env: "prod", TAG: "1.2.3" });
    const t0 = performance.now();
    let bytes = 0;
    for (const t of texts) bytes += envsubst(t, v, { strict: true }).output.length;
    const ms = performance.now() - t0;
    assert.ok(bytes > 0);
    assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms`);
    assert.equal(envsubst(manifest(7), v, { strict: false }).output.split("\n")[3], "  name: web-7");
  });
});
