/**
 * Who the Kubernetes target acts as, on a real kube-apiserver with RBAC: `serviceAccount`
 * (Flux's `serviceAccountName`) impersonates the unit's service account for the unit's objects,
 * so RBAC bounds what a unit may change, while the inventory stays Sluice's own; a kubeconfig
 * read from a Secret (Flux's `kubeConfig.secretRef`) targets another cluster — here a second
 * identity (a service-account token) on the same control plane.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { stringify as toYaml } from "yaml";
import type { KubeObject } from "../src/core/index.js";
import { KubeClient } from "../src/targets/kubernetes/client.js";
import { createKubernetesTarget, kubeconfigFromSecret } from "../src/targets/kubernetes/index.js";
import type { UnitId } from "../src/targets/types.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";
import { type RecordingProxy, recordingProxy } from "./support/kube-requests.js";

let cp: ControlPlane;
let proxy: RecordingProxy;
let kube: KubeClient;
const opts = { prune: true, wait: false, timeoutMs: 30_000 };

async function must(method: string, path: string, body?: unknown): Promise<any> {
  const r = await kube.request(method, path, body === undefined ? {} : { body });
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A namespace, a service account in it, and a Role granting it everything on `resources` there. */
async function serviceAccountWithRole(
  ns: string,
  sa: string,
  roleNs: string[],
  resources: string[],
): Promise<void> {
  for (const n of new Set([ns, ...roleNs])) {
    const r = await kube.request("POST", "/api/v1/namespaces", {
      body: { apiVersion: "v1", kind: "Namespace", metadata: { name: n } },
    });
    assert.ok(r.status === 201 || r.status === 409);
  }
  await must("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: sa },
  });
  for (const n of roleNs) {
    await must("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${n}/roles`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: `${sa}-deployer` },
      rules: [{ apiGroups: [""], resources, verbs: ["*"] }],
    });
    await must("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${n}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: `${sa}-deployer` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: `${sa}-deployer` },
      subjects: [{ kind: "ServiceAccount", name: sa, namespace: ns }],
    });
  }
}

const cm = (namespace: string, name: string): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace },
  data: { a: "b" },
});

before(async () => {
  cp = await startControlPlane();
  proxy = await recordingProxy(cp);
  kube = new KubeClient(cp.kubeconfigPath);
});
after(async () => {
  kube?.close();
  await proxy?.stop();
  await cp?.stop();
});

describe("serviceAccountName: impersonation", () => {
  test("the unit's objects are applied as its service account; RBAC refuses the rest; the inventory is Sluice's", async (t) => {
    await serviceAccountWithRole("t-team", "deployer", ["t-team"], ["configmaps"]);
    const target = await createKubernetesTarget({
      kubeconfig: proxy.kubeconfigPath,
      serviceAccount: "t-team/deployer",
    });
    t.after(() => target.close());
    const unit: UnitId = { env: "prod", unit: "team" };
    proxy.clear();
    const res = await target.apply(unit, [cm("t-team", "settings")], opts);
    assert.equal(res.changeSet.entries[0]!.action, "created");
    const user = "system:serviceaccount:t-team:deployer";
    const objectRequests = proxy.requests.filter((r) => r.path.startsWith("/api/v1/namespaces/t-team/"));
    assert.ok(objectRequests.length >= 2, JSON.stringify(proxy.requests));
    assert.ok(
      objectRequests.every((r) => r.impersonate === user),
      JSON.stringify(objectRequests),
    );
    const inventoryRequests = proxy.requests.filter((r) => r.path.includes("/namespaces/sluice-system/"));
    assert.ok(inventoryRequests.length > 0);
    assert.ok(
      inventoryRequests.every((r) => r.impersonate === undefined),
      "the inventory is written as Sluice",
    );
    const live = await must("GET", "/api/v1/namespaces/t-team/configmaps/settings");
    assert.equal(live.metadata.managedFields[0].manager, "sluice");

    // Outside what its Role allows: refused by the API server, naming the service account.
    await assert.rejects(
      target.apply(unit, [cm("t-team", "settings"), cm("default", "escape")], opts),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "Forbidden");
        assert.match(e.message, /^ConfigMap\/default\/escape/);
        assert.match(e.message, /system:serviceaccount:t-team:deployer/);
        return true;
      },
    );
    assert.equal((await kube.request("GET", "/api/v1/namespaces/default/configmaps/escape")).status, 404);
  });

  test("a service account name that is not namespace/name is a configuration error", async () => {
    await assert.rejects(
      createKubernetesTarget({ kubeconfig: cp.kubeconfigPath, serviceAccount: "deployer" }),
      /service account "deployer" is not namespace\/name/,
    );
  });
});

describe("kubeConfig.secretRef: a remote cluster", () => {
  test("the kubeconfig is read from a Secret and used for everything, inventory included", async (t) => {
    // The "remote cluster": the same API server, as another identity (a service-account token).
    await serviceAccountWithRole("t-remote", "remote-admin", ["t-remote", "sluice-system"], ["configmaps"]);
    const token = (
      await must("POST", "/api/v1/namespaces/t-remote/serviceaccounts/remote-admin/token", {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { expirationSeconds: 3600 },
      })
    ).status.token as string;
    const remote = toYaml({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        {
          name: "remote",
          cluster: { server: cp.server, "certificate-authority-data": Buffer.from(cp.ca).toString("base64") },
        },
      ],
      users: [{ name: "remote", user: { token } }],
      contexts: [{ name: "remote", context: { cluster: "remote", user: "remote", namespace: "t-remote" } }],
      "current-context": "remote",
    });
    await must("POST", "/api/v1/namespaces/default/secrets", {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "remote-kubeconfig" },
      data: { value: Buffer.from(remote).toString("base64") },
    });

    const data = await kubeconfigFromSecret(
      { kubeconfig: cp.kubeconfigPath },
      { namespace: "default", name: "remote-kubeconfig" },
    );
    const target = await createKubernetesTarget({
      kubeconfig: "Secret default/remote-kubeconfig",
      kubeconfigData: data,
    });
    t.after(() => target.close());
    const unit: UnitId = { env: "remote", unit: "app" };
    // No namespace in the object: the remote context's namespace (t-remote).
    const { metadata, ...rest } = cm("x", "remote-settings");
    const res = await target.apply(
      unit,
      [{ ...rest, metadata: { name: metadata.name } } as KubeObject],
      opts,
    );
    assert.deepEqual(
      res.changeSet.entries.map((e) => `${e.action} ${e.subject}`),
      ["created ConfigMap/t-remote/remote-settings"],
    );
    assert.equal((await target.inventory(unit))?.entries.length, 1);
    // Its identity is the remote one: what its Role does not allow is refused, naming it.
    await assert.rejects(
      target.apply(unit, [cm("default", "not-there")], opts),
      /system:serviceaccount:t-remote:remote-admin/,
    );

    await assert.rejects(
      kubeconfigFromSecret(
        { kubeconfig: cp.kubeconfigPath },
        { namespace: "default", name: "remote-kubeconfig", key: "nope" },
      ),
      /has no key nope \(keys: value\)/,
    );
    await assert.rejects(
      kubeconfigFromSecret({ kubeconfig: cp.kubeconfigPath }, { namespace: "default", name: "missing" }),
      /Secret default\/missing not found/,
    );
  });
});
