/**
 * Verified delivery through the agent, the API and the CLI on the real local target: a Rollout in
 * the app's manifests switches blue/green without a failed request and rolls back instantly;
 * `sluice promote staging production` moves the staging commit to production; `sluice rollback`
 * without a standby version reverts in Git.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import pino from "pino";
import { createApiServer } from "../src/server/index.js";
import { eventually, harness, httpText, webApp } from "./support/agent.js";
import { sluice } from "./support/cli.js";

const config = (rules: string) => `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./web, interval: 1h, prune: true, timeout: 90s}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules:
${rules}`;

const rollout = `---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  workloadRef: {name: web}
  service: {name: web, port: 80}
  smokeTest: web-smoke
  strategy:
    blueGreen: {previewService: web-preview, scaleDownDelay: 10m}
---
apiVersion: sluice.dev/v1alpha1
kind: SmokeTest
metadata: {name: web-smoke}
spec:
  service: {name: web-preview, port: 80}
  checks:
    - {name: answers, http: {path: /, expect: {status: 200, contains: hello}}}
`;

async function start(h: Awaited<ReturnType<typeof harness>>, rules: string) {
  const { agent, store, local } = await h.startAgent(config(rules));
  const api = await createApiServer({ agent, store, log: pino({ level: "silent" }) });
  const token = store.addToken("alice", "operator");
  const cli = (...args: string[]) =>
    sluice(args, { env: { SLUICE_URL: api.url, SLUICE_TOKEN: token }, timeoutMs: 120_000 });
  return { agent, store, local, api, cli };
}

describe("blue/green through the agent", { timeout: 400_000 }, async () => {
  const h = await harness("bluegreen", {
    "web/app.yaml": webApp({ name: "web", message: "hello-v1", port: 80 }) + rollout,
  });
  after(() => h.cleanup());

  test("a push goes to the idle slot, is checked, then switched without a failed request; rollback is instant", async () => {
    const { store, local, api, cli } = await start(
      h,
      "    - {branch: main, name: production, protected: true}\n",
    );
    after(() => api.close());
    await eventually(() => store.getUnitStatus("production", "web")?.ready === "True", "v1 ready", 180_000);
    const addr = local.serviceAddress({ env: "production", unit: "web" }, "default", "web");
    assert.ok(addr);
    assert.equal(await httpText(addr.port), "hello-v1");

    // A client loop for the whole switch.
    let failures = 0;
    const seen: string[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        try {
          seen.push(await httpText(addr.port));
        } catch {
          failures++;
        }
      }
    })();
    await h.commitAndPush(
      { "web/app.yaml": webApp({ name: "web", message: "hello-v2", port: 80 }) + rollout },
      "main",
      "v2",
    );
    const r = await cli("reconcile", "web", "--env", "production", "--with-source");
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await httpText(addr.port)) === "hello-v2", "v2 serves", 180_000);
    await eventually(() => store.getUnitStatus("production", "web")?.ready === "True", "ready on v2", 60_000);
    stop = true;
    await loop;
    assert.equal(failures, 0, "no failed request during the switch");
    const firstV2 = seen.indexOf("hello-v2");
    assert.ok(firstV2 > 0);
    assert.ok(
      seen.slice(firstV2).every((s) => s === "hello-v2"),
      "after the switch every answer is v2",
    );

    // Instant rollback to the standby slot.
    const t0 = Date.now();
    const rb = await cli("rollback", "production", "--reason", "v2 misbehaves");
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /rolled back \(instant\)/);
    assert.equal(await httpText(addr.port), "hello-v1");
    assert.ok(Date.now() - t0 < 15_000, "the rollback (CLI process included) is quick");
    const ev = store.listEvents({ env: "production" }).find((e) => e.reason === "RolledBack");
    assert.match(ev?.message ?? "", /alice rolled back production.*why: v2 misbehaves/);
  });
});

describe("promotion and rollback in Git", { timeout: 400_000 }, async () => {
  const h = await harness("promote", {
    "web/app.yaml": webApp({ name: "web", message: "hello-${ENV}-v1", port: 0 }),
  });
  after(() => h.cleanup());

  test("promote staging production moves the commit; rollback without a standby reverts in Git", async () => {
    await h.git("push", "-q", "origin", "main:refs/heads/staging");
    const { store, local, api, cli } = await start(
      h,
      "    - {branch: main, name: production, protected: true}\n    - {branch: staging, name: staging}\n",
    );
    after(() => api.close());
    const answer = async (env: string) =>
      httpText(local.serviceAddress({ env, unit: "web" }, "default", "web")!.port);
    await eventually(
      () => ["production", "staging"].every((e) => store.getUnitStatus(e, "web")?.ready === "True"),
      "both ready",
      180_000,
    );
    assert.equal(await answer("production"), "hello-production-v1");

    const staged = await h.commitAndPush(
      { "web/app.yaml": webApp({ name: "web", message: "hello-${ENV}-v2", port: 0 }) },
      "staging",
      "v2",
    );
    await cli("reconcile", "web", "--env", "staging", "--with-source");
    await eventually(async () => (await answer("staging")) === "hello-staging-v2", "staging on v2", 120_000);

    const p = await cli("promote", "staging", "production", "--reason", "tested on staging");
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /promoted to production: fast-forward/);
    assert.equal(await h.git("ls-remote", "origin", "refs/heads/main").then((l) => l.split("\t")[0]), staged);
    await eventually(
      async () => (await answer("production")) === "hello-production-v2",
      "production on v2",
      120_000,
    );

    const rb = await cli("rollback", "production");
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /rolled back \(revert\): reverted/);
    await eventually(
      async () => (await answer("production")) === "hello-production-v1",
      "production on v1 again",
      120_000,
    );
    await h.git("fetch", "-q", "origin");
    const msg = await h.git("log", "-1", "--format=%B", "origin/main");
    assert.match(msg, /^Revert "v2"/);
    assert.match(msg, /Rolled-back-by: alice/);
    const events = store.listEvents({ env: "production" }).map((e) => `${e.reason}: ${e.message}`);
    assert.ok(events.some((e) => /^Promoted: alice promoted staging/.test(e)));
  });
});
