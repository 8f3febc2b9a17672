import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { sluice } from "../../test/support/cli.js";
import { type GitServer, git, startTestGitServer, WorkingCopy } from "../../test/support/gitserver.js";

let srv: GitServer & { root: string };
const cleanup: string[] = [];

before(async () => {
  srv = await startTestGitServer();
});
after(async () => {
  await srv.stop();
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

const manifest = (tag: string) =>
  `apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
spec:
  template:
    spec:
      containers:
        - name: nginx
          image: 127.0.0.1:5000/nginx:${tag} # {"$imagepolicy": "flux-system:nginx"}
`;

const config = (url: string, template: string) => `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: nginx
  namespace: flux-system
spec:
  interval: 1m
  url: ${url}
  ref:
    branch: main
---
apiVersion: image.toolkit.fluxcd.io/v1beta1
kind: ImageUpdateAutomation
metadata:
  name: nginx
  namespace: flux-system
spec:
  interval: 1m0s
  sourceRef:
    kind: GitRepository
    name: nginx
  git:
    commit:
      author:
        email: flux@example.com
        name: flux
      messageTemplate: ${JSON.stringify(template)}
    push:
      branch: main
  update:
    path: ./clusters/flux-cluster/nginx.yml
    strategy: Setters
`;

async function cloneOf(url: string): Promise<WorkingCopy> {
  const wc = await WorkingCopy.clone(url);
  cleanup.push(wc.dir);
  return wc;
}

test("sluice image update: dry run without --push, then commit and push with it", async () => {
  await srv.createRepo("cli", { "clusters/flux-cluster/nginx.yml": manifest("0.0.1") });
  const url = srv.repoUrl("cli");
  const dir = await mkdtemp(join(tmpdir(), "sluice-image-cli-"));
  cleanup.push(dir);
  await writeFile(join(dir, "automation.yaml"), config(url, "{{range .Updated.Images}}{{println .}}{{end}}"));

  const dry = await sluice([
    "image",
    "update",
    "--dir",
    dir,
    "--latest",
    "flux-system:nginx=127.0.0.1:5000/nginx:0.0.2",
  ]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /flux-system\/nginx: main: 1 field\(s\) in 1 file\(s\)/);
  assert.match(
    dry.stdout,
    /clusters\/flux-cluster\/nginx\.yml:10 {2}127\.0\.0\.1:5000\/nginx:0\.0\.1 -> 127\.0\.0\.1:5000\/nginx:0\.0\.2/,
  );
  assert.match(dry.stdout, /not pushed \(use --push\)/);
  const before = (await git((await cloneOf(url)).dir, ["rev-parse", "HEAD"])).trim();

  const latestFile = join(dir, "latest.json");
  await writeFile(latestFile, JSON.stringify({ "flux-system:nginx": "127.0.0.1:5000/nginx:0.0.2" }));
  const real = await sluice(["image", "update", "--dir", dir, "--latest-file", latestFile, "--push"]);
  assert.equal(real.code, 0, real.stderr);
  assert.match(real.stdout, /pushed [0-9a-f]{7} to main/);
  const wc = await cloneOf(url);
  assert.notEqual(await wc.head(), before);
  assert.equal(await readFile(join(wc.dir, "clusters/flux-cluster/nginx.yml"), "utf8"), manifest("0.0.2"));
  assert.equal(
    (await wc.run(["log", "-1", "--format=%an <%ae>%n%B"])).trim(),
    "flux <flux@example.com>\n127.0.0.1:5000/nginx:0.0.2",
  );

  const again = await sluice(["image", "update", "--dir", dir, "--latest-file", latestFile, "--push"]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /main: up to date/);
});

test("sluice image update: a bad template or an unknown policy is an error (exit 2), nothing pushed", async () => {
  await srv.createRepo("cli-bad", { "clusters/flux-cluster/nginx.yml": manifest("0.0.1") });
  const url = srv.repoUrl("cli-bad");
  const dir = await mkdtemp(join(tmpdir(), "sluice-image-cli-"));
  cleanup.push(dir);
  await writeFile(join(dir, "automation.yaml"), config(url, "{{ .Updated.Imagez }}"));
  const bad = await sluice([
    "image",
    "update",
    "--dir",
    dir,
    "--push",
    "--latest",
    "flux-system:nginx=x/y:1",
  ]);
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /error: messageTemplate: line 1, column 12: can't evaluate field Imagez in type update\.Result/,
  );

  await writeFile(join(dir, "automation.yaml"), config(url, ""));
  const unknown = await sluice([
    "image",
    "update",
    "--dir",
    dir,
    "--push",
    "--latest",
    "flux-system:other=x/y:1",
  ]);
  assert.equal(unknown.code, 2);
  assert.match(
    unknown.stderr,
    /nginx\.yml:10: marker names image policy flux-system:nginx, which is not known/,
  );
  const wc = await cloneOf(url);
  assert.equal(await readFile(join(wc.dir, "clusters/flux-cluster/nginx.yml"), "utf8"), manifest("0.0.1"));
});
