/**
 * Smoke tests through `sluice serve`: results recorded with the run, check by check, shown by
 * `sluice get checks` and the API; a wrong answer marks the unit SmokeTestFailed with what was
 * expected and what came back.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import pino from "pino";
import { startServe } from "../src/cli/serve.js";
import { eventually, harness, webApp } from "./support/agent.js";
import { sluice } from "./support/cli.js";

test("smoke-test results are recorded per check; a failing check fails the unit with expected vs actual", async () => {
  const smoke = (expect: string) => `---
apiVersion: sluice.dev/v1alpha1
kind: SmokeTest
metadata: {name: web-smoke}
spec:
  service: {name: web, port: 80}
  checks:
    - {name: port open, tcp: {}}
    - {name: greets, http: {path: /, expect: {status: 200, body: "${expect}\\n"}}}
`;
  const h = await harness("checks", {
    "web/app.yaml": webApp({ name: "web", message: "hello", port: 0 }) + smoke("hello"),
  });
  after(() => h.cleanup());
  const state = join(h.dir, "serve");
  mkdirSync(join(state, "config"), { recursive: true });
  writeFileSync(
    join(state, "config", "sluice.yaml"),
    `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: ${h.server.repoUrl("checks")}, interval: 1h, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./web, interval: 1h, prune: true, timeout: 60s}
`,
  );
  const running = await startServe({
    config: join(state, "config"),
    stateDir: state,
    listen: "127.0.0.1:0",
    log: pino({ level: "silent" }),
  });
  after(async () => {
    for (const u of ["web"]) await running.local?.destroy({ env: "default", unit: u });
    await running.stop();
  });
  const env = { SLUICE_URL: running.url, SLUICE_TOKEN: running.store.addToken("t", "viewer") };
  await eventually(() => running.store.getUnitStatus("default", "web")?.ready === "True", "ready", 120_000);
  const ok = await sluice(["get", "checks"], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /default\s+web\s+web-smoke\s+port open\s+passed/);
  assert.match(ok.stdout, /default\s+web\s+web-smoke\s+greets\s+passed\s+\d+ ms\s+200 hello/);

  const sha = await h.commitAndPush(
    { "web/app.yaml": webApp({ name: "web", message: "goodbye", port: 0 }) + smoke("hello") },
    "main",
  );
  await running.agent.notifyPush({ sources: ["app"] });
  await eventually(
    () => running.store.getUnitStatus("default", "web")?.reason === "SmokeTestFailed",
    "the smoke test fails",
    120_000,
    () => running.store.getUnitStatus("default", "web"),
  );
  assert.match(
    running.store.getUnitStatus("default", "web")!.message,
    /check "greets" failed: \/: body "?goodbye/,
  );
  const bad = await sluice(["get", "checks", "-o", "json"], { env });
  const checks = JSON.parse(bad.stdout) as {
    revision: string;
    ok: boolean;
    results: { name: string; ok: boolean; detail: string }[];
  }[];
  assert.equal(checks.length, 1);
  assert.equal(checks[0]!.ok, false);
  assert.equal(checks[0]!.revision, `main@sha1:${sha}`);
  assert.deepEqual(
    checks[0]!.results.map((r) => `${r.name} ${r.ok}`),
    ["port open true", "greets false"],
  );
  assert.match(checks[0]!.results[1]!.detail, /body goodbye\n?, expected hello/);
});
