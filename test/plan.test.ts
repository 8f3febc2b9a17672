/**
 * `sluice plan` against a real Git repository and the real kustomize: the acceptance cases of
 * pull-request plans (issue 10). The repository has two environments from branches (main →
 * production, staging → staging) rendering different overlays of one base.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import {
  formatPlanMarkdown,
  formatPlanText,
  planRevisions,
  planTrees,
  type RevisionPlan,
} from "../src/plan/index.js";
import { sluice } from "./support/cli.js";
import { tree } from "./support/tmp.js";

const SECRET_V1 = "hunter2-base-value";
const SECRET_V2 = "correct-horse-head-value";
const b64 = (s: string) => Buffer.from(s).toString("base64");

const files = (
  prodReplicas: number,
  stagingReplicas: number,
  secret = SECRET_V1,
): Record<string, string> => ({
  "README.md": "# app\n",
  "sluice/apps.yaml": `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: app, namespace: flux-system }
spec: { url: "http://127.0.0.1:9/app.git", interval: 1m, ref: { branch: main } }
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: { name: web, namespace: flux-system }
spec:
  sourceRef: { kind: GitRepository, name: app }
  path: ./deploy/overlays/\${OVERLAY}
  interval: 10m
  prune: true
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: { name: branches, namespace: flux-system }
spec:
  sourceRef: { name: app }
  rules:
    - { branch: main, name: production, vars: { OVERLAY: production } }
    - { branch: staging, name: staging, vars: { OVERLAY: staging } }
`,
  "deploy/base/kustomization.yaml": "resources:\n  - deployment.yaml\n  - secret.yaml\n",
  "deploy/base/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: "127.0.0.1:5000/web:\${ENV}"
`,
  "deploy/base/secret.yaml": `apiVersion: v1
kind: Secret
metadata: { name: web-credentials }
type: Opaque
data:
  password: ${b64(secret)}
  user: ${b64("admin")}
`,
  "deploy/overlays/production/kustomization.yaml": `namespace: web-production
resources: [../../base]
replicas:
  - { name: web, count: ${prodReplicas} }
`,
  "deploy/overlays/staging/kustomization.yaml": `namespace: web-staging
resources: [../../base]
replicas:
  - { name: web, count: ${stagingReplicas} }
`,
});

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@sluice.invalid",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@sluice.invalid",
    },
  });
}

function write(root: string, fs: Record<string, string>): void {
  for (const [p, c] of Object.entries(fs)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), c);
  }
}

/** A repository whose main has production at 3 and staging at 2 replicas. */
function repo(): string {
  const root = tree({}, "sluice-plan-");
  git(root, "init", "-q", "-b", "main");
  write(root, files(3, 2));
  git(root, "add", "-A");
  git(root, "commit", "-q", "-m", "initial");
  return root;
}

function branch(root: string, name: string, change: Record<string, string>, message = "change"): string {
  git(root, "checkout", "-q", "-b", name, "main");
  write(root, change);
  git(root, "add", "-A");
  git(root, "commit", "-q", "-m", message);
  git(root, "checkout", "-q", "main");
  return git(root, "rev-parse", name).trim();
}

function env(plan: RevisionPlan, name: string) {
  const e = plan.environments.find((x) => x.name === name);
  assert.ok(e, `environment ${name} in the plan`);
  return e;
}

test("a PR changing one overlay's replica count changes exactly that environment (exit 2)", async () => {
  const root = repo();
  branch(root, "scale-staging", {
    "deploy/overlays/staging/kustomization.yaml": files(3, 5)["deploy/overlays/staging/kustomization.yaml"]!,
  });
  const plan = await planRevisions({ repo: root, base: "main", head: "scale-staging" });
  assert.equal(plan.exitCode, 2);
  assert.deepEqual(
    plan.environments.map((e) => [e.name, e.status]),
    [
      ["production", "unchanged"],
      ["staging", "changed"],
    ],
  );
  const web = env(plan, "staging").units[0]!;
  assert.deepEqual(web.counts, { create: 0, update: 1, delete: 0, unchanged: 1 });
  assert.equal(web.objects.length, 1);
  assert.equal(web.objects[0]!.subject, "Deployment/web-staging/web");
  // Exactly the replica line changes.
  const changed = web.objects[0]!.diff.split("\n").filter((l) => /^[-+][^-+]/.test(l));
  assert.deepEqual(changed, ["-  replicas: 2", "+  replicas: 5"]);

  // The CLI: text by default, exit 2, the working copy untouched.
  const before = git(root, "status", "--porcelain");
  const r = await sluice(["plan", "--base", "main", "--head", "scale-staging", "--dir", root]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stdout, /Environment production \(branch main\): no changes/);
  assert.match(r.stdout, /Environment staging \(branch staging\): changed/);
  assert.match(r.stdout, /web: 0 to create, 1 to update, 0 to delete/);
  assert.match(r.stdout, /^ {4}- {2}replicas: 2$/m);
  assert.match(r.stdout, /^ {4}\+ {2}replicas: 5$/m);
  assert.match(
    r.stdout,
    /Plan: 1 environment changes \(0 to create, 1 to update, 0 to delete\), 1 unchanged\./,
  );
  assert.equal(git(root, "status", "--porcelain"), before);
  assert.equal(git(root, "worktree", "list").trim().split("\n").length, 1);

  // --env narrows; JSON for tools.
  const j = await sluice([
    "plan",
    "--base",
    "main",
    "--head",
    "scale-staging",
    "--dir",
    root,
    "--env",
    "production",
    "-o",
    "json",
  ]);
  assert.equal(j.code, 0, j.stderr);
  const parsed = JSON.parse(j.stdout) as RevisionPlan;
  assert.deepEqual(
    parsed.environments.map((e) => e.name),
    ["production"],
  );
  assert.equal(parsed.exitCode, 0);
});

