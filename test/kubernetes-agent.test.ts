/**
 * The agent with Kustomization access fields on a real kube-apiserver with RBAC:
 * `serviceAccountName` applies as that service account (what its Role does not allow fails the
 * unit, naming the refusal), and drift on an object with reconcile disabled is reported on the
 * unit (drift flag, DriftDetected event) but never corrected.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { TargetAccess } from "../src/reconcile/index.js";
import { LazyTarget, type Target } from "../src/targets/index.js";
import { KubeClient } from "../src/targets/kubernetes/client.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import { eventually, harness } from "./support/agent.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

let cp: ControlPlane;
let kube: KubeClient;
before(async () => {
  cp = await startControlPlane();
  kube = new KubeClient(cp.kubeconfigPath);
});
after(async () => {
  kube?.close();
  await cp?.stop();
});

async function must(method: string, path: string, body?: unknown): Promise<any> {
  const r = await kube.request(method, path, body === undefined ? {} : { body });
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const config = (unitSpec: string) => `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: k, namespace: team}
spec:
  sourceRef: {kind: GitRepository, name: app, namespace: flux-system}
  path: ./k
  interval: 1h
  prune: true
  timeout: 60s
${unitSpec}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec: {sourceRef: {name: app}, rules: [{branch: main, name: prod, target: kubernetes}]}
`;

/** A target per access, as `sluice serve` makes them. */
function targets() {
  const made = new Map<string, Target>();
  const accesses: TargetAccess[] = [];
  const target = (name: string, access?: TargetAccess): Target => {
    assert.equal(name, "kubernetes");
    if (access) accesses.push(access);
    const key = access?.key ?? "";
    let t = made.get(key);
    if (!t) {
      t = new LazyTarget("kubernetes", () =>
        createKubernetesTarget({
          kubeconfig: cp.kubeconfigPath,
          ...(access?.serviceAccount ? { serviceAccount: access.serviceAccount } : {}),
        }),
      );
      made.set(key, t);
    }
    return t;
  };
  return { target, accesses, close: () => Promise.all([...made.values()].map((t) => t.close())) };
}

test("serviceAccountName: the unit applies as its service account, and RBAC bounds it", async (t) => {
  for (const n of ["team", "apps"])
    await kube.request("POST", "/api/v1/namespaces", {
      body: { apiVersion: "v1", kind: "Namespace", metadata: { name: n } },
    });
  await must("POST", "/api/v1/namespaces/team/serviceaccounts", {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: "deployer" },
  });
  // ConfigMaps in `apps` only.
  await must("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/roles", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "deployer" },
    rules: [{ apiGroups: [""], resources: ["configmaps"], verbs: ["*"] }],
  });
  await must("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "deployer" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "deployer" },
    subjects: [{ kind: "ServiceAccount", name: "deployer", namespace: "team" }],
  });
  const h = await harness("kaccess", {
    "k/cm.yaml":
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: allowed, namespace: apps}\ndata: {a: b}\n",
  });
  t.after(() => h.cleanup());
  const tg = targets();
  t.after(() => tg.close());
  const { agent, store } = await h.startAgent(config("  serviceAccountName: deployer\n"), {
    target: tg.target,
  });
  await eventually(
    () => store.getUnitStatus("prod", "k")?.ready === "True",
    "applied as the service account",
    60_000,
    () => store.getUnitStatus("prod", "k"),
  );
  assert.equal(tg.accesses[0]?.serviceAccount, "team/deployer");
  assert.equal((await kube.request("GET", "/api/v1/namespaces/apps/configmaps/allowed")).status, 200);

  // A Secret is not in its Role: the unit fails, naming the refusal, and nothing is written.
  const sha = await h.commitAndPush(
    {
      "k/secret.yaml":
        "apiVersion: v1\nkind: Secret\nmetadata: {name: nope, namespace: apps}\nstringData: {k: v}\n",
    },
    "main",
  );
  await agent.notifyPush({ sources: ["flux-system/app"] });
  await eventually(
    () =>
      store.getUnitStatus("prod", "k")?.revision === `main@sha1:${sha}` &&
      store.getUnitStatus("prod", "k")?.ready === "False",
    "refused",
    60_000,
    () => store.getUnitStatus("prod", "k"),
  );
  assert.match(store.getUnitStatus("prod", "k")!.message, /forbidden|Forbidden/);
  assert.equal((await kube.request("GET", "/api/v1/namespaces/apps/secrets/nope")).status, 404);
});

test("drift on an object with reconcile disabled is reported on the unit, not corrected", async (t) => {
  await kube.request("POST", "/api/v1/namespaces", {
    body: { apiVersion: "v1", kind: "Namespace", metadata: { name: "held" } },
  });
  const h = await harness("kdrift", {
    "k/cm.yaml":
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tuned, namespace: held, annotations: {sluice.dev/reconcile: disabled}}\ndata: {mode: git}\n",
    "k/other.yaml":
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain, namespace: held}\ndata: {a: b}\n",
  });
  t.after(() => h.cleanup());
  // Someone else made it (reconcile disabled: Sluice never creates nor writes it).
  await must("POST", "/api/v1/namespaces/held/configmaps", {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "tuned", namespace: "held" },
    data: { mode: "hand-tuned" },
  });
  const tg = targets();
  t.after(() => tg.close());
  const { store } = await h.startAgent(config(""), { target: tg.target });
  await eventually(() => store.getUnitStatus("prod", "k")?.ready === "True", "reconciled", 60_000);
  const st = store.getUnitStatus("prod", "k")!;
  assert.equal(st.drift, true, "the unit shows drift");
  const ev = store.listEvents({ env: "prod", unit: "k" }).find((e) => e.reason === "DriftDetected");
  assert.match(ev?.message ?? "", /ConfigMap\/held\/tuned differs from .*reconcile is disabled/);
  const live = await must("GET", "/api/v1/namespaces/held/configmaps/tuned");
  assert.equal(live.data.mode, "hand-tuned", "not corrected");
});
