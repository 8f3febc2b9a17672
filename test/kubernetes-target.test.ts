/**
 * The Kubernetes target on a real kube-apiserver + etcd, through a recording proxy that sees
 * every request: a no-op reconcile sends no write (and no dry-run) request; drift on an object
 * annotated reconcile-disabled is reported, not corrected; field conflicts name manager and
 * field and are taken over only with force; the API server stopped in the middle of an apply
 * of 500 objects, then restarted: the next apply converges, nothing lost or duplicated.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { KubeObject } from "../src/core/index.js";
import type { ChangeSet } from "../src/plan/index.js";
import { KubeClient } from "../src/targets/kubernetes/client.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import type { Target, UnitId } from "../src/targets/types.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";
import { type RecordingProxy, recordingProxy } from "./support/kube-requests.js";

let cp: ControlPlane;
let proxy: RecordingProxy;
let target: Target;
let kube: KubeClient;
const opts = { prune: true, wait: false, timeoutMs: 30_000 };

before(async () => {
  cp = await startControlPlane();
  proxy = await recordingProxy(cp);
  target = await createKubernetesTarget({ kubeconfig: proxy.kubeconfigPath });
  kube = new KubeClient(cp.kubeconfigPath);
});
after(async () => {
  await target?.close();
  kube?.close();
  await proxy?.stop();
  await cp?.stop();
});

function actions(cs: ChangeSet): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of cs.entries) out[e.action] = (out[e.action] ?? 0) + 1;
  return out;
}
const entry = (cs: ChangeSet, subj: string) => cs.entries.find((e) => e.subject === subj);

async function getObj(path: string): Promise<any> {
  const r = await kube.request("GET", path);
  return r.status === 200 ? r.body : undefined;
}

/** All objects of a kind in a namespace, by name → resourceVersion. */
async function versions(path: string): Promise<Map<string, string>> {
  const r = await kube.request("GET", path);
  assert.equal(r.status, 200);
  return new Map((r.body.items as any[]).map((i) => [i.metadata.name, i.metadata.resourceVersion]));
}

const ns = (name: string): KubeObject => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
const cm = (
  namespace: string,
  name: string,
  data: Record<string, string>,
  annotations?: Record<string, string>,
) =>
  ({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
    data,
  }) as KubeObject;

/** A realistic mix: ports, resources, probes, env, a Secret with stringData, kubectl-style nulls. */
function app(namespace: string, i: number): KubeObject[] {
  const name = `app-${i}`;
  return [
    cm(namespace, `${name}-config`, { LOG_LEVEL: "info", INDEX: String(i) }),
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: `${name}-creds`, namespace },
      type: "Opaque",
      stringData: { password: `pw-${i}` },
      data: { token: Buffer.from(`token-${i}`).toString("base64") },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace, labels: { app: name } },
      spec: {
        clusterIP: "None",
        selector: { app: name },
        ports: [{ name: "http", port: 80, targetPort: 8080 }],
      },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name, namespace, labels: { app: name }, annotations: { "example.com/team": "shop" } },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: name } },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: { labels: { app: name }, creationTimestamp: null },
          spec: {
            containers: [
              {
                name: "app",
                image: `registry.example/app:${i}`,
                args: ["--port", "8080"],
                ports: [{ containerPort: 8080, name: "http" }],
                env: [
                  { name: "MODE", value: "prod" },
                  {
                    name: "PASSWORD",
                    valueFrom: { secretKeyRef: { name: `${name}-creds`, key: "password" } },
                  },
                ],
                envFrom: [{ configMapRef: { name: `${name}-config` } }],
                resources: { requests: { cpu: "100m", memory: "64Mi" }, limits: { memory: "128Mi" } },
                readinessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 5 },
              },
            ],
          },
        },
      },
    },
  ];
}

