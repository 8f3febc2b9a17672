/**
 * Forges through their official clients (`@octokit/rest`, `@gitbeaker/rest`) against the local
 * recorder (src/forges/_testkit.ts, the only forge stand-in), pull-request webhooks with the
 * forges' own example payloads, and the pull-request plan loop over a real Git repository.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { isSluiceError } from "../src/core/index.js";
import { ForgeRecorder } from "../src/forges/_testkit.js";
import {
  createForge,
  PLAN_MARKER,
  type PullRequestEvent,
  parsePullRequestWebhook,
  publishPullRequestPlan,
} from "../src/forges/index.js";
import { planRevisions } from "../src/plan/index.js";
import { tree } from "./support/tmp.js";

const GH_TOKEN = "ghp_recorderToken0123456789";
const GL_TOKEN = "glpat-recorderToken0123456789";
let rec: ForgeRecorder;

before(async () => {
  rec = await ForgeRecorder.start({ githubToken: GH_TOKEN, gitlabToken: GL_TOKEN });
});
after(async () => {
  await rec.stop();
});

const github = () => createForge({ type: "github", address: `${rec.url}/acme/app`, token: GH_TOKEN });
const gitlab = () =>
  createForge({ type: "gitlab", address: `${rec.url}/acme/platform/app`, token: GL_TOKEN });

test("GitHub: one comment per pull request, found by its marker and edited in place", async () => {
  const gh = github();
  const before = rec.calls.length;
  // Someone else's comments first, over two pages: the marker is found on page 2.
  for (let i = 0; i < 130; i++)
    rec.githubComments.push({ id: 1 + i, issue: 12, body: `LGTM ${i}`, created_at: "", updated_at: "" });
  const c1 = await gh.upsertComment(12, PLAN_MARKER, "### plan 1");
  assert.equal(c1.created, true);
  const c2 = await gh.upsertComment(12, PLAN_MARKER, "### plan 2");
  assert.deepEqual(c2, { id: c1.id, created: false });
  const calls = rec.calls
    .slice(before)
    .map((c) => `${c.method} ${c.path}${c.query.page ? `?page=${c.query.page}` : ""}`);
  assert.deepEqual(calls, [
    "GET /repos/acme/app/issues/12/comments",
    "GET /repos/acme/app/issues/12/comments?page=2",
    "POST /repos/acme/app/issues/12/comments",
    "GET /repos/acme/app/issues/12/comments",
    "GET /repos/acme/app/issues/12/comments?page=2",
    `PATCH /repos/acme/app/issues/comments/${c1.id}`,
  ]);
  const post = rec.callsOf("github", "POST", /comments$/).at(-1)!;
  assert.deepEqual(post.body, { body: `${PLAN_MARKER}\n### plan 1` });
  assert.equal(post.headers.authorization, `token ${GH_TOKEN}`);
  assert.equal(rec.callsOf("github", "GET", /comments$/).at(-1)!.query.per_page, "100");
  assert.deepEqual(rec.callsOf("github", "PATCH").at(-1)!.body, { body: `${PLAN_MARKER}\n### plan 2` });
  assert.equal(rec.githubComments.filter((c) => c.body.includes(PLAN_MARKER)).length, 1);
});

test("GitHub: commit statuses and opening or updating a pull request", async () => {
  const gh = github();
  const sha = "a".repeat(40);
  await gh.setStatus(sha, "sluice/plan", "pending", "planning", "http://127.0.0.1:7070/plans/1");
  await gh.setStatus(sha, "sluice/plan", "success", `x${"y".repeat(300)}`);
  const st = rec.callsOf("github", "POST", /^\/repos\/acme\/app\/statuses\//);
  assert.equal(st.length, 2);
  assert.equal(st[0]!.path, `/repos/acme/app/statuses/${sha}`);
  assert.deepEqual(st[0]!.body, {
    state: "pending",
    context: "sluice/plan",
    description: "planning",
    target_url: "http://127.0.0.1:7070/plans/1",
  });
  assert.equal((st[1]!.body as { description: string }).description.length, 140);

  const before = rec.calls.length;
  const p1 = await gh.openOrUpdatePullRequest({
    head: "sluice/images",
    base: "main",
    title: "Update images",
    body: "a",
  });
  assert.equal(p1.created, true);
  assert.equal(p1.url, `${rec.url}/acme/app/pull/${p1.number}`);
  const p2 = await gh.openOrUpdatePullRequest({
    head: "sluice/images",
    base: "main",
    title: "Update images (2)",
    body: "b",
  });
  assert.deepEqual(p2, { ...p1, created: false });
  const calls = rec.calls.slice(before);
  assert.deepEqual(
    calls.map((c) => `${c.method} ${c.path}`),
    [
      "GET /repos/acme/app/pulls",
      "POST /repos/acme/app/pulls",
      "GET /repos/acme/app/pulls",
      `PATCH /repos/acme/app/pulls/${p1.number}`,
    ],
  );
  assert.deepEqual(calls[0]!.query, {
    state: "open",
    head: "acme:sluice/images",
    base: "main",
    per_page: "10",
  });
  assert.deepEqual(calls[1]!.body, {
    head: "sluice/images",
    base: "main",
    title: "Update images",
    body: "a",
  });
  assert.deepEqual(calls[3]!.body, { title: "Update images (2)", body: "b" });
});

test("GitHub: a bad token or an outage is a SluiceError that names the status, never the token", async () => {
  const bad = createForge({ type: "github", address: `${rec.url}/acme/app`, token: "ghp_wrong-token-value" });
  await assert.rejects(bad.setStatus("b".repeat(40), "sluice/plan", "pending", "x"), (e: unknown) => {
    assert.ok(isSluiceError(e, "Unauthorized"));
    assert.match(e.message, /GitHub acme\/app: setting status sluice\/plan on bbbbbbbbbb failed: HTTP 401/);
    assert.ok(!e.message.includes("wrong-token"));
    return true;
  });
  rec.fail("POST", /statuses/, 503, 1);
  await assert.rejects(github().setStatus("c".repeat(40), "x", "success", "y"), (e: unknown) =>
    isSluiceError(e, "TargetUnavailable"),
  );
});

test("GitLab: one note per merge request, statuses, and opening or updating a merge request", async () => {
  const gl = gitlab();
  const before = rec.calls.length;
  rec.gitlabNotes.push({
    id: 1,
    iid: 3,
    body: "added 1 commit",
    system: true,
    created_at: "",
    updated_at: "",
  });
  const n1 = await gl.upsertComment(3, PLAN_MARKER, "### plan 1");
  const n2 = await gl.upsertComment(3, PLAN_MARKER, "### plan 2");
  assert.equal(n1.created, true);
  assert.deepEqual(n2, { id: n1.id, created: false });
  const sha = "d".repeat(40);
  await gl.setStatus(sha, "sluice/plan/staging", "pending", "planning");
  await gl.setStatus(sha, "sluice/plan/staging", "failure", "does not render", "http://127.0.0.1:7070/p");
  const m1 = await gl.openOrUpdatePullRequest({
    head: "sluice/images",
    base: "main",
    title: "Images",
    body: "a",
  });
  const m2 = await gl.openOrUpdatePullRequest({
    head: "sluice/images",
    base: "main",
    title: "Images 2",
    body: "b",
  });
  assert.equal(m1.created, true);
  assert.deepEqual(m2, { ...m1, created: false });
  assert.equal(m1.url, `${rec.url}/acme/platform/app/-/merge_requests/${m1.number}`);

  const calls = rec.calls.slice(before);
  assert.deepEqual(
    calls.map((c) => `${c.method} ${c.path}`),
    [
      "GET /projects/acme/platform/app/merge_requests/3/notes",
      "POST /projects/acme/platform/app/merge_requests/3/notes",
      "GET /projects/acme/platform/app/merge_requests/3/notes",
      `PUT /projects/acme/platform/app/merge_requests/3/notes/${n1.id}`,
      `POST /projects/acme/platform/app/statuses/${sha}`,
      `POST /projects/acme/platform/app/statuses/${sha}`,
      "GET /projects/acme/platform/app/merge_requests",
      "POST /projects/acme/platform/app/merge_requests",
      "GET /projects/acme/platform/app/merge_requests",
      `PUT /projects/acme/platform/app/merge_requests/${m1.number}`,
    ],
  );
  for (const c of calls) assert.equal(c.headers["private-token"], GL_TOKEN);
  assert.deepEqual(calls[1]!.body, { body: `${PLAN_MARKER}\n### plan 1` });
  assert.deepEqual(calls[3]!.body, { body: `${PLAN_MARKER}\n### plan 2` });
  assert.deepEqual(calls[4]!.body, {
    state: "pending",
    name: "sluice/plan/staging",
    description: "planning",
  });
  assert.deepEqual(calls[5]!.body, {
    state: "failed",
    name: "sluice/plan/staging",
    description: "does not render",
    target_url: "http://127.0.0.1:7070/p",
  });
  assert.equal(calls[6]!.query.source_branch, "sluice/images");
  assert.equal(calls[6]!.query.target_branch, "main");
  assert.equal(calls[6]!.query.state, "opened");
  assert.deepEqual(calls[7]!.body, {
    source_branch: "sluice/images",
    target_branch: "main",
    title: "Images",
    description: "a",
  });
  assert.deepEqual(calls[9]!.body, { title: "Images 2", description: "b" });

  const bad = createForge({ type: "gitlab", address: `${rec.url}/42`, token: "glpat-nope" });
  await assert.rejects(bad.upsertComment(1, PLAN_MARKER, "x"), (e: unknown) => {
    assert.ok(isSluiceError(e, "Unauthorized"));
    assert.ok(!e.message.includes("glpat-nope"));
    return true;
  });
  assert.equal(rec.calls.at(-1)!.path, "/projects/42/merge_requests/1/notes");
});

// --- webhooks ---------------------------------------------------------------------------------

const require = createRequire(import.meta.url);
interface Def {
  name: string;
  examples: Record<string, unknown>[];
}
const examples = (require("@octokit/webhooks-examples") as Def[]).find(
  (d) => d.name === "pull_request",
)!.examples;
const SECRET = "webhook-secret-token";

function signedGithub(payload: unknown, event = "pull_request", secret = SECRET) {
  const body = Buffer.from(JSON.stringify(payload));
  return {
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
      "x-hub-signature-256": `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`,
    },
    body,
  };
}

test("GitHub pull_request webhooks (@octokit/webhooks-examples): verified and typed", () => {
  const seen = new Set<string>();
  for (const ex of examples) {
    const v = parsePullRequestWebhook("github", SECRET, signedGithub(ex));
    assert.equal(v.ok, true);
    if (!v.ok) continue;
    const action = ex.action as string;
    if (["opened", "synchronize", "reopened", "closed"].includes(action)) {
      assert.ok(v.event, action);
      const pr = ex.pull_request as Record<string, any>;
      assert.deepEqual(
        { ...v.event, repoUrls: undefined },
        {
          forge: "github",
          action,
          number: ex.number,
          headRef: pr.head.ref,
          headSha: pr.head.sha,
          baseRef: pr.base.ref,
          merged: pr.merged === true,
          repoUrl: pr.base.repo.clone_url,
          repoUrls: undefined,
          repository: pr.base.repo.full_name,
          fork: pr.head.repo.full_name !== pr.base.repo.full_name,
          headFetchRef: `refs/pull/${ex.number}/head`,
          title: pr.title,
          url: pr.html_url,
        },
      );
      assert.ok(v.event.repoUrls.includes("https://github.com/Codertocat/Hello-World.git"));
      assert.equal(v.deliveryId, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
      seen.add(action);
    } else assert.equal(v.event, null, action);
  }
  assert.deepEqual([...seen].sort(), ["closed", "opened", "reopened", "synchronize"]);

  const opened = examples.find((e) => e.action === "opened")!;
  const tampered = signedGithub(opened);
  tampered.body = Buffer.from(tampered.body.toString().replace("Hello-World", "Hello-Worlds"));
  assert.deepEqual(parsePullRequestWebhook("github", SECRET, tampered), {
    ok: false,
    reason: "signature mismatch",
  });
  assert.equal(parsePullRequestWebhook("github", "another-secret", signedGithub(opened)).ok, false);
  const unsigned = signedGithub(opened);
  delete (unsigned.headers as Record<string, string | undefined>)["x-hub-signature-256"];
  assert.equal(parsePullRequestWebhook("github", SECRET, unsigned).ok, false);
  const push = parsePullRequestWebhook("github", SECRET, signedGithub({ ref: "refs/heads/main" }, "push"));
  assert.deepEqual(push.ok && push.event, null);
  // A retarget (edited with a base change) plans again.
  const edited = { ...opened, action: "edited", changes: { base: { ref: { from: "develop" } } } };
  const r = parsePullRequestWebhook("github", SECRET, signedGithub(edited));
  assert.equal(r.ok && r.event?.action, "synchronize");
});

const gitlabPayload = JSON.parse(
  readFileSync(new URL("../src/forges/testdata/gitlab-merge-request-hook.json", import.meta.url), "utf8"),
) as Record<string, any>;

function gitlabDelivery(payload: unknown, token = SECRET, event = "Merge Request Hook") {
  return {
    headers: { "content-type": "application/json", "x-gitlab-event": event, "x-gitlab-token": token },
    body: Buffer.from(JSON.stringify(payload)),
  };
}

test("GitLab Merge Request Hook (GitLab's documented payload): verified and typed", () => {
  const v = parsePullRequestWebhook("gitlab", SECRET, gitlabDelivery(gitlabPayload));
  assert.ok(v.ok && v.event);
  assert.deepEqual(v.event, {
    forge: "gitlab",
    action: "opened",
    number: 1,
    headRef: "ms-viewport",
    headSha: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    baseRef: "master",
    merged: false,
    repoUrl: "http://example.com/awesome_space/awesome_project.git",
    repoUrls: [
      "http://example.com/awesome_space/awesome_project.git",
      "http://example.com/awesome_space/awesome_project",
      "git@example.com:awesome_space/awesome_project.git",
    ],
    repository: "awesome_space/awesome_project",
    projectId: 14,
    fork: false,
    headFetchRef: "refs/merge-requests/1/head",
    title: "MS-Viewport",
    url: "http://example.com/diaspora/merge_requests/1",
  });
  const attrs = gitlabPayload.object_attributes;
  const variant = (a: Record<string, unknown>) => ({
    ...gitlabPayload,
    object_attributes: { ...attrs, ...a },
  });
  const push = parsePullRequestWebhook(
    "gitlab",
    SECRET,
    gitlabDelivery(variant({ action: "update", oldrev: "f".repeat(40) })),
  );
  assert.equal(push.ok && push.event?.action, "synchronize");
  const title = parsePullRequestWebhook("gitlab", SECRET, gitlabDelivery(variant({ action: "update" })));
  assert.ok(title.ok && title.event === null && /update needs no plan/.test(title.ignored));
  const merged = parsePullRequestWebhook(
    "gitlab",
    SECRET,
    gitlabDelivery(variant({ action: "merge", state: "merged" })),
  );
  assert.ok(merged.ok && merged.event?.action === "closed" && merged.event.merged);
  const closed = parsePullRequestWebhook(
    "gitlab",
    SECRET,
    gitlabDelivery(variant({ action: "close", state: "closed" })),
  );
  assert.ok(closed.ok && closed.event?.action === "closed" && !closed.event.merged);
  assert.deepEqual(parsePullRequestWebhook("gitlab", SECRET, gitlabDelivery(gitlabPayload, "wrong")), {
    ok: false,
    reason: "token mismatch",
  });
  const pushHook = parsePullRequestWebhook(
    "gitlab",
    SECRET,
    gitlabDelivery({ object_kind: "push" }, SECRET, "Push Hook"),
  );
  assert.ok(pushHook.ok && pushHook.event === null);
});

// --- the pull-request loop --------------------------------------------------------------------

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

function write(root: string, files: Record<string, string>) {
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), c);
  }
}

const APPS = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: app, namespace: flux-system }
spec: { url: "http://127.0.0.1:9/app.git", interval: 1m }
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: { name: web, namespace: flux-system }
spec: { sourceRef: { kind: GitRepository, name: app }, path: "./deploy/\${OVERLAY}", interval: 5m, prune: true }
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: { name: envs, namespace: flux-system }
spec:
  sourceRef: { name: app }
  rules:
    - { branch: main, name: production, vars: { OVERLAY: production } }
    - { branch: staging, name: staging, vars: { OVERLAY: staging } }
`;
const overlay = (ns: string, replicas: number) =>
  `namespace: ${ns}\nresources: [../base]\nreplicas: [{ name: web, count: ${replicas} }]\n`;
const BASE = {
  "deploy/base/kustomization.yaml": "resources: [web.yaml]\n",
  "deploy/base/web.yaml":
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  replicas: 1\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [{ name: web, image: 127.0.0.1:5000/web:1 }] }\n",
};

/** A GitHub `pull_request` delivery for our repository, built on the documented example. */
function prDelivery(action: string, headSha: string, base: string, head: string) {
  const ex = structuredClone(examples.find((e) => e.action === action)!) as Record<string, any>;
  ex.number = 21;
  ex.pull_request.number = 21;
  ex.pull_request.head.sha = headSha;
  ex.pull_request.head.ref = head;
  ex.pull_request.base.ref = base;
  return signedGithub(ex);
}

