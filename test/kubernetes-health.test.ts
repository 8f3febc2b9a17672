/**
 * Health through the real controllers: kube-apiserver + etcd + kube-controller-manager +
 * kube-scheduler, and kwok running fake nodes (their Pods become Running and Ready the way a
 * kubelet reports them). A Deployment reaches Healthy by kstatus rules (observedGeneration,
 * updated/available replicas), a rolling update too; a Deployment whose rollout cannot progress
 * (its Pods can be scheduled nowhere) fails with the controller's ProgressDeadlineExceeded
 * before the unit's timeout.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { KubeObject } from "../src/core/index.js";
import { KubeClient } from "../src/targets/kubernetes/client.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import type { Target, UnitId } from "../src/targets/types.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

let cp: ControlPlane;
let target: Target;
let kube: KubeClient;

before(async () => {
  cp = await startControlPlane({ kwok: true, nodes: 2 });
  target = await createKubernetesTarget({ kubeconfig: cp.kubeconfigPath });
  kube = new KubeClient(cp.kubeconfigPath);
});
after(async () => {
  await target?.close();
  kube?.close();
  await cp?.stop();
});

const ns = (name: string): KubeObject => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
function deployment(
  namespace: string,
  name: string,
  extra: { image?: string; spec?: Record<string, unknown>; podSpec?: Record<string, unknown> } = {},
): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: name } },
      ...extra.spec,
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{ name: "app", image: extra.image ?? "registry.k8s.io/pause:3.10" }],
          ...extra.podSpec,
        },
      },
    },
  };
}

async function getObj(path: string): Promise<any> {
  const r = await kube.request("GET", path);
  return r.status === 200 ? r.body : undefined;
}

describe("Deployments through the real controllers", () => {
  const unit: UnitId = { env: "prod", unit: "rollout" };
  const N = "t-rollout";

  test("a Deployment becomes Healthy: ReplicaSet, Pods scheduled on fake nodes, Ready, available", async () => {
    const res = await target.apply(unit, [ns(N), deployment(N, "web")], {
      prune: true,
      wait: true,
      timeoutMs: 120_000,
    });
    assert.equal(res.health?.status, "Healthy", JSON.stringify(res.health));
    const dep = res.health!.objects.find((o) => o.subject === `Deployment/${N}/web`)!;
    assert.match(dep.message, /Deployment is available: 3 of 3 replicas/);
    const live = await getObj(`/apis/apps/v1/namespaces/${N}/deployments/web`);
    assert.equal(live.status.observedGeneration, live.metadata.generation);
    assert.equal(live.status.availableReplicas, 3);
    const pods = (await getObj(`/api/v1/namespaces/${N}/pods?labelSelector=app=web`)).items as any[];
    assert.equal(pods.length, 3);
    for (const p of pods) {
      assert.match(p.spec.nodeName, /^kwok-node-\d$/, "bound by kube-scheduler");
      assert.equal(p.status.phase, "Running");
      assert.equal(p.status.conditions.find((c: any) => c.type === "Ready").status, "True");
    }
  });

  test("a rolling update (new image) is Progressing until the new ReplicaSet is available, then Healthy", async () => {
    const desired = [ns(N), deployment(N, "web", { image: "registry.k8s.io/pause:3.9" })];
    const applied = await target.apply(unit, desired, { prune: true, wait: false, timeoutMs: 0 });
    assert.equal(
      applied.changeSet.entries.find((e) => e.subject === `Deployment/${N}/web`)?.action,
      "configured",
    );
    const res = await target.apply(unit, desired, { prune: true, wait: true, timeoutMs: 120_000 });
    assert.equal(res.health?.status, "Healthy", JSON.stringify(res.health));
    const rs = (await getObj(`/apis/apps/v1/namespaces/${N}/replicasets?labelSelector=app=web`))
      .items as any[];
    assert.equal(rs.length, 2, "old and new ReplicaSet");
    const current = rs.find((r) => r.spec.template.spec.containers[0].image.endsWith(":3.9"));
    assert.equal(current.status.readyReplicas, 3);
    assert.equal(rs.find((r) => r !== current).spec.replicas, 0, "old ReplicaSet scaled down");
  });

  test("a rollout that cannot progress fails with kstatus's reason (ProgressDeadlineExceeded) before the timeout", async () => {
    const u: UnitId = { env: "prod", unit: "stuck" };
    const N2 = "t-stuck";
    const stuck = deployment(N2, "stuck", {
      spec: { progressDeadlineSeconds: 5 },
      // No node has this label: the scheduler leaves every Pod Pending (Unschedulable).
      podSpec: { nodeSelector: { "sluice.dev/test": "no-such-node" } },
    });
    const timeoutMs = 120_000;
    const t0 = Date.now();
    await assert.rejects(
      target.apply(u, [ns(N2), stuck], { prune: true, wait: true, timeoutMs }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "HealthCheckFailed");
        assert.match(
          e.message,
          new RegExp(
            `^prod\\.stuck is not healthy: Deployment/${N2}/stuck: Degraded: Rollout failed: ProgressDeadlineExceeded`,
          ),
        );
        assert.doesNotMatch(
          e.message,
          /after \d+ms/,
          "failed on the controller's verdict, not on the timeout",
        );
        return true;
      },
    );
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < timeoutMs / 2, `failed after ${elapsed} ms`);
    const pods = (await getObj(`/api/v1/namespaces/${N2}/pods`)).items as any[];
    assert.ok(pods.length > 0);
    assert.ok(
      pods.every(
        (p) => p.status.conditions?.find((c: any) => c.type === "PodScheduled")?.reason === "Unschedulable",
      ),
    );
  });
});
