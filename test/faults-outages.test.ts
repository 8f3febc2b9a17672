/**
 * Outages between the agent and what it talks to, through a loopback fault proxy
 * (support/faultproxy.ts) that refuses, resets, drops, blackholes or slows connections:
 *
 * - the Git server: the fault is reported (source status, ArtifactFailed events, unit status),
 *   listings back off, nothing is pruned or destroyed while the source is unreachable (the pods
 *   survive, checked with podman by label), and the agent applies what was pushed meanwhile by
 *   itself once the fault clears;
 * - the registry: scans fail with a status and an event, the policy keeps its latest image, and
 *   the next scan after the fault picks up what was pushed meanwhile;
 * - the notification receiver (generic-hmac Provider + Alert, through `sluice serve`): a short
 *   outage is retried until delivered, a long one is given up without blocking the agent, and
 *   deliveries resume when it clears;
 * - podman itself (a wrapper that fails while a flag file exists): the apply fails with a status,
 *   is retried, the running pod survives, and the change lands once podman is back.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, get as httpGet, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import pino from "pino";
import { startServe } from "../src/cli/serve.js";
import { type Registry, startRegistry } from "../src/demo/index.js";
import { verifyWebhook } from "../src/receivers/index.js";
import { Agent } from "../src/reconcile/index.js";
import { GitSource } from "../src/source/index.js";
import { openStore } from "../src/store/index.js";
import { createLocalTarget, defaultContainersConf } from "../src/targets/local/index.js";
import { eventually, fluxConfig, harness, httpText, webApp } from "./support/agent.js";
import { type FaultMode, startFaultProxy } from "./support/faultproxy.js";
import { pushTags } from "./support/registries.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pods of an environment, by podman label: name → id. */
function pods(env: string): Map<string, string> {
  const out = execFileSync(
    "podman",
    ["pod", "ps", "--filter", `label=sluice.dev/env=${env}`, "--format", "{{.Name}} {{.Id}}"],
    { env: { ...process.env, CONTAINERS_CONF: defaultContainersConf() }, encoding: "utf8" },
  );
  return new Map(
    out
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(" ") as [string, string]),
  );
}

