import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startControlPlane } from "../../../test/support/controlplane.js";
import type { KubeObject } from "../../core/index.js";
import type { ChangeSet } from "../../plan/index.js";
import type { Target, UnitId } from "../types.js";
import { KubeClient } from "./client.js";
import { createKubernetesTarget, inventoryName } from "./index.js";

type ControlPlane = Awaited<ReturnType<typeof startControlPlane>>;
let cp: ControlPlane;
let target: Target;
let kube: KubeClient;

const opts = { prune: true, wait: false, timeoutMs: 10_000 };
const SECRET_VALUE = "s3cr3t-hunter2-value";
const SECRET_VALUE2 = "an0ther-s3cr3t-value";

function actions(cs: ChangeSet): Record<string, string> {
  return Object.fromEntries(cs.entries.map((e) => [e.subject, e.action]));
}

async function getObj(path: string): Promise<any> {
  const r = await kube.request("GET", path);
  return r.status === 200 ? r.body : undefined;
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
const deployment = (namespace: string, name: string, image = "nginx:1.27", replicas = 2): KubeObject => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name, namespace },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "web", image }] } },
  },
});

before(async () => {
  cp = await startControlPlane();
  target = await createKubernetesTarget({ kubeconfig: cp.kubeconfigPath });
  kube = new KubeClient(cp.kubeconfigPath);
});

after(async () => {
  await target?.close();
  kube?.close();
  await cp?.stop();
});

