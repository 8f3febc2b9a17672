import assert from "node:assert/strict";
import { test } from "node:test";
import { ownedFieldsEqual } from "./compare.js";

/** A live Deployment as the API server returns it after `sluice` applied `desired()` (managedFields copied from kube-apiserver v1.34). */
function live(): Record<string, any> {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: "web",
      namespace: "shop",
      labels: { app: "web" },
      resourceVersion: "42",
      generation: 1,
      managedFields: [
        {
          manager: "sluice",
          operation: "Apply",
          apiVersion: "apps/v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": { "f:labels": { "f:app": {} } },
            "f:spec": {
              "f:replicas": {},
              "f:selector": {},
              "f:template": {
                "f:metadata": { "f:creationTimestamp": {}, "f:labels": { "f:app": {} } },
                "f:spec": {
                  "f:containers": {
                    'k:{"name":"web"}': {
                      ".": {},
                      "f:args": {},
                      "f:image": {},
                      "f:name": {},
                      "f:ports": {
                        'k:{"containerPort":80,"protocol":"TCP"}': { ".": {}, "f:containerPort": {} },
                      },
                    },
                  },
                },
              },
            },
          },
        },
        {
          manager: "kube-controller-manager",
          operation: "Update",
          apiVersion: "apps/v1",
          subresource: "status",
          fieldsType: "FieldsV1",
          fieldsV1: { "f:status": { "f:replicas": {} } },
        },
      ],
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: "web" } },
      strategy: { type: "RollingUpdate" },
      template: {
        metadata: { labels: { app: "web" } },
        spec: {
          containers: [
            {
              name: "web",
              image: "nginx:1.27",
              args: ["a", "b"],
              ports: [{ containerPort: 80, protocol: "TCP" }],
              imagePullPolicy: "IfNotPresent",
              terminationMessagePath: "/dev/termination-log",
            },
          ],
          restartPolicy: "Always",
        },
      },
    },
    status: { replicas: 2 },
  };
}

function desired(): Record<string, any> {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "shop", labels: { app: "web" } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" }, creationTimestamp: null },
        spec: {
          containers: [
            { name: "web", image: "nginx:1.27", args: ["a", "b"], ports: [{ containerPort: 80 }] },
          ],
        },
      },
    },
  };
}

const eq = (d: Record<string, any>, l: Record<string, any> = live(), manager = "sluice") =>
  ownedFieldsEqual(d, l, manager);

test("the owned fields equal the desired object: unchanged, defaults and others' fields ignored", () => {
  assert.deepEqual(eq(desired()), { equal: true });
});

test("any difference, or anything undecidable, answers 'differs'", () => {
  const cases: Array<[string, (d: any, l: any) => void]> = [
    ["a changed value", (d) => (d.spec.replicas = 3)],
    ["a changed value in a keyed list", (d) => (d.spec.template.spec.containers[0].image = "nginx:1.28")],
    ["an atomic list changed", (d) => d.spec.template.spec.containers[0].args.push("c")],
    ["a field added", (d) => (d.metadata.annotations = { a: "b" })],
    ["a field removed (applying would delete it)", (d) => delete d.spec.template.spec.containers[0].args],
    ["a list element added", (d) => d.spec.template.spec.containers.push({ name: "sidecar", image: "x" })],
    ["live changed by someone else", (_d, l) => (l.spec.template.spec.containers[0].image = "evil")],
    ["an owned list element gone from live", (_d, l) => (l.spec.template.spec.containers[0].ports = [])],
    ["recorded for another apiVersion", (_d, l) => (l.metadata.managedFields[0].apiVersion = "apps/v1beta2")],
    ["no Apply entry of this manager", (_d, l) => (l.metadata.managedFields[0].operation = "Update")],
    ["an unknown path element", (_d, l) => (l.metadata.managedFields[0].fieldsV1["f:spec"]["i:0"] = {})],
  ];
  for (const [what, change] of cases) {
    const d = desired();
    const l = live();
    change(d, l);
    assert.equal(eq(d, l).equal, false, what);
  }
  assert.equal(eq(desired(), live(), "someone-else").equal, false, "another manager");
});

test("list elements in another order than live: 'differs' (the dry-run decides)", () => {
  const l = live();
  l.metadata.managedFields[0].fieldsV1["f:spec"]["f:template"]["f:spec"]["f:containers"][
    'k:{"name":"side"}'
  ] = {
    ".": {},
    "f:name": {},
    "f:image": {},
  };
  l.spec.template.spec.containers.push({ name: "side", image: "s" });
  const d = desired();
  d.spec.template.spec.containers.push({ name: "side", image: "s" });
  assert.deepEqual(eq(d, l), { equal: true });
  d.spec.template.spec.containers.reverse();
  assert.equal(eq(d, l).equal, false);
});

test("Secrets: write-only stringData compared with the encoded data", () => {
  const l = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: "s",
      managedFields: [
        {
          manager: "sluice",
          operation: "Apply",
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: { "f:data": { "f:raw": {} }, "f:stringData": { "f:password": {} }, "f:type": {} },
        },
      ],
    },
    type: "Opaque",
    data: { raw: Buffer.from("r").toString("base64"), password: Buffer.from("pässword").toString("base64") },
  };
  const d = (password: string) => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "s" },
    type: "Opaque",
    data: { raw: Buffer.from("r").toString("base64") },
    stringData: { password },
  });
  assert.deepEqual(ownedFieldsEqual(d("pässword"), l, "sluice"), { equal: true });
  assert.equal(ownedFieldsEqual(d("other"), l, "sluice").equal, false);
});

test("set lists (v:) and empty values", () => {
  const l = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: "c",
      finalizers: ["b.example/x", "a.example/y"],
      managedFields: [
        {
          manager: "sluice",
          operation: "Apply",
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": { "f:annotations": {}, "f:finalizers": { ".": {}, 'v:"a.example/y"': {} } },
            "f:data": {},
          },
        },
      ],
    },
  };
  const d = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "c", annotations: {}, finalizers: ["a.example/y"] },
    data: {},
  };
  assert.deepEqual(ownedFieldsEqual(d, l, "sluice"), { equal: true });
  assert.equal(ownedFieldsEqual({ ...d, data: { k: "v" } }, l, "sluice").equal, false);
});