describe("no-op reconcile", () => {
  const unit: UnitId = { env: "prod", unit: "noop" };
  const N = "t-noop";
  const desired = () => [ns(N), ...Array.from({ length: 250 }, (_, i) => app(N, i)).flat()];

  test("1,000 unchanged objects: no write, no dry-run, one LIST per resource; resourceVersions kept", async (t) => {
    const objs = desired();
    assert.equal(objs.length, 1001);
    const created = await target.apply(unit, objs, opts);
    assert.deepEqual(actions(created.changeSet), { created: 1001 });
    const before = {
      cm: await versions(`/api/v1/namespaces/${N}/configmaps`),
      deploy: await versions(`/apis/apps/v1/namespaces/${N}/deployments`),
      secret: await versions(`/api/v1/namespaces/${N}/secrets`),
    };

    // A new target: nothing remembered from the apply above, the decision is made from the live
    // objects' managed fields alone (as after Sluice restarts).
    const fresh = await createKubernetesTarget({ kubeconfig: proxy.kubeconfigPath });
    t.after(() => fresh.close());
    await fresh.inventory(unit); // connected
    proxy.clear();
    const t0 = performance.now();
    const again = await fresh.apply(unit, desired(), opts);
    const ms = performance.now() - t0;
    t.diagnostic(`no-op of ${objs.length} objects: ${Math.round(ms)} ms, ${proxy.requests.length} requests`);
    assert.deepEqual(actions(again.changeSet), { unchanged: 1001 });
    assert.deepEqual(proxy.writes(), [], "no write request");
    assert.deepEqual(
      proxy.requests.filter((r) => r.method !== "GET"),
      [],
      "no PATCH at all, not even a dry-run",
    );
    // The inventory, and one LIST each for Namespaces, ConfigMaps, Secrets, Services, Deployments.
    const lists = proxy.requests.filter((r) => r.path.includes("labelSelector="));
    assert.equal(lists.length, 5, JSON.stringify(proxy.requests));
    // Plus discovery of v1 and apps/v1 (a new target).
    assert.ok(proxy.requests.length <= 8, JSON.stringify(proxy.requests));
    assert.deepEqual(await versions(`/api/v1/namespaces/${N}/configmaps`), before.cm);
    assert.deepEqual(await versions(`/apis/apps/v1/namespaces/${N}/deployments`), before.deploy);
    assert.deepEqual(await versions(`/api/v1/namespaces/${N}/secrets`), before.secret);
  });

  test("one changed object among 1,000: one dry-run and one apply for it, nothing else written", async () => {
    const objs = desired().map((o) =>
      o.kind === "ConfigMap" && o.metadata.name === "app-7-config"
        ? cm(N, "app-7-config", { LOG_LEVEL: "debug", INDEX: "7" })
        : o,
    );
    proxy.clear();
    const res = await target.apply(unit, objs, opts);
    assert.deepEqual(actions(res.changeSet), { unchanged: 1000, configured: 1 });
    assert.match(entry(res.changeSet, `ConfigMap/${N}/app-7-config`)!.diff!, /\+\s+LOG_LEVEL: debug/);
    const patches = proxy.requests.filter((r) => r.method === "PATCH");
    assert.equal(patches.length, 2, JSON.stringify(patches));
    assert.ok(patches[0]!.dryRun && !patches[1]!.dryRun);
    assert.ok(patches.every((p) => p.path.includes("/configmaps/app-7-config?")));
  });

  test("a value the API server rewrites (a quantity): one dry-run the first time, then none", async (t) => {
    const u: UnitId = { env: "prod", unit: "quantity" };
    const N2 = "t-quantity";
    const objs = (): KubeObject[] => [
      ns(N2),
      {
        apiVersion: "v1",
        kind: "LimitRange",
        metadata: { name: "limits", namespace: N2 },
        spec: { limits: [{ type: "Container", default: { cpu: "1000m", memory: "1024Mi" } }] },
      },
    ];
    await target.apply(u, objs(), opts);
    const live = await getObj(`/api/v1/namespaces/${N2}/limitranges/limits`);
    assert.equal(live.spec.limits[0].default.cpu, "1", "the API server canonicalizes 1000m");
    // A target that has not seen these objects yet (as after Sluice restarts).
    const fresh = await createKubernetesTarget({ kubeconfig: proxy.kubeconfigPath });
    t.after(() => fresh.close());
    proxy.clear();
    const first = await fresh.apply(u, objs(), opts);
    assert.deepEqual(actions(first.changeSet), { unchanged: 2 });
    assert.deepEqual(proxy.writes(), []);
    assert.equal(proxy.requests.filter((r) => r.dryRun).length, 1, "the undecidable object is dry-run");
    proxy.clear();
    const second = await fresh.apply(u, objs(), opts);
    assert.deepEqual(actions(second.changeSet), { unchanged: 2 });
    assert.deepEqual(
      proxy.requests.filter((r) => r.method !== "GET"),
      [],
      "known unchanged at this resourceVersion",
    );
  });

  test("drift by another manager is still seen: the local check defers to a dry-run, then corrects", async () => {
    const path = `/apis/apps/v1/namespaces/${N}/deployments/app-3`;
    const r = await kube.request("PATCH", `${path}?fieldManager=kubectl-edit`, {
      body: { spec: { replicas: 5 } },
      contentType: "application/merge-patch+json",
    });
    assert.equal(r.status, 200);
    proxy.clear();
    const res = await target.apply(unit, desired(), opts);
    const e = entry(res.changeSet, `Deployment/${N}/app-3`)!;
    assert.equal(e.action, "configured");
    assert.match(e.diff!, /-\s+replicas: 5/);
    assert.match(e.diff!, /\+\s+replicas: 2/);
    assert.equal((await getObj(path)).spec.replicas, 2, "corrected");
    const deployments = proxy.writes().filter((w) => w.path.includes("/deployments/"));
    assert.deepEqual(
      deployments.map((w) => w.path.split("?")[0]),
      [path],
      "only the drifted Deployment is written",
    );
  });
});

