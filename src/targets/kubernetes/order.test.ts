import assert from "node:assert/strict";
import { test } from "node:test";
import type { KubeObject } from "../../core/index.js";
import { assess } from "./health.js";
import { applyOrder, inventoryName } from "./target.js";

const o = (kind: string, name: string, wave?: string): KubeObject => ({
  apiVersion: "v1",
  kind,
  metadata: { name, ...(wave ? { annotations: { "sluice.dev/wave": wave } } : {}) },
});

test("apply order: CRDs, Namespaces, then wave, kind order, input order", () => {
  const got = applyOrder([
    o("Widget", "w"),
    o("Deployment", "d"),
    o("ConfigMap", "late", "2"),
    o("Namespace", "n"),
    o("ConfigMap", "c"),
    o("CustomResourceDefinition", "crd", "9"),
    o("Service", "early", "-1"),
  ]).map((x) => x.metadata.name);
  assert.deepEqual(got, ["crd", "n", "early", "c", "d", "w", "late"]);
});

test("inventory names are valid object names", () => {
  assert.equal(inventoryName({ env: "Prod_EU", unit: "web/api" }), "sluice-inv-prod-eu.web-api");
  assert.equal(inventoryName({ env: "a", unit: "b-" }), "sluice-inv-a.b");
});

test("health rules", () => {
  assert.equal(assess(undefined).status, "Missing");
  const dep = (status: Record<string, unknown>) => ({
    kind: "Deployment",
    metadata: { generation: 2 },
    spec: { replicas: 3 },
    status,
  });
  assert.match(assess(dep({})).message, /Waiting for the controller/);
  assert.match(assess(dep({ observedGeneration: 1 })).message, /generation 2/);
  assert.match(assess(dep({ observedGeneration: 2, updatedReplicas: 1 })).message, /1 of 3 replicas updated/);
  assert.equal(
    assess(dep({ observedGeneration: 2, updatedReplicas: 3, replicas: 3, availableReplicas: 3 })).status,
    "Healthy",
  );
  const job = (conditions: unknown[]) => ({
    kind: "Job",
    metadata: {},
    status: { observedGeneration: 1, conditions },
  });
  assert.equal(assess(job([{ type: "Complete", status: "True" }])).status, "Healthy");
  assert.equal(
    assess(job([{ type: "Failed", status: "True", reason: "BackoffLimitExceeded" }])).status,
    "Degraded",
  );
  assert.equal(assess({ kind: "Secret", metadata: {} }).status, "Healthy");
  assert.equal(
    assess({
      kind: "Thing",
      metadata: {},
      status: { conditions: [{ type: "Ready", status: "False", reason: "Waiting" }] },
    }).status,
    "Progressing",
  );
  assert.equal(
    assess({ kind: "Thing", metadata: {}, status: { conditions: [{ type: "Ready", status: "True" }] } })
      .status,
    "Healthy",
  );
});
