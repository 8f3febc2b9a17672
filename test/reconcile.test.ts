/**
 * The reconciler against real engines: git over HTTP (git http-backend), the local podman target,
 * SQLite. Each test gets its own repository, agent and state.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { eventually, harness, httpText, webApp } from "./support/agent.js";

/** One GitRepository, unit `web`, and main → environment `env` (unique per test: pods are shared). */
const config = (env: string, extra = "") => `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./web
  interval: 1h
  retryInterval: 1s
  prune: true
  timeout: 60s
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: main, name: ${env}, protected: true, vars: {PORT: "18481"}}
    - {branch: "feature/*", name: "${env}-{{branch.slug}}", vars: {PORT: "18482"}}
${extra}`;

describe("reconciler", () => {
  test("a push to the watched branch is applied and healthy; the agent reports the revision", async (t) => {
    const h = await harness("app", { "web/app.yaml": webApp({ name: "web", message: "v1", port: 18471 }) });
    t.after(() => h.cleanup());
    const { agent, store } = await h.startAgent(config("r1"));
    await eventually(() => store.getUnitStatus("r1", "web")?.ready === "True", "web Ready");
    assert.equal(await httpText(18471), "v1");
    const sha = await h.commitAndPush(
      { "web/app.yaml": webApp({ name: "web", message: "v2", port: 18471 }) },
      "main",
    );
    await agent.notifyPush({ sources: ["app"] });
    await eventually(
      () => store.getUnitStatus("r1", "web")?.lastAppliedRevision === `main@sha1:${sha}`,
      "the new revision applied",
    );
    assert.equal(await httpText(18471), "v2");
    const runs = store.listRuns({ env: "r1", unit: "web" });
    assert.ok(runs.some((r) => r.result === "succeeded" && r.revision === `main@sha1:${sha}`));
  });

  test("a new branch matching a preview rule creates an environment; deleting the branch destroys it", async (t) => {
    const app = webApp({ name: "web", message: "${ENV}", port: "${PORT}" });
    const h = await harness("app", { "web/app.yaml": app });
    t.after(() => h.cleanup());
    const { agent, store, local } = await h.startAgent(config("r2"));
    await eventually(
      () => store.getUnitStatus("r2", "web")?.ready === "True",
      "r2 Ready",
      60_000,
      () => [store.listUnitStatus(), agent.listSources(), store.listEvents({})],
    );
    await h.git("checkout", "-q", "-b", "feature/x");
    await h.git("push", "-q", "origin", "feature/x");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(() => store.getUnitStatus("r2-feature-x", "web")?.ready === "True", "preview Ready");
    assert.equal(await httpText(18482), "r2-feature-x");
    assert.equal(await httpText(18481), "r2");
    await h.git("push", "-q", "origin", "--delete", "feature/x");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(() => store.getEnvironment("r2-feature-x")?.state === "destroyed", "preview destroyed");
    assert.equal(local.serviceAddress({ env: "r2-feature-x", unit: "web" }, "default", "web"), undefined);
    assert.equal(store.getInventory("r2-feature-x", "web"), undefined);
    assert.equal(store.getUnitStatus("r2", "web")?.ready, "True", "r2 untouched");
  });

  test("dependsOn: a unit waits for its dependency; a cycle is reported and nothing in it applied", async (t) => {
    const h = await harness("app", {
      "web/app.yaml": webApp({ name: "web", message: "web", port: 18473 }),
      "db/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {a: b}\n",
      "a/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: b}\n",
      "b/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {a: b}\n",
    });
    t.after(() => h.cleanup());
    const unit = (name: string, deps: string[]) => `---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: ${name}}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./${name}
  interval: 1h
  prune: true
  dependsOn: [${deps.map((d) => `{name: ${d}}`).join(", ")}]
`;
    const cfg =
      config("r3").replace("  prune: true\n", "  prune: true\n  dependsOn: [{name: db}]\n") +
      unit("db", []) +
      unit("a", ["b"]) +
      unit("b", ["a"]);
    const { store } = await h.startAgent(cfg);
    await eventually(() => store.getUnitStatus("r3", "web")?.ready === "True", "web Ready after db");
    const db = store.getUnitStatus("r3", "db")!;
    const web = store.getUnitStatus("r3", "web")!;
    assert.ok(db.lastAppliedAt! <= web.lastAppliedAt!, "db applied before web");
    const a = await eventually(() => store.getUnitStatus("r3", "a"), "a status");
    assert.equal(a.reason, "DependencyCycle");
    assert.match(a.message, /dependency cycle: (a → b → a|b → a → b)/);
    assert.equal(store.getInventory("r3", "a"), undefined, "nothing in the cycle applied");
    assert.equal(store.getInventory("r3", "b"), undefined);
  });

  test("a failing dependency holds back its dependents with DependencyNotReady", async (t) => {
    const h = await harness("app", {
      "web/app.yaml": webApp({ name: "web", message: "web", port: 18474 }),
      "db/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {a: '${UNDEFINED}'}\n",
    });
    t.after(() => h.cleanup());
    const cfg = `${config("r4").replace("  prune: true\n", "  prune: true\n  dependsOn: [{name: db}]\n")}---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: db}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./db, interval: 1h, retryInterval: 1s, prune: true}
`;
    const { store } = await h.startAgent(cfg);
    const db = await eventually(() => {
      const s = store.getUnitStatus("r4", "db");
      return s?.reason === "BuildFailed" ? s : undefined;
    }, "db BuildFailed");
    assert.match(db.message, /UNDEFINED/);
    const web = await eventually(() => store.getUnitStatus("r4", "web"), "web status");
    assert.equal(web.reason, "DependencyNotReady");
    assert.equal(store.getInventory("r4", "web"), undefined, "web not applied");
  });

  test("the Git server down: the fetch error is shown, nothing is pruned, and the agent recovers by itself", async (t) => {
    const h = await harness("app", { "web/app.yaml": webApp({ name: "web", message: "up", port: 18475 }) });
    t.after(() => h.cleanup());
    const { agent, store } = await h.startAgent(
      config("r5").replace("interval: 1h, ref", "interval: 2s, ref"),
    );
    await eventually(() => store.getUnitStatus("r5", "web")?.ready === "True", "Ready");
    h.server.setDown(true);
    await eventually(
      () => agent.listSources().some((s) => !s.ok && /503|ArtifactFailed|fail/i.test(s.message)),
      "fetch error shown",
      30_000,
    );
    assert.equal(await httpText(18475), "up", "still serving while the source is down");
    assert.ok(store.listEvents({}).some((e) => e.reason === "ArtifactFailed"));
    h.server.setDown(false);
    await h.commitAndPush({ "web/app.yaml": webApp({ name: "web", message: "back", port: 18475 }) }, "main");
    await eventually(async () => (await httpText(18475)) === "back", "recovered and applied", 60_000);
    assert.ok(agent.listSources().every((s) => s.ok));
  });
});

test("a unit over the configured object limit fails its render with the limit named, and nothing is applied", async (t) => {
  const cms = Object.fromEntries(
    Array.from({ length: 5 }, (_, i) => [
      `many/cm${i}.yaml`,
      `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm${i}}\n`,
    ]),
  );
  const h = await harness("limits", cms);
  t.after(() => h.cleanup());
  const { store, local } = await h.startAgent(
    `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: many}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./many, interval: 1h, prune: true}
`,
    { renderLimits: { maxObjects: 3 } },
  );
  await eventually(
    () => store.getUnitStatus("default", "many")?.reason === "BuildFailed",
    "the render fails",
  );
  assert.match(store.getUnitStatus("default", "many")!.message, /more than 3 objects/);
  assert.equal(await local.inventory({ env: "default", unit: "many" }), undefined, "nothing applied");
});
