/**
 * The pure parts: Rollout validation, the state machine's transitions on renders, and the objects
 * written for Kubernetes (slot Deployments, the Service selector switch, HTTPRoute weights and
 * matches) and the local proxy's policy, in each phase.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { KubeObject } from "../core/index.js";
import { abort, decide, promote, rollbackToStandby } from "./decide.js";
import {
  isRollout,
  kubernetesObjects,
  LABEL_SLOT,
  localTraffic,
  parseRollout,
  templateHash,
} from "./index.js";
import type { RolloutObject, RolloutState } from "./types.js";

function deployment(version: string, replicas = 2): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "shop", labels: { team: "a" } },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: {
          containers: [
            {
              name: "web",
              image: `registry.example/web:${version}`,
              envFrom: [{ configMapRef: { name: `web-config-${version}` } }],
            },
          ],
        },
      },
    },
  };
}

const service: KubeObject = {
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "web", namespace: "shop" },
  spec: {
    type: "NodePort",
    selector: { app: "web" },
    ports: [{ name: "http", port: 80, targetPort: 8080, nodePort: 30080 }],
  },
};

const configMap = (version: string): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: `web-config-${version}`, namespace: "shop" },
  data: { VERSION: version },
});

function rendered(version: string): KubeObject[] {
  return [configMap(version), deployment(version), service];
}

function rollout(strategy: Record<string, unknown>, extra: Record<string, unknown> = {}): RolloutObject {
  return parseRollout({
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Rollout",
    metadata: { name: "web", namespace: "shop" },
    spec: { workloadRef: { name: "web" }, service: { name: "web", port: 80 }, strategy, ...extra },
  });
}

const T0 = Date.parse("2025-01-01T00:00:00Z");

/** Renders v1 then v2 through decide(); returns the state with v2 as candidate. */
function withCandidate(r: RolloutObject): RolloutState {
  let st = decide(undefined, r, deployment("v1"), service, rendered("v1"), T0, false).st;
  delete st.adopting;
  st = decide(st, r, deployment("v2"), service, rendered("v2"), T0 + 1000, false).st;
  return st;
}

function byName(objs: KubeObject[], kind: string, name: string): any {
  return objs.find((o) => o.kind === kind && o.metadata.name === name);
}

describe("parseRollout", () => {
  test("accepts the three strategies and refuses unknown fields and ambiguous strategies", () => {
    const obj = (spec: unknown): KubeObject => ({
      apiVersion: "sluice.dev/v1alpha1",
      kind: "Rollout",
      metadata: { name: "r" },
      spec,
    });
    assert.ok(isRollout(obj({})));
    const base = { workloadRef: { name: "web" }, service: { name: "web", port: 80 } };
    assert.equal(parseRollout(obj({ ...base, strategy: { blueGreen: {} } })).name, "r");
    parseRollout(obj({ ...base, strategy: { canary: { steps: [{ setWeight: 5 }, { pause: {} }] } } }));
    parseRollout(obj({ ...base, strategy: { abTest: { match: [{ cookie: { name: "c", value: "1" } }] } } }));
    assert.throws(
      () => parseRollout(obj({ ...base, strategy: { blueGreen: { autoPromote: true, color: "x" } } })),
      /Rollout\/r: spec\.strategy\.blueGreen: unknown field color/,
    );
    assert.throws(
      () =>
        parseRollout(obj({ ...base, strategy: { blueGreen: {}, canary: { steps: [{ setWeight: 1 }] } } })),
      /exactly one of blueGreen, canary or abTest/,
    );
    assert.throws(
      () => parseRollout(obj({ ...base, strategy: { canary: { steps: [{ setWeight: 101 }] } } })),
      /spec\.strategy\.canary\.steps\.0/,
    );
    assert.throws(
      () =>
        parseRollout(
          obj({
            ...base,
            service: { name: "web", port: 80, protocol: "TCP" },
            strategy: { abTest: { match: [{ header: { name: "x", value: "1" } }] } },
          }),
        ),
      /needs service.protocol HTTP/,
    );
    assert.throws(
      () =>
        parseRollout(
          obj({
            ...base,
            strategy: {
              abTest: { match: [{ header: { name: "x", value: "1" }, cookie: { name: "c", value: "1" } }] },
            },
          }),
        ),
      /exactly one of header or cookie/,
    );
  });
});