const cm = (name: string, v: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}}\ndata: {v: "${v}"}\n`;

describe("the fault proxy", () => {
  test("passes, delays, drops, resets, blackholes and refuses, switchable at run time", async () => {
    const server = createServer((_req, res) => res.end("x".repeat(50_000)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const p = await startFaultProxy({ targetPort: (server.address() as AddressInfo).port });
    after(async () => {
      await p.close();
      server.closeAllConnections();
      server.close();
    });
    // One new connection per request (fetch would pool them), 1.5 s at most.
    const get = () =>
      new Promise<{ ok: boolean; ms: number; err: string }>((resolve) => {
        const t0 = Date.now();
        const req = httpGet(`${p.url}/`, { agent: false, timeout: 1500 }, (res) => {
          let n = 0;
          res.on("data", (d: Buffer) => {
            n += d.length;
          });
          res.on("end", () =>
            resolve({ ok: n === 50_000, ms: Date.now() - t0, err: n === 50_000 ? "" : "short" }),
          );
          res.on("error", (e: NodeJS.ErrnoException) =>
            resolve({ ok: false, ms: Date.now() - t0, err: e.code ?? e.message }),
          );
        });
        req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
        req.on("error", (e: NodeJS.ErrnoException) =>
          resolve({ ok: false, ms: Date.now() - t0, err: e.code ?? e.message }),
        );
      });
    assert.equal((await get()).ok, true);
    await p.set("delay", { delayMs: 300 });
    const slow = await get();
    assert.ok(slow.ok && slow.ms >= 550, `delayed both ways: ${slow.ms} ms`);
    const expect: [FaultMode, RegExp][] = [
      ["drop", /ECONNRESET|socket hang up/],
      ["reset", /ECONNRESET/],
      ["blackhole", /TIMEOUT/],
      ["refuse", /ECONNREFUSED/],
    ];
    for (const [mode, err] of expect) {
      await p.set(mode);
      const r = await get();
      assert.equal(r.ok, false, mode);
      assert.match(r.err, err, mode);
    }
    await p.set("reset", { afterBytes: 1000 });
    assert.equal((await get()).ok, false, "reset in the middle of the answer");
    await p.set("pass");
    assert.equal((await get()).ok, true, "listening again on the same port after refuse");
    for (const m of ["delay", "drop", "reset", "blackhole", "refuse"] as const)
      assert.ok(p.episodes[m] >= 1, m);
  });
});

describe("outages", { timeout: 600_000 }, () => {
  test("Git server down, resetting, blackholed or slow: reported, backed off, nothing pruned, recovered by itself", async (t) => {
    const ENV = "outage-git";
    const PORT = 18631;
    const h = await harness("app", {
      "web/app.yaml": webApp({ name: "web", message: "steady", port: PORT }),
      "web/cm.yaml": cm("settings", "v0"),
    });
    const proxy = await startFaultProxy({ targetPort: Number(new URL(h.server.url).port) });
    t.after(async () => {
      await proxy.close();
      await h.cleanup();
    });
    const url = `${proxy.url}/app.git`;
    const config = fluxConfig({ env: ENV, units: ["web"], sourceInterval: "2s" })
      .replace("url: GIT_URL", `url: ${url}`)
      .replace("interval: 2s,", "interval: 2s, timeout: 3s,");
    const { agent, store } = await h.startAgent(config, { backoff: { baseMs: 200, maxMs: 2000 } });
    await eventually(
      () => store.getUnitStatus(ENV, "web")?.ready === "True",
      "Ready",
      90_000,
      () => store.getUnitStatus(ENV, "web"),
    );
    const podsBefore = pods(ENV);
    assert.equal(podsBefore.size, 1);
    const invBefore = store.getInventory(ENV, "web")!.refs.length;

    const faults: [FaultMode, { delayMs?: number; afterBytes?: number }][] = [
      ["refuse", {}],
      ["reset", {}],
      ["blackhole", {}],
      ["reset", { afterBytes: 200 }],
    ];
    let i = 0;
    let backoff: number[] = [];
    for (const [mode, opts] of faults) {
      i++;
      const artifactFailures = () =>
        store.listEvents({ limit: 100_000 }).filter((e) => e.reason === "ArtifactFailed").length;
      const failuresBefore = artifactFailures();
      const accepted = proxy.counts[mode];
      const since = Date.now();
      await proxy.set(mode, opts);
      await eventually(
        () => agent.listSources().some((s) => !s.ok),
        `the ${mode} fault reported on the source`,
        30_000,
        () => agent.listSources(),
      );
      // Pushed during the outage: applied only after it.
      const sha = await h.commitAndPush({ "web/cm.yaml": cm("settings", `v${i}`) }, "main", `during ${mode}`);
      await agent.notifyPush({ sources: ["app"] }); // a webhook during the outage changes nothing either
      await sleep(2500);
      assert.ok(artifactFailures() > failuresBefore, `${mode}: ArtifactFailed events`);
      // Nothing pruned, destroyed or rolled: same pods, same inventory, environment active, still serving.
      assert.deepEqual(pods(ENV), podsBefore, `${mode}: the pods survive the outage`);
      assert.equal(store.getInventory(ENV, "web")!.refs.length, invBefore);
      assert.equal(store.getEnvironment(ENV)?.state, "active");
      assert.equal(await httpText(PORT), "steady");
      assert.notEqual(store.getUnitStatus(ENV, "web")?.lastAppliedRevision, `main@sha1:${sha}`);
      if (mode === "reset" && !opts.afterBytes) {
        // Backoff: it keeps trying, and the gaps between attempts grow (not a tight loop).
        const at = proxy.accepted.filter((a) => a.mode === "reset" && a.at >= since).map((a) => a.at);
        const gaps = at.slice(1).map((x, k) => x - at[k]!);
        backoff = gaps;
        assert.ok(at.length >= 3, `it kept trying (${at.length} attempts)`);
        assert.ok(
          Math.max(...gaps.slice(-2)) >= 2 * Math.min(...gaps.slice(0, 2)) && Math.max(...gaps) >= 500,
          `the attempts back off: gaps ${gaps.join(", ")} ms`,
        );
        assert.ok(proxy.counts.reset - accepted < 30, "no tight loop");
      }
      await proxy.set("pass");
      await eventually(
        () => store.getUnitStatus(ENV, "web")?.lastAppliedRevision === `main@sha1:${sha}`,
        `recovery after ${mode}: the push made during the outage is applied without help`,
        60_000,
        () => [store.getUnitStatus(ENV, "web"), agent.listSources()],
      );
      assert.ok(agent.listSources().every((s) => s.ok));
    }

    // Slow: every chunk held 300 ms each way — slower, but it works, within the source's timeout.
    await proxy.set("delay", { delayMs: 300 });
    const slowSha = await h.commitAndPush(
      { "web/app.yaml": webApp({ name: "web", message: "after-slow", port: PORT }) },
      "main",
      "while slow",
    );
    await eventually(
      async () =>
        store.getUnitStatus(ENV, "web")?.lastAppliedRevision === `main@sha1:${slowSha}` &&
        (await httpText(PORT).catch(() => "")) === "after-slow",
      "a push applied over a slow link",
      90_000,
      () => [store.getUnitStatus(ENV, "web"), agent.listSources()],
    );
    await proxy.set("pass");
    assert.ok(agent.started, "the agent never stopped");
    assert.deepEqual(store.integrityCheck(), []);
    const runs = store.listRuns({ env: ENV, unit: "web", limit: 1000 });
    assert.equal(runs.filter((r) => r.result === "running").length, 0);
    process.stdout.write(
      `git outages survived: ${JSON.stringify(proxy.episodes)}, connections faulted: ${JSON.stringify(proxy.counts)}; listing attempts ${backoff.join(", ")} ms apart while resetting\n`,
    );
  });

  test("registry down, resetting, blackholed or slow: the scan fails visibly, the policy keeps its image, the next scan recovers", async (t) => {
    const data = mkdtempSync(join(tmpdir(), "sluice-outage-reg-"));
    const registry: Registry = await startRegistry({ dataDir: data });
    const proxy = await startFaultProxy({ targetPort: Number(registry.host.split(":")[1]) });
    const h = await harness("images", { "README.md": "images only\n" });
    t.after(async () => {
      await h.cleanup();
      await proxy.close();
      await registry.stop();
      rmSync(data, { recursive: true, force: true });
    });
    await pushTags(registry.url, "web", ["1.0.0"]);
    const { agent, store } = await h.startAgent(`apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: web}