describe("reconcile disabled", () => {
  const unit: UnitId = { env: "prod", unit: "frozen" };
  const N = "t-frozen";
  const DISABLED = { "kustomize.toolkit.fluxcd.io/reconcile": "disabled" };

  test("an annotated object is created once, then never changed: drift is reported, not corrected", async () => {
    const desired = (mode: string) => [ns(N), cm(N, "frozen", { mode }, DISABLED), cm(N, "live", { mode })];
    // Annotated in Git: not even created (as Flux).
    const first = await target.apply(unit, desired("a"), opts);
    assert.equal(entry(first.changeSet, `ConfigMap/${N}/frozen`)!.action, "skipped");
    assert.match(entry(first.changeSet, `ConfigMap/${N}/frozen`)!.reason!, /not created: reconcile disabled/);
    assert.equal(await getObj(`/api/v1/namespaces/${N}/configmaps/frozen`), undefined);

    // Applied without the annotation, then frozen in the cluster by an operator.
    await target.apply(unit, [ns(N), cm(N, "frozen", { mode: "a" }), cm(N, "live", { mode: "a" })], opts);
    const path = `/api/v1/namespaces/${N}/configmaps/frozen`;
    const edit = await kube.request("PATCH", `${path}?fieldManager=operator`, {
      body: {
        metadata: { annotations: { "sluice.dev/reconcile": "disabled" } },
        data: { mode: "hand-tuned" },
      },
      contentType: "application/merge-patch+json",
    });
    assert.equal(edit.status, 200);
    const rv = (await getObj(path)).metadata.resourceVersion;

    proxy.clear();
    const res = await target.apply(
      unit,
      [ns(N), cm(N, "frozen", { mode: "b" }), cm(N, "live", { mode: "b" })],
      opts,
    );
    const frozen = entry(res.changeSet, `ConfigMap/${N}/frozen`)!;
    assert.equal(frozen.action, "skipped");
    assert.match(frozen.reason!, /^drifted; reconcile disabled \(sluice\.dev\/reconcile: disabled\)/);
    assert.match(frozen.diff!, /-\s+mode: hand-tuned/);
    assert.match(frozen.diff!, /\+\s+mode: b/);
    assert.equal(entry(res.changeSet, `ConfigMap/${N}/live`)!.action, "configured");
    const live = await getObj(path);
    assert.equal(live.data.mode, "hand-tuned", "not corrected");
    assert.equal(live.metadata.resourceVersion, rv, "not written at all");
    assert.ok(
      proxy.writes().every((w) => !w.path.includes("/configmaps/frozen")),
      JSON.stringify(proxy.writes()),
    );

    // Same content as desired (besides the annotation): unchanged, not drifted.
    const same = await target.apply(
      unit,
      [ns(N), cm(N, "frozen", { mode: "hand-tuned" }, DISABLED), cm(N, "live", { mode: "b" })],
      opts,
    );
    assert.equal(entry(same.changeSet, `ConfigMap/${N}/frozen`)!.action, "unchanged");
  });
});

