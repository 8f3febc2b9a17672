/**
 * The image pipeline through the agent, against a real `docker-registry` and real Git over HTTP:
 *
 * - seed 003: a push builds the image with podman, tagged with the commit's first 10 characters
 *   and `latest`; a `v1.0.2` tag builds `1.0.2`; a unit waiting on the Build deploys the image.
 * - seed 004: tags 0.0.1 and 0.0.2 in the registry, an ImagePolicy `semver: 0.0.x` → the marked
 *   Deployment in Git says 0.0.2, committed by the configured author with the templated message,
 *   pushed; the environment then runs 0.0.2.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import pino from "pino";
import { type Registry, startRegistry } from "../src/demo/index.js";
import { listTags, parseImageRef } from "../src/images/index.js";
import { createApiServer } from "../src/server/index.js";
import { ensureBaseImages, Podman } from "../src/targets/local/index.js";
import { eventually, harness } from "./support/agent.js";
import { sluice } from "./support/cli.js";

const run = promisify(execFile);
const podman = new Podman();
let registry: Registry;
let dataDir: string;

before(async () => {
  await ensureBaseImages();
  dataDir = mkdtempSync(join(tmpdir(), "sluice-imgflow-"));
  registry = await startRegistry({ dataDir });
});
after(async () => {
  await registry?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const tagsOf = async (repo: string) =>
  (await listTags(parseImageRef(`${registry.host}/${repo}`), { insecure: true })).tags.sort();

const source = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
`;

/** A Deployment whose image line carries a Flux setter marker. */
const deployment = (image: string) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: ${image} # {"$imagepolicy": "flux-system:web"}
          command: ["sh", "-c", "sleep 3600"]
`;

describe("seed 004: the registry's newest 0.0.x is written to Git and deployed", {
  timeout: 300_000,
}, async () => {
  const h = await harness("seed004", {});
  after(() => h.cleanup());

  test("a policy picks 0.0.2; the automation commits it with the configured author; the environment runs it", async () => {
    for (const t of ["0.0.1", "0.0.2", "0.1.0"]) {
      await podman.run(["tag", "localhost/sluice/busybox:latest", `${registry.host}/web:${t}`]);
      await podman.run(["push", "--tls-verify=false", `${registry.host}/web:${t}`]);
    }
    await h.commitAndPush(
      { "deploy/web.yaml": deployment(`${registry.host}/web:0.0.1`) },
      "main",
      "web at 0.0.1",
    );
    const { agent, store } = await h.startAgent(`${source}---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./deploy, interval: 1h, prune: true, timeout: 90s}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: web}
