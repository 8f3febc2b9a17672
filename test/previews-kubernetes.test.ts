/**
 * Preview environments on a real Kubernetes API server: each preview gets its own namespace
 * (`namespace: "{{env.name}}"` on the rule), holding every object of its units; deleting the
 * branch deletes the objects and the namespace, and leaves the other environments alone.
 */
import assert from "node:assert/strict";
import { request } from "node:https";
import { after, before, test } from "node:test";
import { LazyTarget } from "../src/targets/index.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import { eventually, harness } from "./support/agent.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

let cp: ControlPlane;
before(async () => {
  cp = await startControlPlane();
});
after(async () => {
  await cp?.stop();
});

function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cp.server}${path}`,
      { ca: cp.ca, headers: { Authorization: `Bearer ${cp.token}` } },
      (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

test("each preview lives in its own namespace, removed with the environment", async (t) => {
  const h = await harness("kpreviews", {
    "k/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  env: ${ENV}\n",
    "k/svc.yaml":
      "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}], selector: {app: web}}\n",
  });
  t.after(() => h.cleanup());
  await h.git("push", "-q", "origin", "main:refs/heads/feature/a", "main:refs/heads/feature/b");
  const cluster = new LazyTarget("kubernetes", () =>
    createKubernetesTarget({ kubeconfig: cp.kubeconfigPath }),
  );
  t.after(() => cluster.close());
  const { agent, store } = await h.startAgent(
    `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: k}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./k, interval: 1h, prune: true, timeout: 60s}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: "feature/*", name: "pv-{{branch.slug}}", target: kubernetes, namespace: "{{env.name}}"}
`,
    { target: (name) => (name === "kubernetes" ? cluster : assert.fail(`unexpected target ${name}`)) },
  );
  for (const env of ["pv-feature-a", "pv-feature-b"])
    await eventually(
      () => store.getUnitStatus(env, "k")?.ready === "True",
      `${env} ready`,
      60_000,
      () => store.listUnitStatus(),
    );
  const a = await get("/api/v1/namespaces/pv-feature-a/configmaps/settings");
  assert.equal(a.status, 200);
  assert.match(a.body, /"env":"pv-feature-a"/);
  assert.equal((await get("/api/v1/namespaces/pv-feature-b/services/web")).status, 200);
  assert.equal((await get("/api/v1/namespaces/pv-feature-a")).status, 200, "the namespace was created");

  await h.git("push", "-q", "origin", ":refs/heads/feature/a");
  await agent.notifyPush({ sources: ["app"] });
  await eventually(() => store.getEnvironment("pv-feature-a")?.state === "destroyed", "a destroyed", 60_000);
  assert.equal((await get("/api/v1/namespaces/pv-feature-a/configmaps/settings")).status, 404);
  await eventually(
    async () => {
      const ns = await get("/api/v1/namespaces/pv-feature-a");
      // Without a namespace controller finishing, a deleted namespace may linger as Terminating.
      return ns.status === 404 || /"phase":"Terminating"/.test(ns.body);
    },
    "the namespace deleted",
    60_000,
  );
  assert.equal((await get("/api/v1/namespaces/pv-feature-b/configmaps/settings")).status, 200, "b untouched");
});