test("a PR touching nothing deployable says so and exits 0", async () => {
  const root = repo();
  branch(root, "docs", { "README.md": "# app\n\nMore words.\n", "docs/notes.md": "notes\n" });
  const r = await sluice(["plan", "--base", "main", "--head", "docs", "--dir", root]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /No changes/);
  assert.match(r.stdout, /Environment production \(branch main\): no changes/);
  assert.match(r.stdout, /Environment staging \(branch staging\): no changes/);
  const md = await sluice(["plan", "--base", "main", "--head", "docs", "--dir", root, "-o", "markdown"]);
  assert.equal(md.code, 0, md.stderr);
  assert.match(md.stdout, /\*\*No changes/);
  assert.match(md.stdout, /\| production \| main \| 0 \| 0 \| 0 \| ✅ no changes \|/);
});

test("a changed Secret shows as changed in every environment with both values masked", async () => {
  const root = repo();
  branch(root, "rotate", { "deploy/base/secret.yaml": files(3, 2, SECRET_V2)["deploy/base/secret.yaml"]! });
  const plan = await planRevisions({ repo: root, base: "main", head: "rotate" });
  assert.equal(plan.exitCode, 2);
  for (const name of ["production", "staging"]) {
    const u = env(plan, name).units[0]!;
    assert.deepEqual(u.counts, { create: 0, update: 1, delete: 0, unchanged: 1 });
    const o = u.objects[0]!;
    assert.equal(o.subject, `Secret/web-${name}/web-credentials`);
    assert.deepEqual(o.secretKeys, [
      { field: "data", key: "password", change: "changed" },
      { field: "data", key: "user", change: "unchanged" },
    ]);
    assert.match(o.diff, /^- {2}password: "\*\*\*"$/m);
    assert.match(o.diff, /^\+ {2}password: "\*\*\* \(changed\)"$/m);
    assert.match(o.diff, /^ {3}user: "\*\*\*"$/m, "an unchanged key is context, masked");
    assert.doesNotMatch(o.diff, /^[-+].*user:/m, "an unchanged key is no diff line");
  }
  const all = [
    JSON.stringify(plan),
    formatPlanText(plan),
    formatPlanMarkdown(plan),
    (await sluice(["plan", "--base", "main", "--head", "rotate", "--dir", root, "-o", "json"])).stdout,
  ].join("\n");
  for (const secret of [SECRET_V1, SECRET_V2, b64(SECRET_V1), b64(SECRET_V2), b64("admin")])
    assert.ok(!all.includes(secret), "no Secret value in any output");
  assert.match(
    formatPlanText(plan),
    /update Secret\/web-staging\/web-credentials \(secret values hidden; password: changed, user: unchanged\)/,
  );
});

test("environments and units that appear or disappear, a head that does not render, and bad refs", async () => {
  const root = repo();
  // A new rule for a new branch: the environment is all creations.
  const apps = files(3, 2)["sluice/apps.yaml"]!.replace(
    "    - { branch: staging, name: staging, vars: { OVERLAY: staging } }\n",
    "    - { branch: staging, name: staging, vars: { OVERLAY: staging } }\n    - { branch: qa, name: qa, vars: { OVERLAY: staging } }\n",
  );
  branch(root, "add-qa", { "sluice/apps.yaml": apps });
  const plan = await planRevisions({ repo: root, base: "main", head: "add-qa" });
  const qa = env(plan, "qa");
  assert.equal(qa.presence, "added");
  assert.equal(qa.status, "changed");
  assert.deepEqual(qa.units[0]!.counts, { create: 2, update: 0, delete: 0, unchanged: 0 });
  assert.equal(env(plan, "production").status, "unchanged");
  // The reverse: planning from add-qa back to main removes it.
  const back = await planRevisions({ repo: root, base: "add-qa", head: "main" });
  assert.equal(env(back, "qa").presence, "removed");
  assert.deepEqual(env(back, "qa").units[0]!.counts, { create: 0, update: 0, delete: 2, unchanged: 0 });

  // A head whose overlay does not build: an error, exit 1, but the other environment is planned.
  branch(root, "broken", { "deploy/overlays/staging/kustomization.yaml": "resources: [../../missing]\n" });
  const r = await sluice(["plan", "--base", "main", "--head", "broken", "--dir", root]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /Environment staging \(branch staging\): error/);
  assert.match(r.stdout, /Environment production \(branch main\): no changes/);
  assert.match(r.stdout, /Plan failed: 1 error/);
  // ... and a PR fixing it is a change against nothing, not an error.
  const fixed = await planRevisions({ repo: root, base: "broken", head: "main" });
  assert.equal(fixed.exitCode, 2);
  assert.ok(env(fixed, "staging").units[0]!.baseError);

  const bad = await sluice(["plan", "--base", "main", "--head", "no-such-branch", "--dir", root]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /error: --head no-such-branch is not a commit/);
  const opt = await sluice(["plan", "--base", "--upload-pack=x", "--head", "main", "--dir", root]);
  assert.equal(opt.code, 1);
  assert.match(opt.stderr, /is not a valid Git revision/);
  const missing = await sluice(["plan", "--head", "main", "--dir", root]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /needs --base/);
});

