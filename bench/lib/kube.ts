/**
 * Shared by the kube-apply scenarios: a real control plane, 1,000 generated objects (ConfigMaps,
 * Services, Deployments) in one namespace, and the two sides: Sluice's Kubernetes target and
 * `kubectl apply --server-side`.
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";

import { promisify } from "node:util";
import type { KubeObject } from "../../src/core/index.js";
import { toYamlStream } from "../../src/render/index.js";
import type { Target } from "../../src/targets/index.js";
import { createKubernetesTarget } from "../../src/targets/kubernetes/index.js";
import { type ControlPlane, startControlPlane } from "../../test/support/controlplane.js";

const run = promisify(execFile);

export function kubeObjects(ns: string, count: number): KubeObject[] {
  const out: KubeObject[] = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } }];
  for (let i = 0; out.length < count; i++) {
    const name = `app-${i}`;
    out.push({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: `${name}-config`, namespace: ns },
      data: { LOG_LEVEL: "info", INDEX: String(i) },
    });
    if (out.length < count) {
      out.push({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name, namespace: ns },
        // Headless: the test control plane's service IP range (a /24) cannot hold 1,000 addresses.
        spec: { clusterIP: "None", selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] },
      });
    }
    if (out.length < count) {
      out.push({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name, namespace: ns, labels: { app: name } },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name } },
            spec: {
              containers: [
                {
                  name: "app",
                  image: `registry.example/app:${i}`,
                  envFrom: [{ configMapRef: { name: `${name}-config` } }],
                },
              ],
            },
          },
        },
      });
    }
  }
  return out;
}

export interface KubeBench {
  cp: ControlPlane;
  target: Target;
  /** Applies with Sluice as unit `unit` of environment `bench`. */
  sluice(objects: KubeObject[], unit: string): Promise<{ ms: number; changed: number }>;
  /** `kubectl apply --server-side` of the same objects written to `file`. */
  kubectl(objects: KubeObject[], file: string): Promise<{ ms: number }>;
  stop(): Promise<void>;
}

export async function startKubeBench(): Promise<KubeBench> {
  const cp = await startControlPlane();
  const target = await createKubernetesTarget({ kubeconfig: cp.kubeconfigPath });
  return {
    cp,
    target,
    async sluice(objects, unit) {
      const t0 = performance.now();
      const r = await target.apply({ env: "bench", unit }, objects, {
        prune: false,
        wait: false,
        timeoutMs: 300_000,
      });
      const ms = performance.now() - t0;
      return { ms, changed: r.changeSet.entries.filter((e) => e.action !== "unchanged").length };
    },
    async kubectl(objects, file) {
      writeFileSync(file, toYamlStream(objects));
      const t0 = performance.now();
      await run(
        "kubectl",
        [
          "--kubeconfig",
          cp.kubeconfigPath,
          "apply",
          "--server-side",
          "--field-manager=kubectl-bench",
          "-f",
          file,
        ],
        {
          maxBuffer: 64 * 1024 * 1024,
        },
      );
      return { ms: performance.now() - t0 };
    },
    async stop() {
      await target.close();
      await cp.stop();
    },
  };
}
