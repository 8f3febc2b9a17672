import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  type GitServer,
  type RefUpdate,
  startTestGitServer,
  WorkingCopy,
  waitFor,
} from "../../test/support/gitserver.js";
import { isSluiceError, type SluiceError } from "../core/index.js";
import { type FetchObservation, GitSource } from "./index.js";

const SHA = /^[0-9a-f]{40}$/;

let srv: GitServer & { root: string };
let cacheDir: string;
let source: GitSource;
const pushes: { repo: string; refs: RefUpdate[] }[] = [];
const requests: { path: string; status: number; contentEncoding?: string; chunked: boolean }[] = [];
const observations: FetchObservation[] = [];
const cleanup: string[] = [];

before(async () => {
  srv = await startTestGitServer({
    onPush: (repo, refs) => pushes.push({ repo, refs }),
    onRequest: (r) => requests.push(r),
  });
  cacheDir = await mkdtemp(join(tmpdir(), "sluice-cache-"));
  source = new GitSource({ cacheDir, onFetch: (o) => observations.push(o) });
});

after(async () => {
  await srv.stop();
  await rm(cacheDir, { recursive: true, force: true });
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

async function tempCache(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "sluice-cache-"));
  cleanup.push(d);
  return d;
}

async function clone(repo: string): Promise<WorkingCopy> {
  const wc = await WorkingCopy.clone(srv.repoUrl(repo));
  cleanup.push(wc.dir);
  return wc;
}

function failure(e: unknown): SluiceError {
  assert.ok(isSluiceError(e), `expected a SluiceError, got ${String(e)}`);
  return e;
}

