/**
 * The reconciler against real engines: git over HTTP (git http-backend), the local podman target,
 * SQLite. Each test gets its own repository, agent and state.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { eventually, harness, httpText, webApp } from "./support/agent.js";

const config = (extra = "") => `apiVersion: source.toolkit.fluxcd.io/v1
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
${extra}`;

const environments = `---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: main, name: production, protected: true, vars: {PORT: "18481"}}
    - {branch: "feature/*", name: "preview-{{branch.slug}}", vars: {PORT: "18482"}}
`;

describe("reconciler", () => {
  test("a push to the watched branch is applied and healthy; the agent reports the revision", async () => {
    const h = await harness("app", { "web/app.yaml": webApp({ name: "web", message: "v1", port: 18471 }) });
    after(() => h.cleanup());
    const { agent, store } = await h.startAgent(config());
    await eventually(() => store.getUnitStatus("default", "web")?.ready === "True", "web Ready");
    assert.equal(await httpText(18471), "v1");
    const sha = h.commitAndPush({ "web/app.yaml": webApp({ name: "web", message: "v2", port: 18471 }) }, "main");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(async () => (await httpText(18471)) === "v2", "v2 answering", 60_000);
    const st = store.getUnitStatus("default", "web")!;
    assert.equal(st.lastAppliedRevision, `main@sha1:${sha}`);
    const runs = store.listRuns({ env: "default", unit: "web" });
    assert.ok(runs.some((r) => r.result === "succeeded" && r.revision === `main@sha1:${sha}`));
  });

  test("a new branch matching a preview rule creates an environment; deleting the branch destroys it", async () => {
    const app = webApp({ name: "web", message: "${ENV}", port: 0 }).replace("port: 0", "port: ${PORT}");
    const h = await harness("app", { "web/app.yaml": app });
    after(() => h.cleanup());
    const { agent, store, local } = await h.startAgent(config(environments));
    await eventually(() => store.getUnitStatus("production", "web")?.ready === "True", "production Ready");
    h.git("checkout", "-q", "-b", "feature/x");
    h.git("push", "-q", "origin", "feature/x");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(() => store.getUnitStatus("preview-feature-x", "web")?.ready === "True", "preview Ready");
    assert.equal(await httpText(18482), "preview-feature-x");
    assert.equal(await httpText(18481), "production");
    h.git("push", "-q", "origin", "--delete", "feature/x");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(() => store.getEnvironment("preview-feature-x")?.state === "destroyed", "preview destroyed");
    assert.equal(local.serviceAddress({ env: "preview-feature-x", unit: "web" }, "default", "web"), undefined);
    assert.equal(store.getInventory("preview-feature-x", "web"), undefined);
    assert.equal(store.getUnitStatus("production", "web")?.ready, "True", "production untouched");
  });

  test("dependsOn: a unit waits for its dependency; a cycle is reported and nothing in it applied", async () => {
    const h = await harness("app", {
      "web/app.yaml": webApp({ name: "web", message: "web", port: 18473 }),
      "db/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {a: b}\n",
      "a/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: b}\n",
      "b/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {a: b}\n",
    });
    after(() => h.cleanup());
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
    const cfg = config().replace("  prune: true\n", "  prune: true\n  dependsOn: [{name: db}]\n") + unit("db", []) + unit("a", ["b"]) + unit("b", ["a"]);
    const { store } = await h.startAgent(cfg);
    await eventually(() => store.getUnitStatus("default", "web")?.ready === "True", "web Ready after db");
    const db = store.getUnitStatus("default", "db")!;
    const web = store.getUnitStatus("default", "web")!;
    assert.ok(db.lastAppliedAt! <= web.lastAppliedAt!, "db applied before web");
    const a = await eventually(() => store.getUnitStatus("default", "a"), "a status");
    assert.equal(a.reason, "DependencyCycle");
    assert.match(a.message, /dependency cycle: (a → b → a|b → a → b)/);
    assert.equal(store.getInventory("default", "a"), undefined, "nothing in the cycle applied");
    assert.equal(store.getInventory("default", "b"), undefined);
  });

  test("a failing dependency holds back its dependents with DependencyNotReady", async () => {
    const h = await harness("app", {
      "web/app.yaml": webApp({ name: "web", message: "web", port: 18474 }),
      "db/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {a: '${UNDEFINED}'}\n",
    });
    after(() => h.cleanup());
    const cfg = `${config().replace("  prune: true\n", "  prune: true\n  dependsOn: [{name: db}]\n")}---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: db}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./db, interval: 1h, retryInterval: 1s, prune: true}
`;
    const { store } = await h.startAgent(cfg);
    const db = await eventually(() => store.getUnitStatus("default", "db")?.reason === "BuildFailed" && store.getUnitStatus("default", "db"), "db BuildFailed");
    assert.match(db.message, /UNDEFINED/);
    const web = await eventually(() => store.getUnitStatus("default", "web"), "web status");
    assert.equal(web.reason, "DependencyNotReady");
    assert.equal(store.getInventory("default", "web"), undefined, "web not applied");
  });

  test("the Git server down: the fetch error is shown, nothing is pruned, and the agent recovers by itself", async () => {
    const h = await harness("app", { "web/app.yaml": webApp({ name: "web", message: "up", port: 18475 }) });
    after(() => h.cleanup());
    const { agent, store } = await h.startAgent(config().replace("interval: 1h, ref", "interval: 2s, ref"));
    await eventually(() => store.getUnitStatus("default", "web")?.ready === "True", "Ready");
    h.server.setDown(true);
    await eventually(() => agent.listSources().some((s) => !s.ok && /503|ArtifactFailed|fail/i.test(s.message)), "fetch error shown", 30_000);
    assert.equal(await httpText(18475), "up", "still serving while the source is down");
    assert.ok(store.listEvents({}).some((e) => e.reason === "ArtifactFailed"));
    h.server.setDown(false);
    h.commitAndPush({ "web/app.yaml": webApp({ name: "web", message: "back", port: 18475 }) }, "main");
    await eventually(async () => (await httpText(18475)) === "back", "recovered and applied", 60_000);
    assert.ok(agent.listSources().every((s) => s.ok));
  });
});
