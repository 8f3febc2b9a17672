import assert from "node:assert/strict";
import { test } from "node:test";
import { IgnoreMatcher } from "./_ignore.js";

test("unanchored patterns match at any depth; anchored ones only from their base", () => {
  const m = new IgnoreMatcher().add("*.png\n/docs\nconfig/secret.yaml\n");
  assert.equal(m.ignores("logo.png"), true);
  assert.equal(m.ignores("a/b/logo.png"), true);
  assert.equal(m.ignores("docs/readme.md"), true);
  assert.equal(m.ignores("sub/docs/readme.md"), false);
  assert.equal(m.ignores("config/secret.yaml"), true);
  assert.equal(m.ignores("x/config/secret.yaml"), false);
});

test("negation re-includes, last rule wins, but nothing inside an ignored directory comes back", () => {
  const m = new IgnoreMatcher().add("*.yaml\n!keep.yaml\nbuild/\n!build/keep.txt\n");
  assert.equal(m.ignores("a.yaml"), true);
  assert.equal(m.ignores("keep.yaml"), false);
  assert.equal(m.ignores("x/keep.yaml"), false);
  assert.equal(m.ignores("build/keep.txt"), true);
  assert.equal(m.ignores("src/build"), false); // dir-only rule, a file named build
  assert.equal(m.ignores("src/build/out.js"), true);
});

test("** forms, ? and character classes, comments and escapes", () => {
  const m = new IgnoreMatcher().add(
    "# comment\n**/tmp\ndeploy/**\na/**/z.txt\nfile?.txt\n[ab]c.md\n\\#hash\n\\!bang\n",
  );
  assert.equal(m.ignores("tmp/x"), true);
  assert.equal(m.ignores("q/r/tmp/x"), true);
  assert.equal(m.ignores("deploy/prod/k.yaml"), true);
  assert.equal(m.ignores("deploy"), false);
  assert.equal(m.ignores("a/z.txt"), true);
  assert.equal(m.ignores("a/b/c/z.txt"), true);
  assert.equal(m.ignores("file1.txt"), true);
  assert.equal(m.ignores("file12.txt"), false);
  assert.equal(m.ignores("ac.md"), true);
  assert.equal(m.ignores("cc.md"), false);
  assert.equal(m.ignores("#hash"), true);
  assert.equal(m.ignores("!bang"), true);
  assert.equal(m.ignores("comment"), false);
});

test("rules from a nested .sourceignore apply relative to its directory", () => {
  const m = new IgnoreMatcher().add("/local.yaml\n*.tmp\n", "apps/web");
  assert.equal(m.ignores("apps/web/local.yaml"), true);
  assert.equal(m.ignores("local.yaml"), false);
  assert.equal(m.ignores("apps/web/x/y.tmp"), true);
  assert.equal(m.ignores("apps/other/y.tmp"), false);
});