spec: {image: "${proxy.host}/web", interval: 1s, timeout: 2s, insecure: true}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: web}
spec:
  imageRepositoryRef: {name: web}
  policy: {semver: {range: ">=1.0.0"}}
`);
    const status = () => agent.imageStatus();
    await eventually(() => status().policies[0]?.latestImage === `${proxy.host}/web:1.0.0`, "the first scan");
    let n = 0;
    for (const mode of ["refuse", "reset", "blackhole"] as const) {
      n++;
      await proxy.set(mode);
      const failed = await eventually(
        () => (status().repositories[0]?.ok === false ? status().repositories[0] : undefined),
        `the ${mode} fault reported on the ImageRepository`,
        20_000,
        () => status(),
      );
      assert.match(failed.message, /registry|127\.0\.0\.1|within|connect|fetch|failed/i);
      assert.ok(store.listEvents({ limit: 10_000 }).some((e) => e.reason === "ImageScanFailed"));
      // What was known stays known: no policy forgets its image because the registry is away.
      assert.equal(status().policies[0]?.latestImage, `${proxy.host}/web:1.0.${n - 1}`);
      await pushTags(registry.url, "web", [`1.0.${n}`]);
      await sleep(1500);
      assert.equal(
        status().policies[0]?.latestImage,
        `${proxy.host}/web:1.0.${n - 1}`,
        "nothing seen through the fault",
      );
      await proxy.set("pass");
      await eventually(
        () => status().policies[0]?.latestImage === `${proxy.host}/web:1.0.${n}`,
        `the next scan after ${mode} finds 1.0.${n}`,
        30_000,
        () => status(),
      );
      assert.equal(status().repositories[0]?.ok, true);
    }
    // Slow: answers 400 ms late each way, inside the 2 s timeout — found, just later.
    await proxy.set("delay", { delayMs: 400 });
    await pushTags(registry.url, "web", ["2.0.0"]);
    await eventually(
      () => status().policies[0]?.latestImage === `${proxy.host}/web:2.0.0`,
      "found over a slow link",
      30_000,
    );
    await proxy.set("pass");
    assert.ok(agent.started);
    assert.ok(
      store.listEvents({ limit: 10_000 }).filter((e) => e.reason === "ImagePolicyUpdated").length >= 4,
      "every new tag was an event",
    );
  });

  test("notification receiver down, resetting or slow: retried, given up when too long, resumed, never blocking the agent", async (t) => {
    const TOKEN = "outage-hmac-token-4242";
    const got: { body: string; verified: boolean; at: number }[] = [];
    const rcv = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      got.push({
        body: body.toString(),
        verified: verifyWebhook("generic-hmac", TOKEN, { headers: req.headers, body }).ok,
        at: Date.now(),
      });
      res.end("ok");
    });
    await new Promise<void>((r) => rcv.listen(0, "127.0.0.1", r));
    const proxy = await startFaultProxy({ targetPort: (rcv.address() as AddressInfo).port });
    const h = await harness("notify", { "conf/cm.yaml": cm("c", "0") });
    const state = mkdtempSync(join(tmpdir(), "sluice-outage-serve-"));
    let logs = "";
    const log = pino(
      { level: "warn" },
      new Writable({
        write(c, _e, done) {
          logs += c.toString();
          done();
        },
      }),
    );
    mkdirSync(join(state, "config"));
    writeFileSync(
      join(state, "config", "sluice.yaml"),
      `${fluxConfig({ env: "outage-notify", units: ["conf"], sourceInterval: "1s" }).replace("GIT_URL", h.server.repoUrl("notify"))}---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: flux-system}