describe("GitSource against a real git http-backend", () => {
  test("fetches a branch into a read-only snapshot named by its commit, with a Flux revision", async () => {
    await srv.createRepo("app", { "deploy/app.yaml": "kind: ConfigMap\n", "run.sh": "#!/bin/sh\necho hi\n" });
    const a = await source.fetch("app", { url: srv.repoUrl("app"), ref: { branch: "main" } });
    assert.match(a.commit, SHA);
    assert.equal(a.revision, `main@sha1:${a.commit}`);
    assert.equal(a.dir, join(cacheDir, "snapshots", a.commit));
    assert.equal(await readFile(join(a.dir, "deploy/app.yaml"), "utf8"), "kind: ConfigMap\n");
    assert.deepEqual((await readdir(a.dir)).sort(), ["deploy", "run.sh"]); // no .git
    const st = await stat(join(a.dir, "deploy/app.yaml"));
    assert.equal(st.mode & 0o222, 0, "snapshot files are read-only");
    // No temporary directories remain.
    assert.deepEqual(
      (await readdir(join(cacheDir, "snapshots"))).filter((n) => n.startsWith(".tmp")),
      [],
    );
  });

  test("a push fires onPush; the next fetch returns the new revision; an unchanged one is reused", async () => {
    const first = await source.fetch("app", { url: srv.repoUrl("app"), ref: { branch: "main" } });
    const wc = await clone("app");
    await wc.write({ "deploy/app.yaml": "kind: ConfigMap\ndata: {v: '2'}\n" });
    const pushed = await wc.commit("v2");
    pushes.length = 0;
    await wc.push("main");
    await waitFor(() => pushes.length > 0, 5000, "onPush");
    assert.deepEqual(pushes[0], {
      repo: "app",
      refs: [{ ref: "refs/heads/main", before: first.commit, after: pushed }],
    });

    const second = await source.fetch("app", { url: srv.repoUrl("app"), ref: { branch: "main" } });
    assert.equal(second.revision, `main@sha1:${pushed}`);
    assert.equal(
      await readFile(join(second.dir, "deploy/app.yaml"), "utf8"),
      "kind: ConfigMap\ndata: {v: '2'}\n",
    );
    assert.equal(
      await readFile(join(first.dir, "deploy/app.yaml"), "utf8"),
      "kind: ConfigMap\n",
      "old snapshot intact",
    );

    const before = (await stat(second.dir)).ino;
    observations.length = 0;
    const third = await source.fetch("app", { url: srv.repoUrl("app"), ref: { branch: "main" } });
    assert.deepEqual(third, second);
    assert.equal((await stat(third.dir)).ino, before);
    assert.equal(observations[0]?.cached, true);
    assert.equal(observations[0]?.ok, true);
  });

  test("no ref means the remote's default branch", async () => {
    await srv.createRepo("trunk", { "a.txt": "a\n" }, "trunk");
    const a = await source.fetch("trunk", { url: srv.repoUrl("trunk") });
    assert.equal(a.revision, `trunk@sha1:${a.commit}`);
  });

  test("listBranches sees a new branch and loses a deleted one; checkout gives a branch's snapshot", async () => {
    const spec = { url: srv.repoUrl("app") };
    const wc = await clone("app");
    await wc.branch("feature/login");
    await wc.write({ "feature.txt": "login\n" });
    const sha = await wc.commit("feature");
    await wc.push("feature/login");
    const withFeature = await source.listBranches("app", spec);
    assert.equal(withFeature.get("feature/login"), sha);
    assert.ok(withFeature.has("main"));

    const art = await source.checkout("app", spec, "feature/login");
    assert.equal(art.revision, `feature/login@sha1:${sha}`);
    assert.equal(await readFile(join(art.dir, "feature.txt"), "utf8"), "login\n");

    pushes.length = 0;
    await wc.deleteRemoteBranch("feature/login");
    await waitFor(() => pushes.length > 0, 5000, "onPush for the deletion");
    assert.deepEqual(pushes[0]?.refs, [
      { ref: "refs/heads/feature/login", before: sha, after: "0".repeat(40) },
    ]);
    const without = await source.listBranches("app", spec);
    assert.equal(without.has("feature/login"), false);
    assert.ok(without.has("main"));
  });

  test("semver picks the highest matching tag (annotated tags peeled to their commit); tag and name refs", async () => {
    await srv.createRepo("rel", { "v.txt": "0\n" });
    const wc = await clone("rel");
    const commits: Record<string, string> = {};
    for (const [tag, annotated] of [
      ["v1.0.0", false],
      ["v1.1.0", true],
      ["v1.1.1-rc.1", false],
      ["v2.0.0", true],
      ["not-a-version", false],
    ] as const) {
      await wc.write({ "v.txt": `${tag}\n` });
      await wc.commit(tag);
      await wc.push("main");
      commits[tag] = await wc.tag(tag, annotated ? `release ${tag}` : undefined);
    }
    const spec = (semver: string) => ({ url: srv.repoUrl("rel"), ref: { semver } });
    const a = await source.fetch("rel", spec("~1.1.0"));
    assert.equal(a.revision, `v1.1.0@sha1:${commits["v1.1.0"]}`);
    assert.equal(await readFile(join(a.dir, "v.txt"), "utf8"), "v1.1.0\n");
    assert.equal((await source.fetch("rel", spec(">=1.0.0")))?.revision, `v2.0.0@sha1:${commits["v2.0.0"]}`);
    assert.equal(
      (await source.fetch("rel", spec(">=1.1.1-0 <2.0.0"))).revision,
      `v1.1.1-rc.1@sha1:${commits["v1.1.1-rc.1"]}`,
    );
    await assert.rejects(source.fetch("rel", spec(">=3.0.0")), (e) => {
      const err = failure(e);
      return err.code === "ArtifactFailed" && /no tag matches semver range >=3\.0\.0/.test(err.message);
    });

    const t = await source.fetch("rel", { url: srv.repoUrl("rel"), ref: { tag: "v1.0.0" } });
    assert.equal(t.revision, `v1.0.0@sha1:${commits["v1.0.0"]}`);
    const n = await source.fetch("rel", { url: srv.repoUrl("rel"), ref: { name: "refs/tags/v2.0.0" } });
    assert.equal(n.revision, `refs/tags/v2.0.0@sha1:${commits["v2.0.0"]}`);
  });

  test("a pinned commit is fetched by id (older than the branch head too), with or without a branch", async () => {
    const wc = await clone("rel");
    const log = (await wc.run(["rev-list", "main"])).trim().split("\n");
    const old = log[2] as string;
    const fresh = new GitSource({ cacheDir: await tempCache() });
    const a = await fresh.fetch("rel", { url: srv.repoUrl("rel"), ref: { commit: old } });
    assert.equal(a.revision, `sha1:${old}`);
    assert.equal(a.commit, old);
    const b = await fresh.fetch("rel", {
      url: srv.repoUrl("rel"),
      ref: { branch: "main", commit: log[0] as string },
    });
    assert.equal(b.revision, `main@sha1:${log[0]}`);
    await assert.rejects(
      fresh.fetch("rel", { url: srv.repoUrl("rel"), ref: { commit: "1".repeat(40) } }),
      (e) => failure(e).code === "ArtifactFailed",
    );
    await assert.rejects(
      fresh.fetch("rel", { url: srv.repoUrl("rel"), ref: { commit: "abc" } }),
      (e) => failure(e).code === "ConfigInvalid",
    );
  });

  test("spec.ignore and .sourceignore files exclude paths, in a snapshot of their own", async () => {
    await srv.createRepo("ign", {
      "apps/web.yaml": "web\n",
      "apps/.sourceignore": "/local-*.yaml\n",
      "apps/local-dev.yaml": "dev\n",
      "docs/guide.md": "guide\n",
      "img/logo.png": "png\n",
      "keep.png": "png\n",
    });
    const plain = await source.fetch("ign", { url: srv.repoUrl("ign") });
    const a = await source.fetch("ign", { url: srv.repoUrl("ign"), ignore: "docs/\n*.png\n!keep.png\n" });
    assert.notEqual(a.dir, plain.dir);
    assert.equal(a.commit, plain.commit);
    const list = async (dir: string, prefix = ""): Promise<string[]> => {
      const out: string[] = [];
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.isDirectory()) out.push(...(await list(join(dir, e.name), `${prefix}${e.name}/`)));
        else out.push(`${prefix}${e.name}`);
      }
      return out.sort();
    };
    assert.deepEqual(await list(a.dir), ["apps/.sourceignore", "apps/web.yaml", "keep.png"]);
    assert.deepEqual(await list(plain.dir), [
      "apps/.sourceignore",
      "apps/web.yaml",
      "docs/guide.md",
      "img/logo.png",
      "keep.png",
    ]);
  });

  test("hostile content: submodules are never fetched, symlinks stay links, limits are enforced", async () => {
    await srv.createRepo("hostile", { "ok.yaml": "a: 1\n" });
    const wc = await clone("hostile");
    // A gitlink and a .gitmodules pointing at a command-running transport.
    await wc.write({
      ".gitmodules": '[submodule "evil"]\n\tpath = evil\n\turl = ext::sh -c touch% /tmp/sluice-pwned\n',
    });
    await wc.run(["update-index", "--add", "--cacheinfo", `160000,${"a".repeat(40)},evil`]);
    const { symlink } = await import("node:fs/promises");
    await symlink("/etc/passwd", join(wc.dir, "passwd-link"));
    await wc.commit("hostile");
    await wc.push("main");
    const a = await source.fetch("hostile", { url: srv.repoUrl("hostile") });
    await assert.rejects(stat(join(a.dir, "evil", "anything")));
    const names = await readdir(a.dir);
    assert.ok(!names.includes("evil"), "the submodule path is not materialised");
    assert.equal((await lstat(join(a.dir, "passwd-link"))).isSymbolicLink(), true);
    assert.equal(await readlink(join(a.dir, "passwd-link")), "/etc/passwd");
    await assert.rejects(stat("/tmp/sluice-pwned"));

    const small = new GitSource({ cacheDir: await tempCache(), maxFiles: 2 });
    await assert.rejects(small.fetch("hostile", { url: srv.repoUrl("hostile") }), (e) => {
      const err = failure(e);
      return err.code === "LimitExceeded" && /over the limit of 2/.test(err.message);
    });
  });

  test("large pushes (chunked) and fetches with many haves (gzip request bodies) go through the CGI", async () => {
    await srv.createRepo("big", { "a.txt": "a\n" });
    const wc = await clone("big");
    await wc.write({ "blob.bin": randomBytes(3 * 1024 * 1024).toString("base64") });
    await wc.commit("big");
    requests.length = 0;
    await wc.push("main");
    assert.ok(requests.some((r) => r.path.endsWith("git-receive-pack") && r.chunked && r.status === 200));

    const other = await clone("big");
    for (let i = 0; i < 40; i++) {
      await other.write({ [`o${i}.txt`]: `${i}\n` });
      await other.commit(`o${i}`);
      await other.run(["branch", `b${i}`]);
    }
    await wc.write({ "z.txt": "z\n" });
    const z = await wc.commit("z");
    await wc.push("main");
    requests.length = 0;
    await other.run(["fetch", "--quiet", "origin"]);
    assert.equal((await other.run(["rev-parse", "origin/main"])).trim(), z);
    assert.ok(
      requests.some((r) => r.contentEncoding === "gzip" && r.status === 200),
      "a gzip request body was served",
    );
  });

  test("concurrent fetches of one source agree and leave one snapshot", async () => {
    const wc = await clone("app");
    await wc.write({ "c.txt": "concurrent\n" });
    const sha = await wc.commit("c");
    await wc.push("main");
    const all = await Promise.all(
      Array.from({ length: 6 }, () =>
        source.fetch("app", { url: srv.repoUrl("app"), ref: { branch: "main" } }),
      ),
    );
    for (const a of all) assert.equal(a.revision, `main@sha1:${sha}`);
    assert.equal(await readFile(join(all[0]?.dir ?? "", "c.txt"), "utf8"), "concurrent\n");
  });

  test("gc keeps the named snapshots and removes the rest", async () => {
    const keep = await source.fetch("app", { url: srv.repoUrl("app"), ref: { branch: "main" } });
    const before = await readdir(join(cacheDir, "snapshots"));
    assert.ok(before.length > 2);
    await source.gc(new Set([keep.revision]));
    assert.deepEqual(await readdir(join(cacheDir, "snapshots")), [keep.commit]);
    // Fetching again after gc still works (caches pruned, not broken).
    const again = await source.fetch("rel", { url: srv.repoUrl("rel"), ref: { tag: "v1.0.0" } });
    assert.match(again.revision, /^v1\.0\.0@sha1:/);
  });
});

