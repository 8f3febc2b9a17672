import assert from "node:assert/strict";
import { test } from "node:test";
import type { EnvironmentsSpec } from "../config/index.js";
import {
  addToExpiry,
  extendedExpiry,
  purgeDue,
  purgePolicy,
  purgeVictims,
  resolveEnvironments,
} from "./index.js";

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const previews: EnvironmentsSpec = {
  sourceRef: { name: "app" },
  rules: [
    { branch: "main", name: "production", protected: true },
    {
      branch: "**",
      name: "preview-{{branch.slug}}",
      ttl: "8h",
      vars: { HOST: "{{env.name}}.{{sha.short}}" },
    },
    { pullRequest: { base: "main" }, name: "pr-{{pr.number}}", ttl: "24h", namespace: "{{env.name}}" },
  ],
};

test("slugs of long, unicode, case- and punctuation-variant branches are valid and distinct", () => {
  const branches = [
    `feature/${"very-long-name-".repeat(8)}a`,
    `feature/${"very-long-name-".repeat(8)}b`,
    "feature/Über-Straße",
    "feature/über-straße",
    "Feature/Login",
    "feature/login",
    "feature-login",
    "feature_login",
    "fix/日本語",
    "fix/中文",
    "!!!",
  ];
  const commits = new Map(branches.map((b) => [b, "0123456789abcdef"]));
  const { environments, conflicts } = resolveEnvironments(previews, branches, { commits });
  assert.deepEqual(conflicts, []);
  assert.equal(environments.length, branches.length);
  const names = environments.map((e) => e.name);
  assert.equal(new Set(names).size, names.length, `names collide: ${names.join(", ")}`);
  for (const n of names) {
    assert.match(n, NAME, n);
    assert.ok(n.length <= 63, `${n} is longer than 63`);
  }
  // The branch that is its own slug keeps the plain name.
  assert.equal(environments.find((e) => e.branch === "feature-login")?.name, "preview-feature-login");
});

test("names are stable: a known environment keeps its name when a look-alike branch appears", () => {
  const commits = new Map([
    ["Feature/Login", "0123456789abcdef"],
    ["feature-login", "fedcba9876543210"],
  ]);
  const first = resolveEnvironments(previews, ["Feature/Login"], { commits });
  assert.equal(first.environments[0]?.name, "preview-feature-login");
  const assigned = new Map(first.environments.map((e) => [e.key, e.name]));
  const second = resolveEnvironments(previews, ["Feature/Login", "feature-login"], { assigned, commits });
  const by = Object.fromEntries(second.environments.map((e) => [e.branch, e.name]));
  assert.equal(by["Feature/Login"], "preview-feature-login");
  assert.match(by["feature-login"] ?? "", /^preview-feature-login-[0-9a-f]{8}$/);
});

test("pull requests into matching bases get pr-<n> environments with templates expanded", () => {
  const commits = new Map([["feature/x", "0123456789abcdef0123"]]);
  const { environments, conflicts } = resolveEnvironments(previews, ["main", "feature/x"], {
    commits,
    pullRequests: [
      { number: 42, headRef: "feature/x", baseRef: "main" },
      { number: 7, headRef: "feature/y", baseRef: "release" },
    ],
  });
  assert.deepEqual(conflicts, []);
  const pr = environments.find((e) => e.name === "pr-42");
  assert.ok(pr, "pr-42 exists");
  assert.equal(pr.key, "pr:42");
  assert.equal(pr.prNumber, 42);
  assert.equal(pr.branch, "feature/x");
  assert.equal(pr.namespace, "pr-42");
  assert.equal(pr.ttlMs, 86_400_000);
  assert.equal(pr.vars.PR_NUMBER, "42");
  assert.ok(!environments.some((e) => e.name === "pr-7"), "a PR into a non-matching base has no environment");
  const preview = environments.find((e) => e.name === "preview-feature-x");
  assert.equal(preview?.vars.HOST, "preview-feature-x.0123456789");
});