describe("field conflicts", () => {
  const unit: UnitId = { env: "prod", unit: "conflicts" };
  const N = "t-conflicts";
  const svc = (selector: Record<string, string>): KubeObject => ({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "web", namespace: N },
    spec: { selector, ports: [{ port: 80, targetPort: 8080 }] },
  });

  test("fields another manager applies: an error naming each manager and field path; taken over only with force", async () => {
    await target.apply(unit, [ns(N), cm(N, "settings", { mode: "a", size: "s" }), svc({ app: "web" })], opts);
    // Another tool applies (server-side) the same fields with other values.
    for (const [path, body] of [
      [`/api/v1/namespaces/${N}/configmaps/settings`, cm(N, "settings", { mode: "theirs", size: "xl" })],
      [
        `/api/v1/namespaces/${N}/services/web`,
        {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "web", namespace: N },
          spec: { selector: { app: "other" } },
        },
      ],
    ] as const) {
      const r = await kube.request("PATCH", `${path}?fieldManager=other-gitops&force=true`, {
        body,
        contentType: "application/apply-patch+yaml",
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const desired = [ns(N), cm(N, "settings", { mode: "a", size: "s" }), svc({ app: "web" })];
    proxy.clear();
    await assert.rejects(target.apply(unit, desired, opts), (e: Error & { code?: string; detail?: any }) => {
      assert.equal(e.code, "Conflict");
      assert.match(
        e.message,
        new RegExp(`^ConfigMap/${N}/settings apply failed: 2 fields are owned by another field manager`),
      );
      assert.match(e.message, /\.data\.mode \(field manager "other-gitops", server-side apply\)/);
      assert.match(e.message, /\.data\.size \(field manager "other-gitops", server-side apply\)/);
      assert.deepEqual(e.detail.conflicts.map((c: any) => `${c.field} ${c.manager} ${c.operation}`).sort(), [
        ".data.mode other-gitops Apply",
        ".data.size other-gitops Apply",
      ]);
      return true;
    });
    assert.deepEqual(proxy.writes(), [], "nothing written on a conflict");
    // `sluice diff` (plan) shows the change and says why applying needs force.
    const planned = await target.plan(unit, desired);
    const p = entry(planned, `ConfigMap/${N}/settings`)!;
    assert.equal(p.action, "configured");
    assert.match(
      p.reason!,
      /owned by another field manager: \.data\.mode \(field manager "other-gitops".*applying needs force: true$/,
    );
    assert.match(p.diff!, /-\s+mode: theirs/);
    assert.equal((await getObj(`/api/v1/namespaces/${N}/configmaps/settings`)).data.mode, "theirs");

    const forced = await target.apply(unit, desired, { ...opts, force: true });
    assert.equal(entry(forced.changeSet, `ConfigMap/${N}/settings`)!.action, "configured");
    assert.equal(entry(forced.changeSet, `Service/${N}/web`)!.action, "configured");
    const live = await getObj(`/api/v1/namespaces/${N}/configmaps/settings`);
    assert.deepEqual(live.data, { mode: "a", size: "s" });
    const owners = (live.metadata.managedFields as any[]).filter((m) => m.fieldsV1?.["f:data"]?.["f:mode"]);
    assert.deepEqual(
      owners.map((m) => m.manager),
      ["sluice"],
      "sluice alone owns the field it took over",
    );
    assert.deepEqual((await getObj(`/api/v1/namespaces/${N}/services/web`)).spec.selector, { app: "web" });
  });

  test("fields changed by an imperative edit (operation Update) are drift: taken back without force", async () => {
    const path = `/api/v1/namespaces/${N}/configmaps/settings`;
    const r = await kube.request("PATCH", `${path}?fieldManager=kubectl-edit`, {
      body: { data: { mode: "edited" } },
      contentType: "application/merge-patch+json",
    });
    assert.equal(r.status, 200);
    const res = await target.apply(
      unit,
      [ns(N), cm(N, "settings", { mode: "a", size: "s" }), svc({ app: "web" })],
      opts,
    );
    assert.equal(entry(res.changeSet, `ConfigMap/${N}/settings`)!.action, "configured");
    assert.equal((await getObj(path)).data.mode, "a");
  });
});

describe("API server restarts in the middle of an apply", () => {
  test("500 objects: stopped mid-apply, restarted; the next apply converges, nothing lost or duplicated", async (t) => {
    if (!cp.stopApiServer || !cp.startApiServer) {
      t.skip("needs the control plane started by the tests (not SLUICE_TEST_KUBECONFIG)");
      return;
    }
    const unit: UnitId = { env: "prod", unit: "restart" };
    const N = "t-restart";
    const desired = () => [
      ns(N),
      ...Array.from({ length: 499 }, (_, i) => cm(N, `cm-${i}`, { i: String(i) })),
    ];
    // Straight to the API server (not through the proxy): the connections really break.
    const direct = await createKubernetesTarget({ kubeconfig: cp.kubeconfigPath });
    t.after(() => direct.close());
    const applying = direct.apply(unit, desired(), opts);
    // Stop kube-apiserver (SIGKILL: no graceful drain) once part of the objects exist.
    let seen = 0;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await kube
        .request("GET", `/api/v1/namespaces/${N}/configmaps?limit=1`)
        .catch(() => undefined);
      seen = Number(r?.body?.metadata?.remainingItemCount ?? 0) + (r?.body?.items?.length ?? 0);
      if (seen >= 60) break;
      assert.ok(Date.now() < deadline, "objects did not appear");
      await new Promise((res) => setTimeout(res, 20));
    }
    await cp.stopApiServer({ kill: true });
    await assert.rejects(applying, (e: Error & { code?: string }) => {
      assert.equal(e.code, "TargetUnavailable", e.message);
      return true;
    });
    await cp.startApiServer();
    const between = (await versions(`/api/v1/namespaces/${N}/configmaps`)).size;
    t.diagnostic(`${seen}+ objects when stopped, ${between} after the failed apply (of 499 ConfigMaps)`);
    assert.ok(between > 0 && between < 499, `stopped in the middle (${between} of 499)`);

    const res = await direct.apply(unit, desired(), opts);
    const a = actions(res.changeSet);
    assert.equal((a.created ?? 0) + (a.unchanged ?? 0), 500, JSON.stringify(a));
    assert.ok((a.created ?? 0) >= 499 - between, JSON.stringify(a));
    const live = await kube.request(
      "GET",
      `/api/v1/namespaces/${N}/configmaps?labelSelector=sluice.dev/owner=prod.restart`,
    );
    const names = (live.body.items as any[]).map((i) => i.metadata.name);
    assert.equal(names.length, 499, "every object, once");
    assert.equal(new Set(names).size, 499);
    for (const i of live.body.items as any[]) assert.equal(i.data.i, i.metadata.name.slice(3));
    assert.equal((await target.inventory(unit))?.entries.length, 500);

    proxy.clear();
    const again = await target.apply(unit, desired(), opts);
    assert.deepEqual(actions(again.changeSet), { unchanged: 500 });
    assert.deepEqual(proxy.writes(), []);
  });
});