describe("decide", () => {
  const r = rollout({ canary: { steps: [{ setWeight: 10 }] } });

  test("first sight adopts into blue; a new template starts a candidate in the other slot", () => {
    const t1 = decide(undefined, r, deployment("v1"), service, rendered("v1"), T0, true);
    assert.equal(t1.st.stable.slot, "blue");
    assert.equal(t1.st.stable.hash, templateHash(deployment("v1")));
    assert.deepEqual(t1.st.adopting, { keepOriginal: true });
    assert.deepEqual(
      t1.events.map((e) => e.type),
      ["Adopted"],
    );
    // Only replicas changed: same version, no candidate.
    delete t1.st.adopting;
    const same = decide(t1.st, r, deployment("v1", 5), service, rendered("v1"), T0, false);
    assert.equal(same.st.candidate, undefined);
    assert.equal((same.st.slots.blue!.deployment.spec as any).replicas, 5);
    const t2 = decide(same.st, r, deployment("v2"), service, rendered("v2"), T0 + 1, false);
    assert.equal(t2.st.candidate?.slot, "green");
    assert.equal(t2.st.candidate?.weight, 0);
    assert.equal(t2.st.phase, "Progressing");
    assert.deepEqual(
      t2.events.map((e) => e.type),
      ["Started"],
    );
    // Git back to v1 mid-rollout: the candidate is dropped.
    const t3 = decide(t2.st, r, deployment("v1"), service, rendered("v1"), T0 + 2, false);
    assert.equal(t3.st.candidate, undefined);
    assert.deepEqual(
      t3.events.map((e) => e.type),
      ["Cancelled"],
    );
  });

  test("an aborted version is not tried again until Git renders another one", () => {
    const st = withCandidate(r);
    const t = decide(st, r, deployment("v2"), service, rendered("v2"), T0, false);
    abort(t, T0, "smoke test failed");
    assert.equal(t.st.phase, "Aborted");
    assert.equal(t.st.rejected?.hash, templateHash(deployment("v2")));
    const again = decide(t.st, r, deployment("v2"), service, rendered("v2"), T0 + 5, false);
    assert.equal(again.st.candidate, undefined);
    assert.equal(again.events.length, 0);
    const v3 = decide(again.st, r, deployment("v3"), service, rendered("v3"), T0 + 6, false);
    assert.equal(v3.st.candidate?.hash, templateHash(deployment("v3")));
    assert.equal(v3.st.rejected, undefined);
  });

  test("promotion keeps the old stable as standby; rollback swaps back and rejects the new one", () => {
    const st = withCandidate(rollout({ blueGreen: { scaleDownDelay: "1m" } }));
    const t = decide(
      st,
      rollout({ blueGreen: { scaleDownDelay: "1m" } }),
      deployment("v2"),
      service,
      rendered("v2"),
      T0,
      false,
    );
    promote(t, T0, "test");
    assert.equal(t.st.stable.slot, "green");
    assert.deepEqual(t.st.standby, {
      slot: "blue",
      hash: templateHash(deployment("v1")),
      until: new Date(T0 + 60_000).toISOString(),
    });
    assert.ok(rollbackToStandby(t, T0 + 1, "test"));
    assert.equal(t.st.stable.slot, "blue");
    assert.equal(t.st.rejected?.hash, templateHash(deployment("v2")));
    assert.equal(t.st.standby, undefined);
  });
});

