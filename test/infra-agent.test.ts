/**
 * Stack outputs flow into a Kubernetes unit through the agent (seed 000: the cluster name and image
 * URL of the infrastructure in the app's YAML): `sluice stack apply` with the real OpenTofu, then a
 * Kustomization with `substituteFrom: [{kind: StackOutputs, …}]` renders them and its pod answers
 * with them. Before the apply, the unit waits (DependencyNotReady), it does not fail the render.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { byKind, loadConfig } from "../src/config/index.js";
import { runStack, stackFromConfig } from "../src/infra/index.js";
import { eventually, harness, httpText, webApp } from "./support/agent.js";
import { sluice } from "./support/cli.js";

const run = promisify(execFile);

const CACHE = join(homedir(), ".cache", "sluice");
const TOFU = join(process.env.SLUICE_BIN ?? join(CACHE, "bin"), "tofu");

describe("stack outputs in a unit's render", { timeout: 300_000 }, async () => {
  const h = await harness("stackout", {
    "web/app.yaml": webApp({ name: "web", message: "cluster-${cluster_name}", port: 0 }),
    "infra/cluster/main.tf": `
resource "terraform_data" "c" { input = "eks-demo" }
output "cluster_name" { value = terraform_data.c.output }
`,
  });
  after(() => h.cleanup());

  test("the unit waits for the stack, then renders its outputs", async () => {
    const stackYaml = `---
apiVersion: sluice.dev/v1alpha1
kind: Stack
metadata: {name: platform}
spec:
  units:
    - {name: cluster, path: infra/cluster}
`;
    const { agent, store } = await h.startAgent(
      `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./web
  interval: 1h
  retryInterval: 2s
  prune: true
  timeout: 90s
  postBuild:
    substituteFrom: [{kind: StackOutputs, name: platform, unit: cluster}]
${stackYaml}`,
      { infraStateDir: join(h.dir, "state") },
    );
    await eventually(
      () => store.getUnitStatus("default", "web")?.reason === "DependencyNotReady",
      "the unit waits for the stack",
    );
    assert.match(
      store.getUnitStatus("default", "web")!.message,
      /stack unit platform\/cluster has not been applied/,
    );

    const config = loadConfig(join(h.dir, "state", "config"), join(h.dir, "state", "config"));
    const r = await runStack({
      root: h.work,
      stack: stackFromConfig(byKind(config, "Stack").find((x) => x.metadata.name === "platform")!),
      action: "apply",
      env: "default",
      stateDir: join(h.dir, "state"),
      tofu: { binary: TOFU, cliConfigFile: join(CACHE, "tofu.rc") },
    });
    assert.ok(r.ok, JSON.stringify(r.units.map((u) => `${u.unit} ${u.status} ${u.message ?? ""}`)));
    await agent.requestReconcile("default", "web");
    await eventually(() => store.getUnitStatus("default", "web")?.ready === "True", "web ready", 120_000);
    const port = agent.listEnvironments()[0]!.urls![0]!.split(":").pop()!;
    assert.equal(await httpText(Number(port)), "cluster-eks-demo");
  });
});

describe("stack plans in `sluice plan --stacks`", { timeout: 300_000 }, async () => {
  test("each environment's stack units are planned with the head's code; exit 2 with changes, 0 without", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-planstack-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const state = join(dir, "state");
    const repo = join(dir, "repo");
    mkdirSync(join(repo, "sluice"), { recursive: true });
    mkdirSync(join(repo, "infra", "cluster"), { recursive: true });
    mkdirSync(join(repo, "deploy"), { recursive: true });
    writeFileSync(
      join(repo, "sluice", "apps.yaml"),
      `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: http://127.0.0.1:9/app.git, interval: 1h}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./deploy, interval: 1h, prune: true}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules: [{branch: main, name: production}]
---
apiVersion: sluice.dev/v1alpha1
kind: Stack
metadata: {name: platform}
spec:
  units: [{name: cluster, path: infra/cluster}]
`,
    );
    writeFileSync(join(repo, "deploy", "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    const tf = (v: string) =>
      `resource "terraform_data" "c" { input = "${v}" }\noutput "name" { value = terraform_data.c.output }\n`;
    writeFileSync(join(repo, "infra", "cluster", "main.tf"), tf("one"));
    const git = (...args: string[]) =>
      run("git", args, {
        cwd: repo,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: "t",
          GIT_AUTHOR_EMAIL: "t@t",
          GIT_COMMITTER_NAME: "t",
          GIT_COMMITTER_EMAIL: "t@t",
        },
      });
    await git("init", "-q", "-b", "main");
    await git("add", "-A");
    await git("commit", "-q", "-m", "one");
    await git("checkout", "-q", "-b", "change");
    writeFileSync(join(repo, "infra", "cluster", "main.tf"), tf("two"));
    await git("commit", "-q", "-am", "two");
    const env = { SLUICE_STATE_DIR: state, SLUICE_TOFU: TOFU, SLUICE_TOFU_RC: join(CACHE, "tofu.rc") };
    const p1 = await sluice(["plan", "--base", "main", "--head", "change", "--stacks", "--dir", repo], {
      env,
      timeoutMs: 240_000,
    });
    assert.equal(p1.code, 2, p1.stderr + p1.stdout);
    assert.match(
      p1.stdout,
      /Infrastructure \(OpenTofu plan\):\n {2}production platform\/cluster: 1 to add, 0 to change, 0 to destroy/,
    );

    // Applied at the head's code: the same plan has nothing to do.
    await git("checkout", "-q", "change");
    const config = loadConfig(repo, join(repo, "sluice"));
    const r = await runStack({
      root: repo,
      stack: stackFromConfig(byKind(config, "Stack")[0]!),
      action: "apply",
      env: "production",
      stateDir: state,
      tofu: { binary: TOFU, cliConfigFile: join(CACHE, "tofu.rc") },
    });
    assert.ok(r.ok);
    const p2 = await sluice(
      ["plan", "--base", "change", "--head", "change", "--stacks", "--dir", repo, "-o", "markdown"],
      {
        env,
        timeoutMs: 240_000,
      },
    );
    assert.equal(p2.code, 0, p2.stderr + p2.stdout);
    assert.match(p2.stdout, /\| production · platform \| cluster \| 0 \| 0 \| 0 \| ✅ no changes \|/);
  });
});
