/**
 * The reconciler with an environment on a real Kubernetes API server (kube-apiserver + etcd built
 * from Go modules): a push applies by server-side apply, a removed object is pruned.
 */
import assert from "node:assert/strict";
import { request } from "node:https";
import { after, before, test } from "node:test";
import { LazyTarget } from "../src/targets/index.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import { eventually, fluxConfig, harness } from "./support/agent.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

let cp: ControlPlane;
before(async () => {
  cp = await startControlPlane();
});
after(async () => {
  await cp?.stop();
});

function get(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cp.server}${path}`,
      { ca: cp.ca, headers: { Authorization: `Bearer ${cp.token}` } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const cm = (name: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}, namespace: shop}\ndata: {env: "\${ENV}"}\n`;

test("an environment targeting Kubernetes is applied and pruned through the agent", async (t) => {
  const h = await harness("app", {
    "k/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    "k/a.yaml": cm("a"),
    "k/b.yaml": cm("b"),
  });
  t.after(() => h.cleanup());
  const cluster = new LazyTarget("kubernetes", () =>
    createKubernetesTarget({ kubeconfig: cp.kubeconfigPath }),
  );
  const { agent, store } = await h.startAgent(
    fluxConfig({ env: "kube-prod", units: ["k"], target: "kubernetes" }),
    { target: (name) => (name === "kubernetes" ? cluster : assert.fail(`unexpected target ${name}`)) },
  );
  t.after(() => cluster.close());
  await eventually(
    () => store.getUnitStatus("kube-prod", "k")?.ready === "True",
    "Ready on the cluster",
    60_000,
    () => store.listUnitStatus(),
  );
  assert.equal(await get("/api/v1/namespaces/shop/configmaps/a"), 200);
  assert.equal(await get("/api/v1/namespaces/shop/configmaps/b"), 200);
  assert.equal(store.getInventory("kube-prod", "k")?.refs.length, 3);

  const sha = await h.commitAndPush({ "k/b.yaml": "" }, "main");
  await agent.notifyPush({ sources: ["app"] });
  await eventually(
    () => store.getUnitStatus("kube-prod", "k")?.lastAppliedRevision === `main@sha1:${sha}`,
    "the removal applied",
  );
  assert.equal(await get("/api/v1/namespaces/shop/configmaps/b"), 404, "pruned");
  assert.equal(await get("/api/v1/namespaces/shop/configmaps/a"), 200, "kept");
});

test("sluice apply/diff --target kubernetes: created, then in sync", async () => {
  const { sluice } = await import("./support/cli.js");
  const { tree } = await import("./support/tmp.js");
  const root = tree({
    "k/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: cli}\n",
    "k/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: cli}\ndata: {a: b}\n",
  });
  const common = [
    "--root",
    root,
    "--target",
    "kubernetes",
    "--kubeconfig",
    cp.kubeconfigPath,
    "--env",
    "cli",
  ];
  const d1 = await sluice(["diff", `${root}/k`, ...common]);
  assert.equal(d1.code, 1, d1.stderr);
  const a = await sluice(["apply", `${root}/k`, ...common, "--prune"]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /created\s+ConfigMap\/cli\/c/);
  assert.equal(await get("/api/v1/namespaces/cli/configmaps/c"), 200);
  const d2 = await sluice(["diff", `${root}/k`, ...common]);
  assert.equal(d2.code, 0, d2.stdout);
});

test("a render error leaves the cluster untouched: no apply, no prune, BuildFailed says why", async (t) => {
  const { recordingProxy } = await import("./support/kube-requests.js");
  const proxy = await recordingProxy(cp);
  t.after(() => proxy.stop());
  const h = await harness("app", {
    "k/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: broken}\n",
    "k/a.yaml": cm("a").replace("namespace: shop", "namespace: broken"),
    "k/b.yaml": cm("b").replace("namespace: shop", "namespace: broken"),
  });
  t.after(() => h.cleanup());
  const cluster = new LazyTarget("kubernetes", () =>
    createKubernetesTarget({ kubeconfig: proxy.kubeconfigPath }),
  );
  t.after(() => cluster.close());
  const { agent, store } = await h.startAgent(
    fluxConfig({ env: "kube-broken", units: ["k"], target: "kubernetes" }),
    { target: (name) => (name === "kubernetes" ? cluster : assert.fail(`unexpected target ${name}`)) },
  );
  const status = () => store.getUnitStatus("kube-broken", "k");
  await eventually(
    () => status()?.ready === "True",
    "Ready on the cluster",
    60_000,
    () => store.listUnitStatus(),
  );
  const applied = status()!.lastAppliedRevision;
  const rv = async (name: string) => {
    const { KubeClient } = await import("../src/targets/kubernetes/client.js");
    const k = new KubeClient(cp.kubeconfigPath);
    try {
      const r = await k.request("GET", `/api/v1/namespaces/broken/configmaps/${name}`);
      return r.status === 200 ? (r.body.metadata.resourceVersion as string) : undefined;
    } finally {
      k.close();
    }
  };
  const before = { a: await rv("a"), b: await rv("b") };
  assert.ok(before.a && before.b);

  // One push that both breaks a manifest (an undefined variable) and removes b (a prune if applied).
  proxy.clear();
  const sha = await h.commitAndPush(
    {
      "k/a.yaml": cm("a").replace("namespace: shop", "namespace: broken").replace("${ENV}", "${NOT_DEFINED}"),
      "k/b.yaml": "",
    },
    "main",
  );
  await agent.notifyPush({ sources: ["app"] });
  await eventually(
    () => status()?.reason === "BuildFailed" && status()?.revision === `main@sha1:${sha}`,
    "BuildFailed for the broken revision",
    60_000,
    () => store.listUnitStatus(),
  );
  const st = status()!;
  assert.equal(st.ready, "False");
  assert.match(st.message, /NOT_DEFINED/, "says which variable");
  assert.equal(st.lastAppliedRevision, applied, "still the last good revision");
  const run = store.listRuns({ env: "kube-broken", unit: "k", limit: 1 })[0]!;
  assert.equal(run.result, "failed");
  assert.deepEqual(
    run.stages.map((s) => `${s.name}:${s.result}`),
    ["artifact:succeeded", "render:failed"],
  );
  assert.deepEqual(proxy.writes(), [], "no write request reached the API server");
  assert.deepEqual(
    proxy.requests.filter((r) => r.method !== "GET"),
    [],
    "not even a dry-run",
  );
  assert.equal(await rv("a"), before.a, "a unchanged");
  assert.equal(await rv("b"), before.b, "b not pruned");
  assert.equal(store.getInventory("kube-broken", "k")?.refs.length, 3, "inventory unchanged");
});
