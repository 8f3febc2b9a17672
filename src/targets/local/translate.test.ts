import assert from "node:assert/strict";
import { test } from "node:test";
import type { KubeObject } from "../../core/index.js";
import { isSluiceError } from "../../core/index.js";
import {
  type ConfigData,
  classify,
  configDataOf,
  containerCommands,
  expandVars,
  hostnameOf,
  planWorkload,
  podCreateArgs,
  podLabels,
  podNameOf,
  readinessOf,
  sanitize,
} from "./translate.js";

const unit = { env: "Prod_EU", unit: "shop" };

function dep(overrides: Record<string, unknown> = {}, replicas = 2): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "api", namespace: "shop" },
    spec: {
      replicas,
      template: {
        metadata: { labels: { app: "api", "sluice.dev/owner": "spoofed" } },
        spec: {
          containers: [
            {
              name: "app",
              image: "127.0.0.1:5000/api:abc",
              command: ["node", "$(ENTRY)"],
              args: ["--port", "$(PORT)", "$$(PORT)"],
              env: [
                { name: "PORT", value: "8080" },
                { name: "ENTRY", value: "/app/$(PORT).js" },
                { name: "TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } },
                { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
              ],
              envFrom: [{ configMapRef: { name: "settings" }, prefix: "CFG_" }],
              ports: [{ name: "http", containerPort: 8080 }],
              readinessProbe: { httpGet: { path: "/healthz", port: "http" } },
              ...overrides,
            },
          ],
        },
      },
    },
  };
}

const configs: KubeObject[] = [
  {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "settings", namespace: "shop" },
    data: { MODE: "fast" },
  },
  {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "creds", namespace: "shop" },
    data: { token: Buffer.from("hunter2").toString("base64") },
  },
];

function lookupOf(objs: KubeObject[]) {
  const m = new Map<string, ConfigData>();
  for (const o of objs) m.set(`${o.kind}/${o.metadata.namespace}/${o.metadata.name}`, configDataOf(o));
  return (kind: string, ns: string, name: string) => m.get(`${kind}/${ns}/${name}`);
}

test("classify: workloads, config, services, namespaces; everything else not applicable with a reason", () => {
  assert.equal(classify(dep()).cls, "workload");
  assert.equal(classify({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" } }).cls, "workload");
  assert.equal(classify(configs[0] as KubeObject).cls, "config");
  assert.equal(
    classify({ apiVersion: "v1", kind: "Service", metadata: { name: "s" }, spec: {} }).cls,
    "service",
  );
  assert.equal(classify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "n" } }).cls, "namespace");
  for (const kind of [
    "Ingress",
    "ClusterRole",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "CustomResourceDefinition",
    "Certificate",
  ]) {
    const c = classify({ apiVersion: "x/v1", kind, metadata: { name: "n" } });
    assert.equal(c.cls, "not-applicable", kind);
    assert.match(c.reason ?? "", /^not applicable on local: /);
  }
  const ext = classify({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "s" },
    spec: { type: "ExternalName" },
  });
  assert.equal(ext.cls, "not-applicable");
});

test("names: env and namespace prefix, sanitized; template hash ignores replicas but not template or config", () => {
  const lookup = lookupOf(configs);
  const p = planWorkload(dep(), lookup);
  assert.match(podNameOf(unit, p, 1), /^prod_eu-shop-api-[0-9a-f]{10}-1$/);
  assert.equal(sanitize("A b/c"), "a-b-c");
  assert.equal(planWorkload(dep({}, 5), lookup).hash, p.hash);
  assert.notEqual(planWorkload(dep({ image: "127.0.0.1:5000/api:def" }), lookup).hash, p.hash);
  const changedSecret = lookupOf([
    configs[0] as KubeObject,
    { ...(configs[1] as KubeObject), data: { token: "eA==" } },
  ]);
  assert.notEqual(planWorkload(dep(), changedSecret).hash, p.hash, "a changed Secret rolls the pods");
  assert.throws(
    () => planWorkload(dep(), lookupOf([])),
    (e: unknown) =>
      isSluiceError(e, "ConfigInvalid") && /ConfigMap\/shop\/settings/.test((e as Error).message),
  );
});

test("podman arguments: owner labels win, ports on 127.0.0.1, env in a file, $(VAR) expansion", () => {
  const lookup = lookupOf(configs);
  const p = planWorkload(dep(), lookup);
  const labels = podLabels(unit, p, 0);
  assert.equal(labels["sluice.dev/owner"], "Prod_EU.shop", "a template cannot spoof the owner label");
  assert.equal(labels.app, "api");
  const podName = podNameOf(unit, p, 0);
  const podArgs = podCreateArgs(p, 0, podName, labels, new Map([["8080/TCP", 41000]]));
  assert.ok(podArgs.includes("127.0.0.1:41000:8080/tcp"));
  assert.equal(podArgs[podArgs.indexOf("--hostname") + 1], hostnameOf(p, 0));
  const files = { volumeDir: () => "/nonexistent", writeFile: () => {} };
  const [c] = containerCommands(unit, p, 0, podName, lookup, files, labels);
  assert.ok(c);
  assert.ok(!c.args.join(" ").includes("hunter2"), "secret values never appear in podman's arguments");
  assert.match(c.envFile, /^TOKEN=hunter2$/m);
  assert.match(c.envFile, /^CFG_MODE=fast$/m);
  assert.match(c.envFile, /^ENTRY=\/app\/8080\.js$/m);
  assert.match(c.envFile, new RegExp(`^POD=${hostnameOf(p, 0)}$`, "m"));
  assert.equal(c.args[c.args.indexOf("--entrypoint") + 1], JSON.stringify(["node", "/app/8080.js"]));
  assert.deepEqual(c.args.slice(-4), ["127.0.0.1:5000/api:abc", "--port", "8080", "$(PORT)"]);
  assert.ok(c.args.includes("--tls-verify=false"), "a loopback registry is plain HTTP");
  assert.deepEqual(
    readinessOf(p).map((r) => [r.type, r.port, r.path]),
    [["http", 8080, "/healthz"]],
  );
});

test("a Secret value with a line break cannot go through an env file and says so", () => {
  const objs = [
    configs[0] as KubeObject,
    { ...(configs[1] as KubeObject), data: { token: Buffer.from("a\nb").toString("base64") } },
  ];
  const lookup = lookupOf(objs);
  const p = planWorkload(dep(), lookup);
  assert.throws(
    () =>
      containerCommands(
        unit,
        p,
        0,
        "x",
        lookup,
        { volumeDir: () => "/x", writeFile: () => {} },
        podLabels(unit, p, 0),
      ),
    (e: unknown) => isSluiceError(e, "ConfigInvalid") && !(e as Error).message.includes("a\nb"),
  );
});

test("unsupported volumes are refused with the volume named", () => {
  const d = dep();
  const spec = (d.spec as { template: { spec: Record<string, unknown> } }).template.spec;
  spec.volumes = [{ name: "host", hostPath: { path: "/" } }];
  assert.throws(() => planWorkload(d, lookupOf(configs)), /hostPath volume \(host\)/);
});

test("expandVars follows Kubernetes: known names expand, unknown stay, $$ escapes", () => {
  const vars = new Map([["A", "1"]]);
  assert.equal(expandVars("$(A)-$(B)-$$(A)", vars), "1-$(B)-$(A)");
});