describe("create, no-op, update, prune", () => {
  const unit: UnitId = { env: "prod", unit: "web" };
  const N = "t-lifecycle";
  const secret = (value: string): KubeObject => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "creds", namespace: N },
    stringData: { password: value },
  });
  const service: KubeObject = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "web", namespace: N },
    spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] },
  };
  const base = () => [
    deployment(N, "web"),
    service,
    cm(N, "settings", { mode: "a" }),
    cm(N, "keep-me", { x: "1" }, { "sluice.dev/prune": "disabled" }),
    secret(SECRET_VALUE),
    ns(N),
  ];
  const everything: string[] = [];
  let versions: Record<string, string> = {};
  const paths = {
    settings: `/api/v1/namespaces/${N}/configmaps/settings`,
    keep: `/api/v1/namespaces/${N}/configmaps/keep-me`,
    deploy: `/apis/apps/v1/namespaces/${N}/deployments/web`,
    secret: `/api/v1/namespaces/${N}/secrets/creds`,
    svc: `/api/v1/namespaces/${N}/services/web`,
  };

  test("create: every object created, labelled, and recorded in the inventory ConfigMap", async () => {
    const planned = await target.plan(unit, base());
    assert.ok(
      planned.entries.every((e) => e.action === "created"),
      JSON.stringify(actions(planned)),
    );
    const res = await target.apply(unit, base(), opts);
    everything.push(JSON.stringify(planned), JSON.stringify(res));
    assert.deepEqual(actions(res.changeSet), {
      [`Namespace/${N}`]: "created",
      [`Secret/${N}/creds`]: "created",
      [`ConfigMap/${N}/settings`]: "created",
      [`ConfigMap/${N}/keep-me`]: "created",
      [`Service/${N}/web`]: "created",
      [`Deployment/${N}/web`]: "created",
    });
    assert.equal(res.changeSet.entries[0]!.subject, `Namespace/${N}`, "namespace first");
    const live = await getObj(paths.settings);
    assert.equal(live.metadata.labels["sluice.dev/owner"], "prod.web");
    assert.equal(live.metadata.labels["sluice.dev/env"], "prod");
    assert.equal(live.metadata.labels["sluice.dev/unit"], "web");
    assert.equal(live.metadata.managedFields[0].manager, "sluice");
    const inv = await getObj(`/api/v1/namespaces/sluice-system/configmaps/${inventoryName(unit)}`);
    assert.ok(inv, "inventory ConfigMap exists");
    assert.equal(JSON.parse(inv.data.entries).length, 6);
    assert.equal((await target.inventory(unit))?.entries.length, 6);
    for (const [k, p] of Object.entries(paths)) versions[k] = (await getObj(p)).metadata.resourceVersion;
  });

  test("no-op: re-applying changes nothing and keeps resourceVersions", async () => {
    const res = await target.apply(unit, base(), opts);
    assert.ok(
      res.changeSet.entries.every((e) => e.action === "unchanged"),
      JSON.stringify(actions(res.changeSet)),
    );
    for (const [k, p] of Object.entries(paths)) {
      assert.equal((await getObj(p)).metadata.resourceVersion, versions[k], `${k} resourceVersion unchanged`);
    }
  });

  test("update: changed objects configured with a masked diff; the rest unchanged", async () => {
    const desired = base().map((o) =>
      o.metadata.name === "settings"
        ? cm(N, "settings", { mode: "b" })
        : o.kind === "Secret"
          ? secret(SECRET_VALUE2)
          : o,
    );
    const planned = await target.plan(unit, desired);
    const res = await target.apply(unit, desired, opts);
    everything.push(JSON.stringify(planned), JSON.stringify(res));
    const a = actions(res.changeSet);
    assert.equal(a[`ConfigMap/${N}/settings`], "configured");
    assert.equal(a[`Secret/${N}/creds`], "configured");
    assert.equal(a[`Deployment/${N}/web`], "unchanged");
    assert.equal(a[`Service/${N}/web`], "unchanged");
    assert.deepEqual(actions(planned), a);
    const diff = res.changeSet.entries.find((e) => e.subject === `ConfigMap/${N}/settings`)!.diff!;
    assert.match(diff, /-\s+mode: a/);
    assert.match(diff, /\+\s+mode: b/);
    const sdiff = res.changeSet.entries.find((e) => e.subject === `Secret/${N}/creds`)!.diff!;
    assert.match(sdiff, /changed/);
    assert.equal((await getObj(paths.settings)).data.mode, "b");
    assert.equal((await getObj(paths.deploy)).metadata.resourceVersion, versions.deploy);
    versions = {};
  });

  test("drift: a change made by another field manager is detected and corrected", async () => {
    const r = await kube.request("PATCH", `${paths.settings}?fieldManager=someone-else`, {
      body: { data: { mode: "hacked" } },
      contentType: "application/merge-patch+json",
    });
    assert.equal(r.status, 200);
    const desired = base().map((o) =>
      o.metadata.name === "settings" ? cm(N, "settings", { mode: "b" }) : o,
    );
    desired.splice(
      desired.findIndex((o) => o.kind === "Secret"),
      1,
      secret(SECRET_VALUE2),
    );
    const planned = await target.plan(unit, desired);
    const entry = planned.entries.find((e) => e.subject === `ConfigMap/${N}/settings`)!;
    assert.equal(entry.action, "configured");
    assert.match(entry.diff!, /-\s+mode: hacked/);
    const res = await target.apply(unit, desired, opts);
    assert.equal(actions(res.changeSet)[`ConfigMap/${N}/settings`], "configured");
    assert.equal(actions(res.changeSet)[`Secret/${N}/creds`], "unchanged");
    assert.equal((await getObj(paths.settings)).data.mode, "b");
  });

  test("prune: only inventory objects no longer desired are deleted; prune-disabled skipped; others' objects survive", async () => {
    // Someone else's object with the very same labels, never in the inventory.
    const intruder = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: "intruder",
        namespace: N,
        labels: { "sluice.dev/env": "prod", "sluice.dev/unit": "web", "sluice.dev/owner": "prod.web" },
      },
      data: { a: "b" },
    };
    const made = await kube.request("POST", `/api/v1/namespaces/${N}/configmaps`, { body: intruder });
    assert.equal(made.status, 201);
    const desired = base().filter((o) => o.kind !== "ConfigMap");
    const planned = await target.plan(unit, desired);
    assert.equal(actions(planned)[`ConfigMap/${N}/settings`], "deleted");
    const res = await target.apply(unit, desired, opts);
    const a = actions(res.changeSet);
    assert.equal(a[`ConfigMap/${N}/settings`], "deleted");
    assert.equal(a[`ConfigMap/${N}/keep-me`], "skipped");
    assert.equal(a[`ConfigMap/${N}/intruder`], undefined);
    assert.equal(await getObj(paths.settings), undefined, "pruned");
    assert.ok(await getObj(paths.keep), "prune-disabled object survives");
    assert.ok(await getObj(`/api/v1/namespaces/${N}/configmaps/intruder`), "someone else's object survives");
    assert.equal(res.inventory.entries.length, 4);
    assert.equal((await target.inventory(unit))?.entries.length, 4);
  });

  test("no Secret value in any plan, diff or result", () => {
    const all = everything.join("\n");
    assert.ok(all.length > 100);
    assert.ok(!all.includes(SECRET_VALUE), "first secret value leaked");
    assert.ok(!all.includes(SECRET_VALUE2), "second secret value leaked");
    assert.ok(!all.includes(Buffer.from(SECRET_VALUE).toString("base64")), "base64 secret value leaked");
    assert.ok(!all.includes(Buffer.from(SECRET_VALUE2).toString("base64")), "base64 secret value leaked");
  });

  test("destroy: deletes the inventory's objects and the inventory", async () => {
    const cs = await target.destroy(unit);
    const a = actions(cs);
    assert.equal(a[`Deployment/${N}/web`], "deleted");
    assert.equal(a[`Secret/${N}/creds`], "deleted");
    assert.equal(a[`Namespace/${N}`], "deleted");
    assert.equal(cs.entries.at(-1)!.subject, `Namespace/${N}`, "namespace deleted last");
    assert.equal(await getObj(paths.deploy), undefined);
    assert.equal(await getObj(paths.secret), undefined);
    assert.equal(await target.inventory(unit), undefined);
    assert.equal(
      await getObj(`/api/v1/namespaces/sluice-system/configmaps/${inventoryName(unit)}`),
      undefined,
      "inventory ConfigMap deleted",
    );
  });
});

