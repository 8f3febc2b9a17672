/**
 * Rollouts on a real Kubernetes API server (etcd + kube-apiserver, no kubelet): the Gateway API
 * HTTPRoute CRD (trimmed from upstream, test/testdata/gateway-api) is installed, the engine drives
 * blue/green, canary and A/B, and the objects written are read back from the API server. With no
 * kubelet, a stand-in marks every Deployment's rollout complete through the status subresource.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import type { KubeObject } from "../src/core/index.js";
import { parseRollout, RolloutEngine, type StateStore } from "../src/rollouts/index.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import type { Target, UnitId } from "../src/targets/types.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

const here = fileURLToPath(new URL(".", import.meta.url));
let cp: ControlPlane;
let target: Target;
let marking = true;
let marker: Promise<void> | undefined;
const namespaces = ["ro-bg", "ro-canary", "ro-ab"];

function api(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cp.server}${path}`,
      {
        method,
        ca: cp.ca,
        headers: {
          Authorization: `Bearer ${cp.token}`,
          Accept: "application/json",
          ...(body ? { "Content-Type": contentType } : {}),
        },
        timeout: 10_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          text += c;
        });
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          resolve({ status, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

async function getObj(path: string): Promise<any> {
  const r = await api("GET", path);
  return r.status === 200 ? r.body : undefined;
}

/** The kubelet and controllers we do not run: every Deployment's rollout is reported complete. */
async function markRolloutsComplete(): Promise<void> {
  for (const ns of namespaces) {
    const list = await getObj(`/apis/apps/v1/namespaces/${ns}/deployments`);
    for (const d of list?.items ?? []) {
      const want = d.spec.replicas ?? 1;
      const s = d.status ?? {};
      if (
        s.observedGeneration === d.metadata.generation &&
        s.availableReplicas === want &&
        s.updatedReplicas === want
      )
        continue;
      await api(
        "PATCH",
        `/apis/apps/v1/namespaces/${ns}/deployments/${d.metadata.name}/status`,
        {
          status: {
            observedGeneration: d.metadata.generation,
            replicas: want,
            updatedReplicas: want,
            readyReplicas: want,
            availableReplicas: want,
          },
        },
        "application/merge-patch+json",
      );
    }
  }
}

before(async () => {
  cp = await startControlPlane();
  target = await createKubernetesTarget({ kubeconfig: cp.kubeconfigPath });
  const crd = parseYaml(
    readFileSync(join(here, "testdata", "gateway-api", "httproute-crd.yaml"), "utf8"),
  ) as KubeObject;
  const r = await target.apply({ env: "ro-kube", unit: "crds" }, [crd], {
    prune: false,
    wait: true,
    timeoutMs: 60_000,
  });
  assert.equal(r.health?.status, "Healthy", "the HTTPRoute CRD is established");
  marker = (async () => {
    while (marking) {
      await markRolloutsComplete().catch(() => {});
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
});

after(async () => {
  marking = false;
  await marker;
  await target?.close();
  await cp?.stop();
});

class MemoryStore implements StateStore {
  readonly m = new Map<string, string>();
  get(k: string) {
    return this.m.get(k);
  }
  set(k: string, v: string) {
    this.m.set(k, v);
  }
  delete(k: string) {
    this.m.delete(k);
  }
}

function app(ns: string, version: string): KubeObject[] {
  return [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: ns },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: { containers: [{ name: "web", image: `registry.example/web:${version}` }] },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: ns },
      spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: 8080 }] },
    },
  ];
}

function rollout(ns: string, strategy: Record<string, unknown>) {
  return parseRollout({
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Rollout",
    metadata: { name: "web", namespace: ns },
    spec: { workloadRef: { name: "web" }, service: { name: "web", port: 80 }, strategy },
  });
}

const opts = { prune: true, wait: true, timeoutMs: 30_000 };