stringData: {address: "${proxy.url}/hook", token: ${TOKEN}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: hook, namespace: flux-system}
spec: {type: generic-hmac, secretRef: {name: hook}, timeout: 2s}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: all, namespace: flux-system}
spec:
  providerRef: {name: hook}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: "*"}]
`,
    );
    const serve = await startServe({
      config: join(state, "config"),
      stateDir: state,
      listen: "127.0.0.1:0",
      log,
    });
    t.after(async () => {
      await serve.stop();
      await proxy.close();
      rcv.closeAllConnections();
      rcv.close();
      await h.cleanup();
      rmSync(state, { recursive: true, force: true });
    });
    const store = serve.store;
    const delivered = (sha: string) => got.some((g) => g.verified && g.body.includes(sha));
    const applied = (sha: string) =>
      store.getUnitStatus("outage-notify", "conf")?.lastAppliedRevision === `main@sha1:${sha}`;
    const push = (v: string) => h.commitAndPush({ "conf/cm.yaml": cm("c", v) }, "main", v);
    // The first apply is delivered.
    await eventually(
      () => got.some((g) => g.verified && /ReconciliationSucceeded/.test(g.body)),
      "first notification",
    );

    // Short outages (resets, then refused): the delivery is retried and arrives after the fault.
    for (const mode of ["reset", "refuse", "blackhole"] as const) {
      await proxy.set(mode);
      const sha = await push(`short-${mode}`);
      await eventually(
        () => applied(sha),
        `applied during the ${mode} outage: the agent is not blocked`,
        30_000,
      );
      await sleep(1000);
      assert.equal(delivered(sha), false, `${mode}: nothing got through`);
      await proxy.set("pass");
      await eventually(() => delivered(sha), `the ${mode} delivery retried and delivered`, 30_000);
    }

    // A long outage: the delivery is given up (bounded retries), logged, and later events still flow.
    await proxy.set("refuse");
    const lost = await push("long-outage");
    await eventually(() => applied(lost), "applied during the long outage", 30_000);
    await eventually(
      () => /notification not delivered/.test(logs),
      "the give-up logged",
      60_000,
      () => logs.slice(-2000),
    );
    await proxy.set("pass");
    const after = await push("after-long-outage");
    await eventually(() => delivered(after), "deliveries resume after the long outage", 30_000);

    // Slow: every chunk held 400 ms (connect, request, answer: about 1.2 s, under the provider's
    // 2 s timeout): delivered late, while the agent goes on applying.
    await proxy.set("delay", { delayMs: 400 });
    const slow = await push("slow");
    await eventually(() => applied(slow), "applied while the receiver is slow", 30_000);
    await eventually(() => delivered(slow), "delivered over the slow link", 60_000);
    await proxy.set("pass");
    assert.ok(
      got.every((g) => g.verified),
      "every delivery carried a valid signature",
    );
    assert.equal(got.filter((g) => g.body.includes(lost)).length <= 1, true);
    assert.ok(!logs.includes(TOKEN), "the token is never logged");
    process.stdout.write(`notification outages survived: ${JSON.stringify(proxy.episodes)}\n`);
  });

  test("podman failing for a while: the apply fails visibly and is retried, the running pod survives, the change lands after", async (t) => {
    const ENV = "outage-podman";
    const PORT = 18632;
    const h = await harness("app", {
      "web/app.yaml": webApp({ name: "web", message: "before", port: PORT }),
    });
    const flag = join(h.dir, "podman-down");
    const count = join(h.dir, "podman-failures");
    const real = execFileSync("sh", ["-c", "command -v podman"], { encoding: "utf8" }).trim();
    const wrapper = join(h.dir, "podman-wrapper.sh");
    writeFileSync(
      wrapper,
      `#!/bin/sh\nif [ -e '${flag}' ]; then\n  echo x >> '${count}'\n  echo "Error: cannot connect to the container engine (injected outage)" >&2\n  exit 125\nfi\nexec '${real}' "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
    const state = h.writeConfig(fluxConfig({ env: ENV, units: ["web"] }));
    const store = openStore(state);
    const local = await createLocalTarget({ stateDir: join(state, "local"), podmanPath: wrapper });
    const agent = new Agent({
      configPath: join(state, "config"),
      configRoot: join(state, "config"),
      store,
      source: new GitSource({ cacheDir: join(state, "git") }),
      target: () => local,
      log: pino({ level: "silent" }),
      backoff: { baseMs: 500, maxMs: 3000 },
    });
    await agent.start();
    t.after(async () => {
      rmSync(flag, { force: true });
      await agent.stop();
      await local.close();
      store.close();
      await h.cleanup();
    });
    await eventually(() => store.getUnitStatus(ENV, "web")?.ready === "True", "Ready", 90_000);
    const before = pods(ENV);
    assert.equal(before.size, 1);

    writeFileSync(flag, "");
    const sha = await h.commitAndPush(
      { "web/app.yaml": webApp({ name: "web", message: "after", port: PORT }) },
      "main",
    );
    await agent.notifyPush({ sources: ["app"] });
    const failed = await eventually(
      () => {
        const s = store.getUnitStatus(ENV, "web");
        return s?.ready === "False" && s.revision === `main@sha1:${sha}` ? s : undefined;
      },
      "the failed apply reported",
      60_000,
      () => store.getUnitStatus(ENV, "web"),
    );
    assert.match(failed.message, /podman|container engine|injected/i);
    assert.ok(store.listEvents({ env: ENV, limit: 1000 }).some((e) => e.severity === "error"));
    await sleep(4000);
    const failures = readFileSync(count, "utf8").split("\n").filter(Boolean).length;
    assert.ok(failures >= 2, `it was retried (${failures} podman calls refused)`);
    assert.deepEqual(pods(ENV), before, "the running pod survives the outage");

    rmSync(flag);
    await eventually(
      async () =>
        store.getUnitStatus(ENV, "web")?.lastAppliedRevision === `main@sha1:${sha}` &&
        (await httpText(PORT).catch(() => "")) === "after",
      "the change lands once podman is back, without help",
      90_000,
      () => store.getUnitStatus(ENV, "web"),
    );
    assert.equal(pods(ENV).size, 1, "exactly the desired pod afterwards");
    assert.ok(!existsSync(flag));
    assert.deepEqual(store.integrityCheck(), []);
    process.stdout.write(`podman outage survived: ${failures} podman calls refused\n`);
  });
});