test("the pull-request loop: plan comment created then updated in place, statuses pending → success", async () => {
  const root = tree({}, "sluice-prloop-");
  git(root, "init", "-q", "-b", "main");
  write(root, {
    "sluice/apps.yaml": APPS,
    ...BASE,
    "deploy/production/kustomization.yaml": overlay("prod", 3),
    "deploy/staging/kustomization.yaml": overlay("stg", 2),
  });
  git(root, "add", "-A");
  git(root, "commit", "-qm", "initial");
  git(root, "checkout", "-qb", "more-staging");
  write(root, { "deploy/staging/kustomization.yaml": overlay("stg", 4) });
  git(root, "commit", "-qam", "staging to 4");
  const sha1 = git(root, "rev-parse", "HEAD").trim();

  const gh = github();
  const planUrl = "http://127.0.0.1:7070/ui/plans/acme/app/21";
  const run = async (ev: PullRequestEvent) =>
    publishPullRequestPlan({
      forge: gh,
      event: ev,
      planUrl,
      plan: (hooks) =>
        planRevisions({
          repo: root,
          base: ev.baseRef,
          head: ev.headSha,
          branches: [ev.headRef],
          pullRequest: { number: ev.number, headRef: ev.headRef, baseRef: ev.baseRef },
          ...hooks,
        }),
    });
  const statusesBefore = rec.githubStatuses.length;
  const callsBefore = rec.calls.length;

  const v1 = parsePullRequestWebhook("github", SECRET, prDelivery("opened", sha1, "main", "more-staging"));
  assert.ok(v1.ok && v1.event);
  const r1 = await run(v1.event);
  assert.equal(r1.plan?.exitCode, 2);
  assert.equal(r1.comment?.created, true);
  const comment = rec.githubComments.find((c) => c.id === r1.comment!.id)!;
  assert.ok(comment.body.startsWith(`${PLAN_MARKER}\n### Sluice plan: \`main`));
  assert.match(comment.body, /\| staging \| staging \| 0 \| 1 \| 0 \| 📝 changes \|/);
  assert.match(comment.body, /\| production \| main \| 0 \| 0 \| 0 \| ✅ no changes \|/);
  assert.match(comment.body, /- {2}replicas: 2\n\+ {2}replicas: 4/);
  const s1 = rec.githubStatuses
    .slice(statusesBefore)
    .map((s) => `${s.sha === sha1 ? "sha1" : s.sha} ${s.context} ${s.state}`);
  assert.deepEqual(s1, [
    "sha1 sluice/plan pending",
    "sha1 sluice/plan/production pending",
    "sha1 sluice/plan/staging pending",
    "sha1 sluice/plan/production success",
    "sha1 sluice/plan/staging success",
    "sha1 sluice/plan success",
  ]);
  const final = rec.githubStatuses.at(-1)!;
  assert.equal(final.target_url, planUrl);
  assert.match(final.description!, /^Plan: 1 environment changes/);
  assert.equal(
    rec.githubStatuses.find((s) => s.context === "sluice/plan/staging" && s.state === "success")!.description,
    "0 to create, 1 to update, 0 to delete",
  );

  // Re-push: another commit on the branch; the same comment is edited, new statuses for the new head.
  write(root, { "deploy/staging/kustomization.yaml": overlay("stg", 5) });
  git(root, "commit", "-qam", "staging to 5");
  const sha2 = git(root, "rev-parse", "HEAD").trim();
  const statuses2 = rec.githubStatuses.length;
  const v2 = parsePullRequestWebhook(
    "github",
    SECRET,
    prDelivery("synchronize", sha2, "main", "more-staging"),
  );
  assert.ok(v2.ok && v2.event?.action === "synchronize");
  const r2 = await run(v2.event);
  assert.deepEqual(r2.comment, { id: r1.comment!.id, created: false });
  assert.match(rec.githubComments.find((c) => c.id === r1.comment!.id)!.body, /\+ {2}replicas: 5/);
  const loop = rec.calls.slice(callsBefore).filter((c) => /comments/.test(c.path) && c.method !== "GET");
  assert.deepEqual(
    loop.map((c) => `${c.method} ${c.path}`),
    ["POST /repos/acme/app/issues/21/comments", `PATCH /repos/acme/app/issues/comments/${r1.comment!.id}`],
  );
  assert.deepEqual(
    rec.githubStatuses
      .slice(statuses2)
      .filter((s) => s.context === "sluice/plan")
      .map((s) => `${s.sha === sha2} ${s.state}`),
    ["true pending", "true success"],
  );

  // A head that does not render: the environment's status fails, and so does the plan's.
  write(root, { "deploy/staging/kustomization.yaml": "resources: [../nowhere]\n" });
  git(root, "commit", "-qam", "break staging");
  const sha3 = git(root, "rev-parse", "HEAD").trim();
  const v3 = parsePullRequestWebhook(
    "github",
    SECRET,
    prDelivery("synchronize", sha3, "main", "more-staging"),
  );
  assert.ok(v3.ok && v3.event);
  const r3 = await run(v3.event);
  assert.equal(r3.plan?.exitCode, 1);
  const last = rec.githubStatuses.filter((s) => s.sha === sha3 && s.state !== "pending");
  assert.deepEqual(
    last.map((s) => `${s.context} ${s.state}`),
    ["sluice/plan/production success", "sluice/plan/staging failure", "sluice/plan failure"],
  );
  // Closed: nothing is posted.
  const n = rec.calls.length;
  const closed = parsePullRequestWebhook(
    "github",
    SECRET,
    prDelivery("closed", sha3, "main", "more-staging"),
  );
  assert.ok(closed.ok && closed.event);
  assert.deepEqual(await run(closed.event), { skipped: "the pull request is closed" });
  assert.equal(rec.calls.length, n);
});