describe("kubernetesObjects", () => {
  test("blue/green: two slot Deployments, the Service selector is the switch, a preview Service", () => {
    const r = rollout({ blueGreen: {} });
    const st = withCandidate(r);
    const objs = kubernetesObjects(r, rendered("v2"), st);
    assert.deepEqual(
      objs.map((o) => `${o.kind}/${o.metadata.name}`),
      [
        "ConfigMap/web-config-v2",
        "Deployment/web-blue",
        "Deployment/web-green",
        "Service/web",
        "Service/web-preview",
        "ConfigMap/web-config-v1",
      ],
      "the stable slot keeps reading its own (generator-named) ConfigMap",
    );
    const blue = byName(objs, "Deployment", "web-blue");
    assert.equal(blue.spec.template.spec.containers[0].image, "registry.example/web:v1");
    assert.deepEqual(blue.spec.selector.matchLabels, { app: "web", [LABEL_SLOT]: "blue" });
    assert.deepEqual(blue.spec.template.metadata.labels, { app: "web", [LABEL_SLOT]: "blue" });
    assert.equal(blue.metadata.labels.team, "a");
    assert.equal(blue.spec.replicas, 2);
    const green = byName(objs, "Deployment", "web-green");
    assert.equal(green.spec.template.spec.containers[0].image, "registry.example/web:v2");
    assert.deepEqual(byName(objs, "Service", "web").spec.selector, { app: "web", [LABEL_SLOT]: "blue" });
    assert.equal(byName(objs, "Service", "web").spec.type, "NodePort", "the main Service keeps its type");
    const preview = byName(objs, "Service", "web-preview");
    assert.deepEqual(preview.spec.selector, { app: "web", [LABEL_SLOT]: "green" });
    assert.equal(preview.spec.type, "ClusterIP");
    assert.equal(preview.spec.ports[0].nodePort, undefined);

    // After the switch: the selector moves to green, blue is the standby (still scaled).
    const t = decide(st, r, deployment("v2"), service, rendered("v2"), T0, false);
    promote(t, T0, "test");
    const after = kubernetesObjects(r, rendered("v2"), t.st);
    assert.deepEqual(byName(after, "Service", "web").spec.selector, { app: "web", [LABEL_SLOT]: "green" });
    assert.equal(byName(after, "Deployment", "web-blue").spec.replicas, 2);
    // After the scale-down delay: blue scaled to 0, its old ConfigMap no longer carried.
    delete t.st.standby;
    const later = kubernetesObjects(r, rendered("v2"), t.st);
    assert.equal(byName(later, "Deployment", "web-blue").spec.replicas, 0);
    assert.equal(byName(later, "ConfigMap", "web-config-v1"), undefined);
  });

  test("canary: stable and canary Services, an HTTPRoute on the Service (GAMMA) with the weights", () => {
    const r = rollout({ canary: { steps: [{ setWeight: 20 }, { pause: {} }] } });
    const st = withCandidate(r);
    st.candidate!.weight = 20;
    const objs = kubernetesObjects(r, rendered("v2"), st);
    const route = byName(objs, "HTTPRoute", "web");
    assert.equal(route.apiVersion, "gateway.networking.k8s.io/v1");
    assert.equal(route.metadata.namespace, "shop");
    assert.deepEqual(route.spec.parentRefs, [{ group: "", kind: "Service", name: "web", port: 80 }]);
    assert.deepEqual(route.spec.rules, [
      {
        backendRefs: [
          { group: "", kind: "Service", name: "web-stable", port: 80, weight: 80 },
          { group: "", kind: "Service", name: "web-canary", port: 80, weight: 20 },
        ],
      },
    ]);
    assert.deepEqual(byName(objs, "Service", "web-stable").spec.selector, {
      app: "web",
      [LABEL_SLOT]: "blue",
    });
    assert.deepEqual(byName(objs, "Service", "web-canary").spec.selector, {
      app: "web",
      [LABEL_SLOT]: "green",
    });
    assert.deepEqual(localTraffic(st), {
      protocol: "http",
      httpPort: 80,
      rules: [
        {
          backends: [
            { selector: { app: "web", [LABEL_SLOT]: "blue" }, weight: 80 },
            { selector: { app: "web", [LABEL_SLOT]: "green" }, weight: 20 },
          ],
        },
      ],
    });
  });

  test("A/B: header and cookie matches to the canary, the rest to stable; gatewayRefs as parents", () => {
    const r = rollout(
      {
        abTest: {
          match: [
            { header: { name: "X-Version", value: "v2" } },
            { cookie: { name: "ab.group", value: "b" } },
          ],
        },
      },
      { gatewayRefs: [{ name: "public", namespace: "gw", sectionName: "https" }] },
    );
    const st = withCandidate(r);
    // Not verified yet: everything still goes to stable.
    let route = byName(kubernetesObjects(r, rendered("v2"), st), "HTTPRoute", "web");
    assert.deepEqual(
      route.spec.rules[0].backendRefs.map((b: any) => [b.name, b.weight]),
      [
        ["web-stable", 100],
        ["web-canary", 0],
      ],
    );
    st.candidate!.verified = true;
    route = byName(kubernetesObjects(r, rendered("v2"), st), "HTTPRoute", "web");
    assert.deepEqual(route.spec.parentRefs, [
      {
        group: "gateway.networking.k8s.io",
        kind: "Gateway",
        name: "public",
        namespace: "gw",
        sectionName: "https",
      },
    ]);
    assert.deepEqual(route.spec.rules, [
      {
        matches: [
          { headers: [{ type: "Exact", name: "X-Version", value: "v2" }] },
          { headers: [{ type: "RegularExpression", name: "Cookie", value: "(^|;\\s*)ab\\.group=b(;|$)" }] },
        ],
        backendRefs: [{ group: "", kind: "Service", name: "web-canary", port: 80, weight: 1 }],
      },
      { backendRefs: [{ group: "", kind: "Service", name: "web-stable", port: 80, weight: 1 }] },
    ]);
    assert.deepEqual(localTraffic(st).rules[0]?.matches, [
      { headers: [{ name: "X-Version", value: "v2" }] },
      { cookies: [{ name: "ab.group", value: "b" }] },
    ]);
  });

  test("while adopting, the Deployment's own pods keep serving", () => {
    const r = rollout({ blueGreen: {} });
    const st = decide(undefined, r, deployment("v1"), service, rendered("v1"), T0, true).st;
    const objs = kubernetesObjects(r, rendered("v1"), st);
    assert.ok(byName(objs, "Deployment", "web"), "the original Deployment stays until the slot is ready");
    assert.deepEqual(byName(objs, "Service", "web").spec.selector, { app: "web" });
    assert.deepEqual(localTraffic(st).rules, [{ backends: [{ selector: { app: "web" }, weight: 1 }] }]);
    delete st.adopting;
    const done = kubernetesObjects(r, rendered("v1"), st);
    assert.equal(byName(done, "Deployment", "web"), undefined);
    assert.deepEqual(byName(done, "Service", "web").spec.selector, { app: "web", [LABEL_SLOT]: "blue" });
  });
});