describe("ordering", () => {
  test("a CRD, its Namespace and a custom resource apply in one pass, whatever the input order", async () => {
    const unit: UnitId = { env: "prod", unit: "crd" };
    const N = "t-crd";
    const crd: KubeObject = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "widgets.example.com" },
      spec: {
        group: "example.com",
        scope: "Namespaced",
        names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
        versions: [
          {
            name: "v1",
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: "object",
                properties: { spec: { type: "object", properties: { size: { type: "integer" } } } },
              },
            },
          },
        ],
      },
    };
    const widget: KubeObject = {
      apiVersion: "example.com/v1",
      kind: "Widget",
      metadata: { name: "w1", namespace: N, annotations: { "sluice.dev/wave": "5" } },
      spec: { size: 3 },
    };
    const early = cm(N, "early", { a: "1" }, { "sluice.dev/wave": "-1" });
    const desired = [widget, cm(N, "late", { a: "1" }), early, ns(N), crd];
    const planned = await target.plan(unit, desired);
    assert.ok(
      planned.entries.every((e) => e.action === "created"),
      JSON.stringify(actions(planned)),
    );
    const res = await target.apply(unit, desired, opts);
    assert.deepEqual(
      res.changeSet.entries.map((e) => e.subject),
      [
        "CustomResourceDefinition/widgets.example.com",
        `Namespace/${N}`,
        `ConfigMap/${N}/early`,
        `ConfigMap/${N}/late`,
        `Widget/${N}/w1`,
      ],
    );
    assert.ok(res.changeSet.entries.every((e) => e.action === "created"));
    const w = await getObj(`/apis/example.com/v1/namespaces/${N}/widgets/w1`);
    assert.equal(w.spec.size, 3);
    const again = await target.apply(unit, desired, opts);
    assert.ok(
      again.changeSet.entries.every((e) => e.action === "unchanged"),
      JSON.stringify(actions(again.changeSet)),
    );
  });
});