test("the pull-request loop on GitLab: a plan that cannot run says so on the merge request", async () => {
  const gl = gitlab();
  const ev = parsePullRequestWebhook("gitlab", SECRET, gitlabDelivery(gitlabPayload));
  assert.ok(ev.ok && ev.event);
  const r = await publishPullRequestPlan({
    forge: gl,
    event: ev.event,
    plan: () => planRevisions({ repo: tree({}), base: "master", head: ev.event!.headSha }),
  });
  assert.match(r.error!, /not inside a Git repository|not a commit/);
  const note = rec.gitlabNotes.find((x) => x.id === r.comment!.id)!;
  assert.match(note.body, /The plan could not run/);
  assert.deepEqual(
    rec.gitlabStatuses.filter((s) => s.sha === ev.event!.headSha).map((s) => `${s.context} ${s.state}`),
    ["sluice/plan pending", "sluice/plan failed"],
  );
});

test("the server's way: base and pull-request head fetched by the Git source, planned, posted to GitLab", async (t) => {
  const { startTestGitServer, WorkingCopy } = await import("./support/gitserver.js");
  const { GitSource } = await import("../src/source/index.js");
  const { planTrees } = await import("../src/plan/index.js");
  const srv = await startTestGitServer();
  t.after(() => srv.stop());
  await srv.createRepo(
    "app",
    {
      "sluice/apps.yaml": APPS,
      ...BASE,
      "deploy/production/kustomization.yaml": overlay("prod", 3),
      "deploy/staging/kustomization.yaml": overlay("stg", 2),
    },
    "main",
  );
  const wc = await WorkingCopy.clone(srv.repoUrl("app"));
  t.after(() => wc.remove());
  await wc.branch("bump-prod");
  await wc.write({ "deploy/production/kustomization.yaml": overlay("prod", 6) });
  const head = await wc.commit("prod to 6");
  // What the forge does for a merge request: the head under refs/merge-requests/N/head.
  await wc.run(["push", "--quiet", "origin", "HEAD:refs/merge-requests/1/head"]);

  const ev = parsePullRequestWebhook(
    "gitlab",
    SECRET,
    gitlabDelivery({
      ...gitlabPayload,
      object_attributes: {
        ...gitlabPayload.object_attributes,
        source_branch: "bump-prod",
        target_branch: "main",
        last_commit: { ...gitlabPayload.object_attributes.last_commit, id: head },
      },
    }),
  );
  assert.ok(ev.ok && ev.event);
  const e = ev.event;
  const source = new GitSource({ cacheDir: tree({}, "sluice-prsrc-") });
  const spec = { url: srv.repoUrl("app") };
  const gl = gitlab();
  const r = await publishPullRequestPlan({
    forge: gl,
    event: e,
    plan: async (hooks) => {
      const base = await source.fetch("flux-system/app", { ...spec, ref: { branch: e.baseRef } });
      const pr = await source.fetch("flux-system/app", { ...spec, ref: { name: e.headFetchRef } });
      assert.equal(pr.commit, e.headSha);
      return planTrees({
        base: { dir: base.dir, label: e.baseRef, commit: base.commit, branch: e.baseRef },
        head: { dir: pr.dir, label: `!${e.number}`, commit: pr.commit, branch: e.headRef },
        configPath: "sluice",
        source: "flux-system/app",
        pullRequest: { number: e.number, headRef: e.headRef, baseRef: e.baseRef },
        ...hooks,
      });
    },
  });
  assert.equal(r.plan?.exitCode, 2);
  assert.deepEqual(
    r.plan?.environments.map((x) => `${x.name} ${x.status}`),
    ["production changed", "staging unchanged"],
  );
  const note = rec.gitlabNotes.find((n) => n.id === r.comment!.id)!;
  assert.match(note.body, /- {2}replicas: 3\n\+ {2}replicas: 6/);
  assert.deepEqual(
    rec.gitlabStatuses.filter((s) => s.sha === head).map((s) => `${s.context} ${s.state}`),
    [
      "sluice/plan pending",
      "sluice/plan/production pending",
      "sluice/plan/staging pending",
      "sluice/plan/production success",
      "sluice/plan/staging success",
      "sluice/plan success",
    ],
  );
});