describe("GitSource failures", () => {
  test("server down: ArtifactFailed with the URL redacted; recovers when the server returns", async () => {
    const url = srv.repoUrl("app").replace("http://", "http://deploy:hunter2-secret@");
    srv.setDown(true);
    try {
      await assert.rejects(source.fetch("app", { url, ref: { branch: "main" } }), (e) => {
        const err = failure(e);
        assert.equal(err.code, "ArtifactFailed");
        assert.match(err.message, /^git fetch of http:\/\/\*\*\*@127\.0\.0\.1:\d+\/app\.git failed: .*503/);
        const everything = JSON.stringify({ m: err.message, h: err.hint, d: err.detail, s: err.stack });
        assert.ok(!everything.includes("hunter2") && !everything.includes("deploy:"), everything);
        assert.ok(err.hint && /reachable/.test(err.hint));
        return true;
      });
      assert.equal(observations.at(-1)?.ok, false);
      await assert.rejects(source.listBranches("app", { url }), /git ls-remote of http:\/\/\*\*\*@/);
    } finally {
      srv.setDown(false);
    }
    // The server ignores auth; the URL credentials are sent as a header and the fetch succeeds.
    const a = await source.fetch("app", { url, ref: { branch: "main" } });
    assert.match(a.revision, /^main@sha1:/);
  });

  test("basic-auth credentials work from the secret or the URL and never appear in errors", async () => {
    const authed = await startTestGitServer({ auth: { username: "ci", password: "s3cr3t-Passw0rd" } });
    try {
      await authed.createRepo("private", { "p.txt": "private\n" });
      const url = authed.repoUrl("private");
      const a = await source.fetch("private", {
        url,
        secret: { username: "ci", password: "s3cr3t-Passw0rd" },
      });
      assert.equal(await readFile(join(a.dir, "p.txt"), "utf8"), "private\n");
      const inUrl = url.replace("http://", "http://ci:s3cr3t-Passw0rd@");
      assert.equal((await source.listBranches("private", { url: inUrl })).size, 1);

      for (const spec of [
        { url, secret: { username: "ci", password: "wrong-Passw0rd-XYZ" } },
        { url: url.replace("http://", "http://ci:wrong-Passw0rd-XYZ@") },
        { url },
      ]) {
        await assert.rejects(source.fetch("private", spec), (e) => {
          const err = failure(e);
          assert.equal(err.code, "ArtifactFailed");
          const everything = JSON.stringify({ m: err.message, h: err.hint, d: err.detail, s: err.stack });
          assert.ok(!everything.includes("wrong-Passw0rd-XYZ"), everything);
          assert.ok(!everything.includes("s3cr3t-Passw0rd"), everything);
          assert.ok(
            !everything.includes(Buffer.from("ci:wrong-Passw0rd-XYZ").toString("base64")),
            everything,
          );
          assert.match(err.hint ?? "", /credentials/);
          return true;
        });
      }
    } finally {
      await authed.stop();
    }
  });

  test("link-local and metadata URLs are refused before any network call", async () => {
    for (const url of [
      "http://169.254.169.254/latest.git",
      "http://[fd00:ec2::254]/r.git",
      "http://metadata.google.internal/r.git",
    ]) {
      await assert.rejects(source.fetch("meta", { url }), (e) => {
        const err = failure(e);
        return (
          err.code === "ArtifactFailed" &&
          /link-local\/metadata/.test(err.message) &&
          /allowLinkLocal/.test(err.hint ?? "")
        );
      });
    }
    await assert.rejects(
      source.listBranches("meta", { url: "ext::sh -c id" }),
      /helper syntax is not allowed/,
    );
  });

  test("a server that never answers hits the time limit", async () => {
    const sockets: import("node:net").Socket[] = [];
    const silent: Server = createServer((s) => {
      sockets.push(s);
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const port = (silent.address() as import("node:net").AddressInfo).port;
    try {
      const started = Date.now();
      await assert.rejects(
        source.fetch("slow", { url: `http://127.0.0.1:${port}/r.git`, timeoutMs: 800 }),
        (e) => {
          const err = failure(e);
          return (
            err.code === "ArtifactFailed" &&
            /timed out after 800 ms/.test(err.message) &&
            /timeout/.test(err.hint ?? "")
          );
        },
      );
      assert.ok(Date.now() - started < 5000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test("invalid refs are configuration errors, not git options", async () => {
    for (const ref of [
      { branch: "--upload-pack=touch /tmp/x" },
      { tag: "a..b" },
      { name: "refs/heads/x y" },
    ]) {
      await assert.rejects(
        source.fetch("app", { url: srv.repoUrl("app"), ref }),
        (e) => failure(e).code === "ConfigInvalid",
      );
    }
  });
});
