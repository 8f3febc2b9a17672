/**
 * Stack outputs flow into a Kubernetes unit through the agent (seed 000: the cluster name and image
 * URL of the infrastructure in the app's YAML): `sluice stack apply` with the real OpenTofu, then a
 * Kustomization with `substituteFrom: [{kind: StackOutputs, …}]` renders them and its pod answers
 * with them. Before the apply, the unit waits (DependencyNotReady), it does not fail the render.
 */
import assert from "node:assert/strict";
import { homedir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { byKind, loadConfig } from "../src/config/index.js";
import { runStack, stackFromConfig } from "../src/infra/index.js";
import { eventually, harness, httpText, webApp } from "./support/agent.js";

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