test("planTrees over two directories with a fixed configuration and a pull-request rule", async () => {
  const fx = files(3, 2);
  const config = fx["sluice/apps.yaml"]!.replace(
    "    - { branch: staging, name: staging, vars: { OVERLAY: staging } }\n",
    "    - { branch: staging, name: staging, vars: { OVERLAY: staging } }\n    - { pullRequest: { base: main }, name: 'pr-{{pr.number}}', vars: { OVERLAY: staging } }\n",
  );
  const cfgRoot = tree({ "apps.yaml": config });
  const { loadConfig } = await import("../src/config/index.js");
  const base = tree(fx);
  const head = tree(files(3, 4));
  const plan = await planTrees({
    base: { dir: base, label: "main", branch: "main" },
    head: { dir: head, label: "pull/7/head", branch: "feature/x" },
    config: loadConfig(cfgRoot, "."),
    pullRequest: { number: 7, headRef: "feature/x", baseRef: "main" },
  });
  assert.deepEqual(
    plan.environments.map((e) => [e.name, e.status]),
    [
      ["pr-7", "changed"],
      ["production", "unchanged"],
      ["staging", "changed"],
    ],
  );
});

test("markdown is bounded: diffs that do not fit are left out with a link to the full plan", async () => {
  const root = repo();
  // Many objects changing: a ConfigMap per key with a long value.
  const big: Record<string, string> = {
    "deploy/base/kustomization.yaml": "resources:\n  - deployment.yaml\n  - secret.yaml\n  - big.yaml\n",
  };
  big["deploy/base/big.yaml"] = Array.from(
    { length: 40 },
    (_, i) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: big-${i} }\ndata: { v: "${"x".repeat(1500)}" }\n`,
  ).join("---\n");
  branch(root, "big", big);
  const plan = await planRevisions({ repo: root, base: "main", head: "big" });
  assert.equal(plan.summary.create, 80);
  const md = formatPlanMarkdown(plan, {
    maxChars: 20_000,
    fullPlanUrl: "http://127.0.0.1:7070/plans/1",
    marker: "<!-- sluice:plan -->",
  });
  assert.ok(md.length <= 20_000, `${md.length} ≤ 20000`);
  assert.ok(md.startsWith("<!-- sluice:plan -->\n"));
  assert.match(
    md,
    /The plan is too long for a comment: \d+ diffs? left out\. Full plan: http:\/\/127\.0\.0\.1:7070\/plans\/1/,
  );
  assert.match(md, /\| production \| main \| 40 \| 0 \| 0 \| 📝 changes \|/);
  const unbounded = formatPlanMarkdown(plan, { maxChars: 10_000_000 });
  assert.ok(unbounded.length > 100_000);
  assert.doesNotMatch(unbounded, /too long/);
  const placeholder = formatPlanMarkdown(plan, { maxChars: 5_000 });
  assert.ok(placeholder.length <= 5_000);
  assert.match(placeholder, /\{\{sluice\.planUrl\}\}/);
});

test("--live adds what the local target would change with the head's objects", async () => {
  const root = repo();
  branch(root, "docs", { "README.md": "# app\n\nMore.\n" });
  const state = join(root, ".state");
  const r = await sluice(
    [
      "plan",
      "--base",
      "main",
      "--head",
      "docs",
      "--dir",
      root,
      "--env",
      "staging",
      "--live",
      "--state-dir",
      state,
      "-o",
      "json",
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(r.code, 2, r.stderr);
  const plan = JSON.parse(r.stdout) as RevisionPlan;
  assert.equal(plan.summary.changed, 0, "the PR itself changes nothing");
  assert.equal(plan.summary.live, 2, "but nothing runs yet: the target would create both objects");
  const live = plan.environments[0]!.units[0]!.live;
  assert.ok(live && "changeSet" in live);
  assert.deepEqual(live.changeSet.entries.map((e) => `${e.action} ${e.subject}`).sort(), [
    "created Deployment/web-staging/web",
    "created Secret/web-staging/web-credentials",
  ]);
  assert.ok(!r.stdout.includes(b64(SECRET_V1)), "live diffs are masked too");
});