describe("blue/green on Kubernetes: two Deployments and a Service selector switch", () => {
  const ns = "ro-bg";
  const unit: UnitId = { env: "ro-kube", unit: "bg" };
  const engine = new RolloutEngine({ store: new MemoryStore(), healthPollMs: 150 });
  const ro = rollout(ns, { blueGreen: { scaleDownDelay: "10m" } });
  const reconcile = (v: string) =>
    engine.reconcile({ unit, target, objects: app(ns, v), rollouts: [ro], smokeTests: [], apply: opts });
  const svcPath = `/api/v1/namespaces/${ns}/services/web`;
  const depPath = (n: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${n}`;

  test("v1 runs as web-blue; the Service selects slot blue", async () => {
    const r = await reconcile("v1");
    assert.equal(r.rollouts[0]?.phase, "Healthy", r.rollouts[0]?.message);
    const blue = await getObj(depPath("web-blue"));
    assert.deepEqual(blue.spec.selector.matchLabels, { app: "web", "rollouts.sluice.dev/slot": "blue" });
    assert.equal(blue.spec.template.spec.containers[0].image, "registry.example/web:v1");
    assert.equal(blue.metadata.labels["sluice.dev/owner"], "ro-kube.bg");
    assert.equal(await getObj(depPath("web")), undefined, "no Deployment under the original name");
    assert.deepEqual((await getObj(svcPath)).spec.selector, {
      app: "web",
      "rollouts.sluice.dev/slot": "blue",
    });
    assert.deepEqual((await getObj(`${svcPath}-preview`)).spec.selector, {
      app: "web",
      "rollouts.sluice.dev/slot": "blue",
    });
  });

  test("v2 starts in web-green, then the Service selector switches; web-blue stays as standby", async () => {
    const r = await reconcile("v2");
    assert.equal(r.rollouts[0]?.phase, "Healthy", r.rollouts[0]?.message);
    assert.deepEqual(
      r.events.map((e) => e.type),
      ["Started", "Promoted"],
    );
    const green = await getObj(depPath("web-green"));
    assert.equal(green.spec.template.spec.containers[0].image, "registry.example/web:v2");
    assert.equal(green.spec.replicas, 2);
    assert.equal((await getObj(depPath("web-blue"))).spec.replicas, 2, "standby still scaled");
    assert.deepEqual((await getObj(svcPath)).spec.selector, {
      app: "web",
      "rollouts.sluice.dev/slot": "green",
    });
  });

  test("rollback switches the selector back to blue before it returns", async () => {
    const res = await engine.rollback(target, unit);
    assert.ok(res);
    assert.deepEqual((await getObj(svcPath)).spec.selector, {
      app: "web",
      "rollouts.sluice.dev/slot": "blue",
    });
    const r = await reconcile("v2");
    assert.equal(r.rollouts[0]?.phase, "Aborted");
    assert.equal(
      (await getObj(depPath("web-green"))).spec.replicas,
      0,
      "the rolled-back slot is scaled to 0",
    );
  });
});

describe("canary on Kubernetes: HTTPRoute backendRefs weights", () => {
  const ns = "ro-canary";
  const unit: UnitId = { env: "ro-kube", unit: "canary" };
  const engine = new RolloutEngine({ store: new MemoryStore(), healthPollMs: 150 });
  const ro = rollout(ns, {
    canary: { steps: [{ setWeight: 20 }, { pause: {} }, { setWeight: 60 }, { pause: {} }] },
  });
  const reconcile = (v: string) =>
    engine.reconcile({ unit, target, objects: app(ns, v), rollouts: [ro], smokeTests: [], apply: opts });
  const routePath = `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes/web`;
  const weights = async () =>
    (await getObj(routePath)).spec.rules[0].backendRefs.map((b: any) => `${b.name}:${b.weight}`);

  test("the route is written with the Service as parent and all weight on stable", async () => {
    await reconcile("v1");
    const route = await getObj(routePath);
    assert.deepEqual(route.spec.parentRefs, [{ group: "", kind: "Service", name: "web", port: 80 }]);
    assert.deepEqual(
      route.spec.rules[0].matches,
      [{ path: { type: "PathPrefix", value: "/" } }],
      "API defaults",
    );
    assert.deepEqual(await weights(), ["web-stable:100", "web-canary:0"]);
    const stable = await getObj(`/api/v1/namespaces/${ns}/services/web-stable`);
    assert.deepEqual(stable.spec.selector, { app: "web", "rollouts.sluice.dev/slot": "blue" });
  });

  test("steps set the weights; resume moves on; abort puts everything back on stable", async () => {
    const r = await reconcile("v2");
    assert.equal(r.rollouts[0]?.candidate?.weight, 20, r.rollouts[0]?.message);
    assert.deepEqual(await weights(), ["web-stable:80", "web-canary:20"]);
    const canary = await getObj(`/api/v1/namespaces/${ns}/services/web-canary`);
    assert.deepEqual(canary.spec.selector, { app: "web", "rollouts.sluice.dev/slot": "green" });
    await engine.resume(target, unit);
    const r2 = await reconcile("v2");
    assert.equal(r2.rollouts[0]?.candidate?.weight, 60);
    assert.deepEqual(await weights(), ["web-stable:40", "web-canary:60"]);
    await engine.abort(target, unit);
    assert.deepEqual(await weights(), ["web-stable:100", "web-canary:0"], "abort routes back at once");
    await reconcile("v2");
    assert.equal(
      (await getObj(`/apis/apps/v1/namespaces/${ns}/deployments/web-green`)).spec.replicas,
      0,
      "the aborted canary is scaled down",
    );
  });
});

describe("A/B on Kubernetes: HTTPRoute header and cookie matches", () => {
  const ns = "ro-ab";
  const unit: UnitId = { env: "ro-kube", unit: "ab" };
  const engine = new RolloutEngine({ store: new MemoryStore(), healthPollMs: 150 });
  const ro = rollout(ns, {
    abTest: {
      match: [{ header: { name: "X-Version", value: "v2" } }, { cookie: { name: "version", value: "v2" } }],
    },
  });

  test("matching requests go to the canary Service, the rest to stable", async () => {
    await engine.reconcile({
      unit,
      target,
      objects: app(ns, "v1"),
      rollouts: [ro],
      smokeTests: [],
      apply: opts,
    });
    const r = await engine.reconcile({
      unit,
      target,
      objects: app(ns, "v2"),
      rollouts: [ro],
      smokeTests: [],
      apply: opts,
    });
    assert.equal(r.rollouts[0]?.phase, "Paused", r.rollouts[0]?.message);
    const route = await getObj(`/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes/web`);
    assert.deepEqual(route.spec.rules, [
      {
        matches: [
          {
            path: { type: "PathPrefix", value: "/" },
            headers: [{ type: "Exact", name: "X-Version", value: "v2" }],
          },
          {
            path: { type: "PathPrefix", value: "/" },
            headers: [{ type: "RegularExpression", name: "Cookie", value: "(^|;\\s*)version=v2(;|$)" }],
          },
        ],
        backendRefs: [{ group: "", kind: "Service", name: "web-canary", port: 80, weight: 1 }],
      },
      {
        matches: [{ path: { type: "PathPrefix", value: "/" } }],
        backendRefs: [{ group: "", kind: "Service", name: "web-stable", port: 80, weight: 1 }],
      },
    ]);
    const p = await engine.promote(target, unit);
    assert.equal(p.rollouts[0]?.phase, "Healthy");
    const svc = await getObj(`/api/v1/namespaces/${ns}/services/web`);
    assert.deepEqual(svc.spec.selector, { app: "web", "rollouts.sluice.dev/slot": "green" });
  });
});
