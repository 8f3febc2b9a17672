/**
 * Sluice's own image: built with podman from a clean copy of the checkout (the files git tracks
 * or would track: no dist/, no build output), then run: `sluice --version`, as the non-root
 * `sluice` user, with better-sqlite3, git and kustomize working inside. A second build of the
 * same inputs is skipped.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { buildSluiceImage } from "../src/cluster/image.js";
import { defaultContainersConf } from "../src/targets/local/index.js";

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "sluice-image-test-"));
after(() => rmSync(work, { recursive: true, force: true }));

async function podman(...args: string[]): Promise<string> {
  const r = await run("podman", args, {
    env: { ...process.env, CONTAINERS_CONF: defaultContainersConf() },
    timeout: 60_000,
  });
  return r.stdout.trim();
}

test("Sluice's image builds from a clean checkout and `sluice --version` runs in it as non-root", async (t) => {
  // A clean copy: what git tracks plus new files it would track (ignored files such as dist/ left out).
  const { stdout } = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: repo,
    maxBuffer: 64 * 1024 * 1024,
  });
  const clone = join(work, "sluice");
  for (const f of stdout.split("\0").filter(Boolean)) {
    const to = join(clone, f);
    mkdirSync(dirname(to), { recursive: true });
    try {
      copyFileSync(join(repo, f), to);
    } catch {
      // deleted in the working tree
    }
  }
  symlinkSync(join(repo, "node_modules"), join(clone, "node_modules"));

  const first = await buildSluiceImage({ root: clone, force: true, onProgress: (l) => t.diagnostic(l) });
  t.diagnostic(
    `built ${first.image}: ${(first.sizeBytes / 1e6).toFixed(1)} MB in ${(first.ms / 1000).toFixed(1)} s`,
  );
  assert.equal(first.built, true);
  const again = await buildSluiceImage({ root: clone });
  t.diagnostic(`second build of the same inputs: skipped in ${again.ms} ms`);
  assert.equal(again.built, false);
  assert.equal(again.image, first.image);

  const version = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")).version as string;
  assert.equal(await podman("run", "--rm", first.image, "--version"), version);
  assert.equal(await podman("run", "--rm", "--entrypoint", "/usr/bin/id", first.image, "-u"), "65532");
  const sqlite = await podman(
    "run",
    "--rm",
    "--entrypoint",
    "/usr/local/bin/node",
    first.image,
    "-e",
    "const D = require('module').createRequire('/opt/sluice/dist/cli/main.js')('better-sqlite3'); console.log(new D(':memory:').prepare('select 41 + 1 as n').get().n)",
  );
  assert.equal(sqlite, "42");
  assert.match(
    await podman("run", "--rm", "--entrypoint", "/usr/bin/git", first.image, "--version"),
    /^git version /,
  );
  // `sluice render` with kustomize, in the image, of a directory mounted read-only.
  const dir = join(work, "app");
  mkdirSync(dir);
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(dir, "kustomization.yaml"), "resources: [cm.yaml]\nnamePrefix: x-\n");
  writeFileSync(join(dir, "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n");
  const rendered = await podman("run", "--rm", "-v", `${dir}:/app:ro`, first.image, "render", "/app");
  assert.match(rendered, /name: x-c/);
});