test("a template field that does not exist or cannot be used in names is a clear error", () => {
  const bad = { sourceRef: { name: "a" }, rules: [{ branch: "*", name: "x-{{sha.short}}" }] };
  const r = resolveEnvironments(bad, ["a"]);
  assert.equal(r.environments.length, 0);
  assert.match(r.conflicts[0] ?? "", /\{\{sha\.short\}\} cannot be used here/);
  const unknown = { sourceRef: { name: "a" }, rules: [{ branch: "*", name: "x", vars: { A: "{{nope}}" } }] };
  assert.match(resolveEnvironments(unknown, ["a"]).conflicts[0] ?? "", /unknown template field \{\{nope\}\}/);
});

const at = (s: string) => new Date(s);
const envs = [
  { name: "production", protected: true, expiresAt: "2026-01-01T00:00:00.000Z" },
  { name: "old", protected: false, expiresAt: "2026-03-02T10:00:00.000Z" },
  { name: "fresh", protected: false, expiresAt: "2026-03-03T10:00:00.000Z" },
  { name: "forever", protected: false, expiresAt: null },
];

test("without a schedule, expired unprotected environments go at the next check", () => {
  const p = purgePolicy({ ...previews }, "test");
  assert.ok(purgeDue(p, at("2026-03-02T10:00:00Z"), at("2026-03-02T10:00:30Z")));
  assert.deepEqual(
    purgeVictims(p, envs, at("2026-03-02T12:00:00Z")).map((v) => v.name),
    ["old"],
  );
});

test("with a schedule in a time zone, the purge runs only at the scheduled time", () => {
  const p = purgePolicy(
    { ...previews, purge: { schedule: "0 20 * * 1-5", timeZone: "Europe/Berlin" } },
    "test",
  );
  // Monday 2026-03-02: 20:00 in Berlin is 19:00 UTC.
  assert.ok(!purgeDue(p, at("2026-03-02T18:00:00Z"), at("2026-03-02T18:59:00Z")));
  assert.ok(purgeDue(p, at("2026-03-02T18:59:00Z"), at("2026-03-02T19:00:30Z")));
  // Caught up once after a gap that spans it; Saturday is not scheduled.
  assert.ok(purgeDue(p, at("2026-03-02T12:00:00Z"), at("2026-03-03T08:00:00Z")));
  assert.ok(!purgeDue(p, at("2026-03-07T00:00:00Z"), at("2026-03-07T23:00:00Z")));
  assert.deepEqual(
    purgeVictims(p, envs, at("2026-03-02T19:00:00Z")).map((v) => v.name),
    ["old"],
  );
  const all = purgePolicy(
    { ...previews, purge: { schedule: "0 20 * * 1-5", timeZone: "Europe/Berlin", scope: "unprotected" } },
    "test",
  );
  assert.deepEqual(
    purgeVictims(all, envs, at("2026-03-02T19:00:00Z")).map((v) => v.name),
    ["old", "fresh", "forever"],
  );
});

test("bad schedules and zones are configuration errors", () => {
  assert.throws(
    () => purgePolicy({ ...previews, purge: { schedule: "0 20 * *" } }, "envs.yaml"),
    /four fields|has 4 fields/,
  );
  assert.throws(
    () =>
      purgePolicy({ ...previews, purge: { schedule: "0 20 * * 1-5", timeZone: "Mars/Base" } }, "envs.yaml"),
    /not a time zone/,
  );
  assert.throws(
    () => purgePolicy({ ...previews, purge: { schedule: "0 25 * * *" } }, "envs.yaml"),
    /not a valid cron/,
  );
});

test("pushes move the expiry forward, never back; extend adds to it", () => {
  const now = at("2026-03-02T10:00:00Z");
  assert.equal(extendedExpiry(null, now, 3600_000), "2026-03-02T11:00:00.000Z");
  assert.equal(extendedExpiry("2026-03-02T20:00:00.000Z", now, 3600_000), "2026-03-02T20:00:00.000Z");
  assert.equal(addToExpiry("2026-03-02T20:00:00.000Z", now, 4 * 3600_000), "2026-03-03T00:00:00.000Z");
  assert.equal(addToExpiry("2026-03-01T20:00:00.000Z", now, 4 * 3600_000), "2026-03-02T14:00:00.000Z");
});
