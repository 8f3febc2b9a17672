import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { tree } from "../../test/support/tmp.js";
import { expandName, matchBranch, readOverride, resolveEnvironments } from "./index.js";

const spec = {
  sourceRef: { name: "app" },
  rules: [
    { branch: "main", name: "production", protected: true },
    { branch: "staging", name: "staging", vars: { REPLICAS: "1" } },
    { branch: "feature/*", name: "preview-{{branch.slug}}", ttl: "8h" },
  ],
};

test("branch patterns: * stays within a segment, ** crosses segments", () => {
  assert.ok(matchBranch("feature/*", "feature/login"));
  assert.ok(!matchBranch("feature/*", "feature/a/b"));
  assert.ok(matchBranch("feature/**", "feature/a/b"));
  assert.ok(!matchBranch("main", "main2"));
  assert.ok(matchBranch("release-?", "release-1"));
});

test("the first matching rule names the environment; unmatched branches have none", () => {
  const { environments, conflicts } = resolveEnvironments(spec, [
    "main",
    "staging",
    "feature/Login_Page",
    "random",
  ]);
  assert.deepEqual(conflicts, []);
  const byName = Object.fromEntries(environments.map((e) => [e.name, e]));
  assert.deepEqual(Object.keys(byName).sort(), ["preview-feature-login-page", "production", "staging"]);
  assert.equal(byName.production?.protected, true);
  assert.equal(byName["preview-feature-login-page"]?.ttlMs, 8 * 3600_000);
  assert.deepEqual(byName.staging?.vars, {
    REPLICAS: "1",
    ENV: "staging",
    BRANCH: "staging",
    BRANCH_SLUG: "staging",
  });
});

test("two branches with the same environment name both get one, distinct and deterministic", () => {
  const s = { sourceRef: { name: "a" }, rules: [{ branch: "*", name: "same" }] };
  const one = resolveEnvironments(s, ["b", "a"]);
  const two = resolveEnvironments(s, ["a", "b"]);
  assert.deepEqual(one.conflicts, []);
  const names = one.environments.map((e) => `${e.branch}=${e.name}`).sort();
  assert.equal(names[0], "a=same");
  assert.match(names[1] ?? "", /^b=same-[0-9a-f]{8}$/);
  assert.deepEqual(two.environments.map((e) => `${e.branch}=${e.name}`).sort(), names);
});

test("names are templated with a DNS-safe slug", () => {
  assert.equal(
    expandName("preview-{{branch.slug}}", "Feature/ÜBER cool!"),
    expandName("preview-{{ branch }}", "Feature/ÜBER cool!"),
  );
  assert.match(expandName("preview-{{branch.slug}}", "feature/x"), /^preview-[a-z0-9-]+$/);
});

test("the local override file selects a configuration; unknown fields are errors", () => {
  const dir = tree({});
  assert.equal(readOverride(dir), undefined);
  mkdirSync(join(dir, ".sluice"));
  writeFileSync(join(dir, ".sluice", "override.yaml"), "config: staging\nvars: {A: b}\n");
  assert.deepEqual(readOverride(dir), { config: "staging", vars: { A: "b" } });
  writeFileSync(join(dir, ".sluice", "override.yaml"), "config: staging\nconfg: x\n");
  assert.throws(() => readOverride(dir), /override\.yaml: .*confg/);
});