describe("immutable fields and apply errors", () => {
  const unit: UnitId = { env: "prod", unit: "jobs" };
  const N = "t-immutable";
  const job = (image: string): KubeObject => ({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: "migrate", namespace: N },
    spec: {
      template: { spec: { restartPolicy: "Never", containers: [{ name: "m", image }] } },
    },
  });

  test("changing a Job's template is refused without force, recreated with force", async () => {
    await target.apply(unit, [ns(N), job("busybox:1")], opts);
    const path = `/apis/batch/v1/namespaces/${N}/jobs/migrate`;
    const uid = (await getObj(path)).metadata.uid;
    await assert.rejects(target.apply(unit, [ns(N), job("busybox:2")], opts), (e: Error) => {
      assert.match(e.message, new RegExp(`^Job/${N}/migrate apply failed: an immutable field changed`));
      return true;
    });
    assert.equal((await getObj(path)).metadata.uid, uid, "untouched without force");
    const res = await target.apply(unit, [ns(N), job("busybox:2")], { ...opts, force: true });
    const entry = res.changeSet.entries.find((e) => e.subject === `Job/${N}/migrate`)!;
    assert.equal(entry.action, "configured");
    assert.match(entry.reason ?? "", /recreated/);
    const live = await getObj(path);
    assert.notEqual(live.metadata.uid, uid, "a new object");
    assert.equal(live.spec.template.spec.containers[0].image, "busybox:2");
  });

  test("an invalid object fails with its subject and the API's reason", async () => {
    const bad: KubeObject = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "bad", namespace: N },
      spec: { ports: [{ port: 70000 }] },
    };
    await assert.rejects(target.apply(unit, [ns(N), bad], opts), (e: Error) => {
      assert.match(e.message, new RegExp(`^Service/${N}/bad apply failed: .*port`));
      return true;
    });
  });
});

describe("health", () => {
  test("a Deployment is Progressing until its status says the rollout is complete", async () => {
    const unit: UnitId = { env: "prod", unit: "health" };
    const N = "t-health";
    const res = await target.apply(unit, [ns(N), deployment(N, "api"), cm(N, "c", { a: "b" })], opts);
    const refs = res.inventory.entries;
    let h = await target.health(unit, refs);
    assert.equal(h.status, "Progressing");
    const dep = h.objects.find((o) => o.subject === `Deployment/${N}/api`)!;
    assert.equal(dep.status, "Progressing");
    assert.match(dep.message, /Waiting/);
    assert.equal(h.objects.find((o) => o.subject === `ConfigMap/${N}/c`)!.status, "Healthy");

    await assert.rejects(
      target.apply(unit, [ns(N), deployment(N, "api"), cm(N, "c", { a: "b" })], {
        ...opts,
        wait: true,
        timeoutMs: 1500,
      }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "HealthCheckFailed");
        assert.match(e.message, new RegExp(`Deployment/${N}/api: Progressing`));
        return true;
      },
    );

    const path = `/apis/apps/v1/namespaces/${N}/deployments/api`;
    const live = await getObj(path);
    const setStatus = async (status: Record<string, unknown>) => {
      const r = await kube.request("PATCH", `${path}/status`, {
        body: { status: { observedGeneration: live.metadata.generation, ...status } },
        contentType: "application/merge-patch+json",
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    };
    await setStatus({ replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1 });
    h = await target.health(unit, refs);
    assert.equal(h.status, "Progressing");
    assert.match(
      h.objects.find((o) => o.subject === `Deployment/${N}/api`)!.message,
      /1 of 2 replicas available/,
    );

    await setStatus({ replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 });
    h = await target.health(unit, refs);
    assert.equal(h.status, "Healthy", JSON.stringify(h));
    const waited = await target.apply(unit, [ns(N), deployment(N, "api"), cm(N, "c", { a: "b" })], {
      ...opts,
      wait: true,
      timeoutMs: 5000,
    });
    assert.equal(waited.health?.status, "Healthy");

    await setStatus({
      conditions: [
        { type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded", message: "too slow" },
      ],
    });
    h = await target.health(unit, refs);
    assert.equal(h.status, "Degraded");
    assert.match(
      h.objects.find((o) => o.subject === `Deployment/${N}/api`)!.message,
      /ProgressDeadlineExceeded/,
    );
  });
});
