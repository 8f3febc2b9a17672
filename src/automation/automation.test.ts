import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type GitServer, git, startTestGitServer, WorkingCopy } from "../../test/support/gitserver.js";
import type { ImageUpdateAutomationSpec } from "../config/index.js";
import { isSluiceError } from "../core/index.js";
import { type AutomationObject, type LatestImages, type PullRequestRequest, runAutomation } from "./index.js";

let srv: GitServer & { root: string };
let authSrv: GitServer & { root: string };
const cleanup: string[] = [];

before(async () => {
  srv = await startTestGitServer();
  authSrv = await startTestGitServer({ auth: { username: "bot", password: "s3cret-pw" } });
});

after(async () => {
  await srv.stop();
  await authSrv.stop();
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

async function tmp(prefix = "sluice-auto-"): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  cleanup.push(d);
  return d;
}

async function clone(url: string): Promise<WorkingCopy> {
  const wc = await WorkingCopy.clone(url);
  cleanup.push(wc.dir);
  return wc;
}

function automation(
  name: string,
  spec: Partial<ImageUpdateAutomationSpec> & { git?: Partial<ImageUpdateAutomationSpec["git"]> },
): AutomationObject {
  const { git: g, ...rest } = spec;
  return {
    metadata: { name, namespace: "flux-system" },
    spec: {
      sourceRef: { kind: "GitRepository", name: "app" },
      interval: "1m",
      ...rest,
      git: {
        checkout: { ref: { branch: "main" } },
        commit: { author: { name: "flux", email: "flux@example.com" } },
        ...g,
      },
    } as ImageUpdateAutomationSpec,
  };
}

const deployment = (tag: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  namespace: default
  labels:
    app.kubernetes.io/version: "${tag}" # {"$imagepolicy": "flux-system:app:tag"}
spec:
  template:
    spec:
      containers:
        - name: nginx
          # the image follows the policy
          image: 127.0.0.1:5000/nginx:${tag} # {"$imagepolicy": "flux-system:app"}
`;

/** Waits for a barrier, at most 30 s (a run that failed before reaching it must not hang the test). */
async function bounded(p: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, 30_000)))]);
  clearTimeout(timer);
}

/** The commit object's raw text (author, committer, exact message bytes). */
async function commitObject(dir: string, rev: string): Promise<string> {
  return git(dir, ["cat-file", "commit", rev]);
}

describe("runAutomation against a real git http-backend", () => {
  test("seed 004: the marked tag is updated, committed by the configured author with the templated message, pushed", async () => {
    await srv.createRepo("seed4", {
      "clusters/flux-cluster/nginx.yml": deployment("0.0.1"),
      "README.md": "app\n",
    });
    const url = srv.repoUrl("seed4");
    const latest: LatestImages = new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.2" }]]);
    const auto = automation("nginx", {
      git: {
        commit: {
          author: { name: "flux", email: "flux@example.com" },
          messageTemplate: "{{range .Updated.Images}}{{println .}}{{end}}",
        },
        push: { branch: "main" },
      },
      update: { path: "./clusters/flux-cluster/nginx.yml", strategy: "Setters" },
    });
    const workDir = await tmp();
    const r = await runAutomation({ automation: auto, repoUrl: url, latest, workDir });
    assert.equal(r.pushed, true);
    assert.equal(r.attempts, 1);
    assert.deepEqual(r.changedFiles, ["clusters/flux-cluster/nginx.yml"]);
    assert.deepEqual(
      r.updates.map((u) => [u.file, u.line, u.from, u.to, u.setter]),
      [
        ["clusters/flux-cluster/nginx.yml", 7, "0.0.1", "0.0.2", "flux-system:app:tag"],
        [
          "clusters/flux-cluster/nginx.yml",
          14,
          "127.0.0.1:5000/nginx:0.0.1",
          "127.0.0.1:5000/nginx:0.0.2",
          "flux-system:app",
        ],
      ],
    );

    const wc = await clone(url);
    assert.equal(await wc.head(), r.commit);
    assert.equal(
      await readFile(join(wc.dir, "clusters/flux-cluster/nginx.yml"), "utf8"),
      deployment("0.0.2"),
    );
    const obj = await commitObject(wc.dir, "HEAD");
    assert.match(obj, /^author flux <flux@example\.com> \d+ \+0000$/m);
    assert.match(obj, /^committer flux <flux@example\.com> \d+ \+0000$/m);
    assert.ok(obj.endsWith("\n\n127.0.0.1:5000/nginx:0.0.2\n"), JSON.stringify(obj));
    assert.equal((await wc.run(["rev-list", "--count", "HEAD"])).trim(), "2");

    // A second run finds everything up to date: no commit, nothing pushed.
    const again = await runAutomation({ automation: auto, repoUrl: url, latest, workDir });
    assert.equal(again.commit, undefined);
    assert.equal(again.pushed, false);
    assert.deepEqual(again.changedFiles, []);
    await wc.run(["pull", "--quiet"]);
    assert.equal(await wc.head(), r.commit);
  });

  test("pushes to a push branch created from the checkout branch, then builds on it", async () => {
    await srv.createRepo("newbranch", { "deploy/app.yaml": deployment("0.0.1") });
    const url = srv.repoUrl("newbranch");
    const auto = automation("nginx", {
      git: {
        commit: { author: { name: "bot", email: "bot@example.com" } },
        push: { branch: "image-updates" },
      },
    });
    const workDir = await tmp();
    const first = await runAutomation({
      automation: auto,
      repoUrl: url,
      latest: new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.2" }]]),
      workDir,
      now: () => new Date("2024-05-23T10:00:00Z"),
    });
    assert.equal(first.branch, "image-updates");
    const wc = await clone(url);
    const mainHead = await wc.head();
    await wc.run(["fetch", "--quiet", "origin", "image-updates"]);
    assert.equal((await wc.run(["rev-parse", "FETCH_HEAD"])).trim(), first.commit);
    assert.equal((await wc.run(["rev-parse", "FETCH_HEAD^"])).trim(), mainHead, "created from main");
    assert.equal(
      await readFile(join(wc.dir, "deploy/app.yaml"), "utf8"),
      deployment("0.0.1"),
      "main untouched",
    );
    const obj = await commitObject(wc.dir, "FETCH_HEAD");
    assert.match(obj, /^author bot <bot@example\.com> 1716458400 \+0000$/m);
    assert.ok(obj.endsWith("\n\nUpdate from image update automation"), "Flux's default message");

    // A newer image: the existing push branch is built on (fast-forward), not overwritten.
    const second = await runAutomation({
      automation: auto,
      repoUrl: url,
      latest: new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.3" }]]),
      workDir: await tmp(),
    });
    await wc.run(["fetch", "--quiet", "origin", "image-updates"]);
    assert.equal((await wc.run(["rev-parse", "FETCH_HEAD"])).trim(), second.commit);
    assert.equal((await wc.run(["rev-parse", "FETCH_HEAD^"])).trim(), first.commit);
  });

  test("push.refspec pushes the push branch to a second ref too; a forcing refspec is refused", async () => {
    await srv.createRepo("refspec", { "deploy.yaml": deployment("0.0.1") });
    const url = srv.repoUrl("refspec");
    const auto = (refspec: string) =>
      automation("nginx", {
        git: {
          commit: { author: { name: "bot", email: "bot@x.test" } },
          push: { branch: "auto", refspec },
        },
      });
    const latest: LatestImages = new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.2" }]]);
    const r = await runAutomation({
      automation: auto("refs/heads/auto:refs/heads/release"),
      repoUrl: url,
      latest,
      workDir: await tmp(),
    });
    const heads = await git((await clone(url)).dir, ["ls-remote", "--heads", "origin"]);
    assert.match(heads, new RegExp(`^${r.commit}\trefs/heads/auto$`, "m"));
    assert.match(heads, new RegExp(`^${r.commit}\trefs/heads/release$`, "m"));
    await assert.rejects(
      runAutomation({
        automation: auto("+refs/heads/auto:refs/heads/main"),
        repoUrl: url,
        latest,
        workDir: await tmp(),
      }),
      (e: unknown) => isSluiceError(e, "ConfigInvalid") && /force-push/.test(e.message),
    );
  });

  test("two automations racing to push to the same branch both land, one rebased on the other", async () => {
    await srv.createRepo("race", {
      "apps/a/deploy.yaml": deployment("0.0.1").replaceAll("flux-system:app", "flux-system:a"),
      "apps/b/deploy.yaml": deployment("0.0.1").replaceAll("flux-system:app", "flux-system:b"),
    });
    const url = srv.repoUrl("race");
    const base = (await git((await clone(url)).dir, ["rev-parse", "HEAD"])).trim();
    const latest: LatestImages = new Map([
      ["flux-system:a", { image: "127.0.0.1:5000/nginx:0.0.2" }],
      ["flux-system:b", { image: "127.0.0.1:5000/nginx:0.0.3" }],
    ]);
    // Both commit on the same base before either pushes: exactly one push is rejected.
    let ready = 0;
    let release!: () => void;
    const barrier = new Promise<void>((r) => {
      release = r;
    });
    const beforePush = async () => {
      if (++ready === 2) release();
      await bounded(barrier);
    };
    const run = async (name: string, path: string) =>
      runAutomation({
        automation: automation(name, {
          git: {
            commit: { author: { name, email: `${name}@example.com` }, messageTemplate: `update by ${name}` },
          },
          update: { path },
        }),
        repoUrl: url,
        latest,
        workDir: await tmp(),
        beforePush,
      });
    const [ra, rb] = await Promise.all([run("auto-a", "apps/a"), run("auto-b", "apps/b")]);
    assert.ok(ra.pushed && rb.pushed);
    assert.deepEqual([ra.attempts, rb.attempts].sort(), [1, 2]);

    const wc = await clone(url);
    const log = (await wc.run(["log", "--format=%H %P|%s"])).trim().split("\n");
    assert.equal(log.length, 3, log.join("\n"));
    assert.equal((await wc.run(["rev-list", "--merges", "HEAD"])).trim(), "", "no merge commits");
    const [top, second] = log.map((l) => l.split("|"));
    const [topSha, topParent] = top![0]!.split(" ");
    const [secondSha, secondParent] = second![0]!.split(" ");
    assert.equal(topParent, secondSha, "linear: the later commit sits on the earlier one");
    assert.equal(secondParent, base);
    const winner = ra.attempts === 1 ? ra : rb;
    const rebased = ra.attempts === 1 ? rb : ra;
    assert.equal(secondSha, winner.commit);
    assert.equal(topSha, rebased.commit);
    assert.deepEqual([top![1], second![1]].sort(), ["update by auto-a", "update by auto-b"]);
    assert.match(await readFile(join(wc.dir, "apps/a/deploy.yaml"), "utf8"), /nginx:0\.0\.2 #/);
    assert.match(await readFile(join(wc.dir, "apps/b/deploy.yaml"), "utf8"), /nginx:0\.0\.3 #/);
  });

  test("a conflicting race is redone from the new head; an identical one becomes no commit", async () => {
    await srv.createRepo("conflict", { "deploy.yaml": deployment("0.0.1") });
    const url = srv.repoUrl("conflict");
    const barrierOf = () => {
      let n = 0;
      let release!: () => void;
      const p = new Promise<void>((r) => {
        release = r;
      });
      return async () => {
        if (++n === 2) release();
        await bounded(p);
      };
    };
    const run = async (name: string, tag: string, beforePush: () => Promise<void>) =>
      runAutomation({
        automation: automation(name, { git: { commit: { author: { name, email: `${name}@x.test` } } } }),
        repoUrl: url,
        latest: new Map([["flux-system:app", { image: `127.0.0.1:5000/nginx:${tag}` }]]),
        workDir: await tmp(),
        beforePush,
      });
    // Same line, different images: the rebase conflicts, the loser redoes its update on the winner's commit.
    const b1 = barrierOf();
    const [r1, r2] = await Promise.all([run("one", "0.0.2", b1), run("two", "0.0.3", b1)]);
    const loser = r1.attempts === 2 ? r1 : r2;
    const winner = r1.attempts === 2 ? r2 : r1;
    assert.ok(winner.pushed && loser.pushed);
    const wc = await clone(url);
    assert.equal(await wc.head(), loser.commit);
    assert.equal((await wc.run(["rev-parse", "HEAD^"])).trim(), winner.commit);
    const loserTag = loser === r1 ? "0.0.2" : "0.0.3";
    const winnerTag = winner === r1 ? "0.0.2" : "0.0.3";
    assert.equal(await readFile(join(wc.dir, "deploy.yaml"), "utf8"), deployment(loserTag));
    assert.deepEqual(
      loser.updates.map((u) => [u.from.replace(/.*:/, ""), u.to.replace(/.*:/, "")]),
      [
        [winnerTag, loserTag],
        [winnerTag, loserTag],
      ],
      "redone from the winner's content",
    );

    // Same change twice: the second finds it already there after rebasing, and makes no commit.
    const b2 = barrierOf();
    const [s1, s2] = await Promise.all([run("three", "0.0.9", b2), run("four", "0.0.9", b2)]);
    const pushed = [s1, s2].filter((r) => r.pushed);
    assert.equal(pushed.length, 1);
    const other = [s1, s2].find((r) => !r.pushed)!;
    assert.equal(other.commit, undefined);
    await wc.run(["pull", "--quiet"]);
    assert.equal(await wc.head(), pushed[0]!.commit);
    assert.equal(await readFile(join(wc.dir, "deploy.yaml"), "utf8"), deployment("0.0.9"));
  });

  test("push.pullRequest pushes to a separate branch and calls the forge hook", async () => {
    await srv.createRepo("pr", { "deploy.yaml": deployment("0.0.1") });
    const url = srv.repoUrl("pr");
    const requests: PullRequestRequest[] = [];
    const auto = automation("nginx", {
      git: {
        commit: {
          author: { name: "bot", email: "bot@x.test" },
          messageTemplate: "Update images\n\n{{ range .Updated.Images }}- {{ . }}\n{{ end }}",
        },
        push: { pullRequest: true } as NonNullable<ImageUpdateAutomationSpec["git"]["push"]>,
      },
    });
    const r = await runAutomation({
      automation: auto,
      repoUrl: url,
      latest: new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.2" }]]),
      workDir: await tmp(),
      openPullRequest: async (req) => {
        requests.push(req);
        return { url: "http://127.0.0.1/pr/1" };
      },
    });
    assert.equal(r.branch, "sluice/image-update/flux-system/nginx");
    assert.deepEqual(r.pullRequest, { url: "http://127.0.0.1/pr/1", branch: r.branch });
    assert.equal(requests.length, 1);
    assert.deepEqual(
      { ...requests[0], body: undefined },
      {
        repoUrl: url,
        head: "sluice/image-update/flux-system/nginx",
        base: "main",
        title: "Update images",
        body: undefined,
        commit: r.commit,
        automation: { namespace: "flux-system", name: "nginx" },
      },
    );
    assert.equal(requests[0]!.body, "Update images\n\n- 127.0.0.1:5000/nginx:0.0.2\n");
    const wc = await clone(url);
    assert.equal(await readFile(join(wc.dir, "deploy.yaml"), "utf8"), deployment("0.0.1"), "main untouched");
    await wc.run(["fetch", "--quiet", "origin", r.branch]);
    assert.equal((await wc.run(["rev-parse", "FETCH_HEAD"])).trim(), r.commit);

    // Without a forge hook the automation is refused before any git work.
    const workDir = join(await tmp(), "never");
    await assert.rejects(
      runAutomation({ automation: auto, repoUrl: url, latest: new Map(), workDir }),
      (e: unknown) => isSluiceError(e, "ConfigInvalid") && /pullRequest needs a forge/.test(e.message),
    );
    assert.equal(existsSync(workDir), false);
  });

  test("a marker naming an unknown policy fails the run and pushes nothing; a bad template fails before git", async () => {
    await srv.createRepo("unknown", {
      "a.yaml": deployment("0.0.1"),
      "b.yaml": 'image: x:1 # {"$imagepolicy": "flux-system:missing"}\n',
    });
    const url = srv.repoUrl("unknown");
    const before = (await git((await clone(url)).dir, ["rev-parse", "HEAD"])).trim();
    await assert.rejects(
      runAutomation({
        automation: automation("x", {}),
        repoUrl: url,
        latest: new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.2" }]]),
        workDir: await tmp(),
      }),
      (e: unknown) => isSluiceError(e, "ConfigInvalid") && /b\.yaml:1: .*flux-system:missing/.test(e.message),
    );
    const wc = await clone(url);
    assert.equal(await wc.head(), before);

    const workDir = join(await tmp(), "never");
    await assert.rejects(
      runAutomation({
        automation: automation("x", {
          git: { commit: { author: { name: "a", email: "a@x" }, messageTemplate: "{{ .Updated.Nope }}" } },
        }),
        repoUrl: url,
        latest: new Map(),
        workDir,
      }),
      (e: unknown) =>
        isSluiceError(e, "ConfigInvalid") && /messageTemplate: line 1, column 12/.test(e.message),
    );
    assert.equal(existsSync(workDir), false);
  });

  test("credentials travel in a header and never appear in errors", async () => {
    await authSrv.createRepo("private", { "deploy.yaml": deployment("0.0.1") });
    const url = authSrv.repoUrl("private");
    const latest: LatestImages = new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.2" }]]);
    const r = await runAutomation({
      automation: automation("x", {}),
      repoUrl: url,
      latest,
      workDir: await tmp(),
      auth: { username: "bot", password: "s3cret-pw" },
    });
    assert.equal(r.pushed, true);
    await assert.rejects(
      runAutomation({
        automation: automation("x", {}),
        repoUrl: url,
        latest,
        workDir: await tmp(),
        auth: { username: "bot", password: "wrong-pw" },
      }),
      (e: unknown) =>
        isSluiceError(e, "ArtifactFailed") && !e.message.includes("wrong-pw") && /ls-remote/.test(e.message),
    );
    const workDir = await tmp();
    await runAutomation({
      automation: automation("x", {}),
      repoUrl: url,
      latest: new Map([["flux-system:app", { image: "127.0.0.1:5000/nginx:0.0.3" }]]),
      workDir,
      auth: { username: "bot", password: "s3cret-pw" },
    });
    assert.doesNotMatch(await readFile(join(workDir, ".git/config"), "utf8"), /s3cret|Authorization/);
  });
});