spec: {image: "${registry.host}/web", interval: 1h, insecure: true}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: web}
spec:
  imageRepositoryRef: {name: web}
  policy: {semver: {range: 0.0.x}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata: {name: web}
spec:
  interval: 1h
  sourceRef: {kind: GitRepository, name: app}
  git:
    checkout: {ref: {branch: main}}
    commit:
      author: {name: fluxcdbot, email: fluxcdbot@users.noreply.github.com}
      messageTemplate: |-
        Automated image update

        {{ range .Changed.Changes }}{{ .OldValue }} -> {{ .NewValue }}
        {{ end }}
    push: {branch: main}
  update: {path: ./deploy, strategy: Setters}
`);
    await eventually(
      () => store.getUnitStatus("default", "web")?.lastAppliedRevision?.includes("@sha1:"),
      "a revision applied",
      120_000,
    );
    await eventually(
      () => agent.imageStatus().automations[0]?.lastCommit,
      "the automation committed",
      120_000,
      () => agent.imageStatus(),
    );
    const st = agent.imageStatus();
    assert.equal(st.policies[0]?.latestImage, `${registry.host}/web:0.0.2`);
    assert.equal(st.repositories[0]?.count, 3);

    await h.git("fetch", "-q", "origin");
    const log = await h.git("log", "-1", "--format=%an <%ae>%n%B", "origin/main");
    assert.match(log, /^fluxcdbot <fluxcdbot@users.noreply.github.com>\nAutomated image update\n/);
    assert.match(
      log,
      new RegExp(
        `${registry.host.replace(".", "\\.")}/web:0\\.0\\.1 -> ${registry.host.replace(".", "\\.")}/web:0\\.0\\.2`,
      ),
    );
    const file = await h.git("show", "origin/main:deploy/web.yaml");
    assert.equal(file, deployment(`${registry.host}/web:0.0.2`).trimEnd(), "only the marked value changed");

    // The push is listed at once and deployed.
    const head = await h.git("rev-parse", "origin/main");
    await eventually(
      () => store.getUnitStatus("default", "web")?.lastAppliedRevision === `main@sha1:${head}`,
      "the new commit deployed",
      120_000,
    );
    const { stdout } = await run("podman", [
      "ps",
      "--filter",
      "label=sluice.dev/env=default",
      "--filter",
      "label=sluice.dev/unit=web",
      "--format",
      "{{.Image}}",
    ]);
    assert.deepEqual(
      stdout
        .trim()
        .split("\n")
        .filter((i) => !i.includes("podman-pause")),
      [`${registry.host}/web:0.0.2`],
    );
    // A second pass changes nothing: no new commit.
    await agent.scanImages();
    await h.git("fetch", "-q", "origin");
    assert.equal(await h.git("rev-parse", "origin/main"), head);
  });
});

describe("seed 003: builds on push and on release tags", { timeout: 400_000 }, async () => {
  const h = await harness("seed003", {
    "app/Containerfile": "FROM localhost/sluice/busybox:latest\nCOPY index.html /www/index.html\n",
    "app/index.html": "v1\n",
  });
  after(() => h.cleanup());

  test("a commit builds <sha10> and latest; a tag v1.0.2 builds 1.0.2; a unit waits for its build", async () => {
    const { agent, store } = await h.startAgent(`${source}---
apiVersion: sluice.dev/v1alpha1
kind: Build
metadata: {name: app}
spec:
  sourceRef: {name: app}
  context: app
  image: "${registry.host}/app"
  insecure: true
  triggers:
    - {events: [push], refs: [main]}
    - {events: [tag], refs: ["v*"]}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./deploy
  interval: 1h
  prune: true
  timeout: 90s
  dependsOn: [{kind: Build, name: app}]
`);
    const first = await h.git("rev-parse", "HEAD");
    await eventually(
      () => agent.listBuilds().find((b) => b.commit === first && b.result !== "running"),
      "the first build",
      240_000,
    );
    const b1 = agent.listBuilds().find((b) => b.commit === first)!;
    assert.equal(b1.result, "succeeded", b1.lastLines.join("\n"));
    assert.deepEqual(b1.tags, [first.slice(0, 10), "latest"]);
    assert.deepEqual(await tagsOf("app"), [first.slice(0, 10), "latest"].sort());
    assert.ok(agent.buildLog("app", first)?.includes("COPY index.html"), "the log is stored");

    // The unit has nothing to deploy at ./deploy yet: it failed to render, not waiting on the build.
    await h.git("tag", "v1.0.2");
    await h.git("push", "-q", "origin", "v1.0.2");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(
      () => agent.listBuilds().find((b) => b.trigger === "tag v1.0.2" && b.result !== "running"),
      "the tag build",
      240_000,
    );
    assert.ok((await tagsOf("app")).includes("1.0.2"));

    // `sluice build` through the API, its log streamed as it runs.
    const api = await createApiServer({ agent, store, log: pino({ level: "silent" }) });
    after(() => api.close());
    const token = store.addToken("ci", "operator");
    const b = await sluice(["build", "app", "--ref", "tags/v1.0.2"], {
      env: { SLUICE_URL: api.url, SLUICE_TOKEN: token },
      timeoutMs: 240_000,
    });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /► building app at tags\/v1\.0\.2\n/);
    assert.match(b.stdout, /COPY index\.html/);
    assert.match(b.stdout, /✔ .*app:1\.0\.2/);

    // A broken Containerfile: the build fails with its last lines and holds the unit back.
    const broken = await h.commitAndPush(
      {
        "app/Containerfile": "FROM localhost/sluice/busybox:latest\nRUN exit 3\n",
        "deploy/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
      },
      "main",
      "broken build",
    );
    await agent.notifyPush({ sources: ["app"] });
    await eventually(
      () => agent.listBuilds().find((b) => b.commit === broken && b.result === "failed"),
      "the failed build",
      240_000,
    );
    await eventually(
      () => /Build app of [0-9a-f]{10} failed/.test(store.getUnitStatus("default", "web")?.message ?? ""),
      "the unit held back by the failed build",
      60_000,
      () => store.getUnitStatus("default", "web"),
    );
    // Earlier commits (with nothing to deploy) may have applied; the broken one never does.
    assert.notEqual(store.getUnitStatus("default", "web")?.lastAppliedRevision, `main@sha1:${broken}`);
  });
});
