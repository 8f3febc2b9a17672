/**
 * Rollouts on the local target, against real podman: blue/green, canary, A/B, smoke-test aborts,
 * rollback and a restart in the middle of a canary. The app is busybox httpd answering its version
 * on `/` and `ok`/`fail` on `/health.txt` (the smoke test). Every pod carries
 * `sluice.dev/env=<a test env>`; `after()` removes them by that label.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { smokeTestSpec } from "../src/config/index.js";
import type { KubeObject } from "../src/core/index.js";
import {
  parseRollout,
  RolloutEngine,
  type RolloutReconcileResult,
  type SmokeTestRef,
  type StateStore,
} from "../src/rollouts/index.js";
import {
  BUSYBOX_IMAGE,
  createLocalTarget,
  ensureBaseImages,
  type LocalTarget,
  Podman,
} from "../src/targets/local/index.js";
import type { UnitId } from "../src/targets/types.js";

const podman = new Podman();
const run = `ro${process.pid.toString(36)}`;
const envs = new Set<string>();
const dirs: string[] = [];
const targets = new Set<LocalTarget>();

function envName(s: string): string {
  const e = `${run}-${s}`;
  envs.add(e);
  return e;
}

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), "sluice-rollouts-test-"));
  dirs.push(d);
  return d;
}

async function target(dir: string): Promise<LocalTarget> {
  const t = await createLocalTarget({ stateDir: dir, monitorIntervalMs: 1000 });
  targets.add(t);
  return t;
}

async function closeTarget(t: LocalTarget): Promise<void> {
  await t.close();
  targets.delete(t);
}

before(async () => {
  await ensureBaseImages({ log: () => {} });
});

after(async () => {
  for (const t of targets) await t.close();
  for (const env of envs) {
    const pods = await podman.json<{ Id: string }[]>([
      "pod",
      "ps",
      "--format",
      "json",
      "--filter",
      `label=sluice.dev/env=${env}`,
    ]);
    if (pods.length) await podman.run(["pod", "rm", "-f", "-t", "0", "--ignore", ...pods.map((p) => p.Id)]);
    const ctrs = await podman.json<{ Id: string }[]>([
      "ps",
      "-a",
      "--format",
      "json",
      "--filter",
      `label=sluice.dev/env=${env}`,
    ]);
    if (ctrs.length) await podman.run(["rm", "-f", "-t", "0", "--ignore", ...ctrs.map((c) => c.Id)]);
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// ---------------------------------------------------------------- the app

/** The Deployment and Service of `web` at `version`; `health` is what /health.txt answers. */
function app(version: string, health: "ok" | "fail" = "ok"): KubeObject[] {
  return [
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web" },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: "web",
                image: BUSYBOX_IMAGE,
                command: [
                  "sh",
                  "-c",
                  `mkdir -p /www && echo ${version} > /www/index.html && echo ${health} > /www/health.txt && exec httpd -f -p 8080 -h /www`,
                ],
                ports: [{ name: "http", containerPort: 8080 }],
                readinessProbe: { httpGet: { path: "/", port: "http" }, periodSeconds: 1 },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web" },
      spec: { selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "http" }] },
    },
  ];
}

const smoke: SmokeTestRef = {
  name: "web-smoke",
  namespace: undefined,
  spec: smokeTestSpec.parse({
    service: { name: "web", port: 80 },
    timeout: "3s",
    checks: [
      { name: "port open", tcp: {} },
      { name: "healthy", http: { path: "/health.txt", expect: { status: 200, body: "ok\n" } } },
    ],
  }),
};

function rollout(strategy: Record<string, unknown>) {
  return parseRollout({
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Rollout",
    metadata: { name: "web" },
    spec: {
      workloadRef: { name: "web" },
      service: { name: "web", port: "http" },
      smokeTest: "web-smoke",
      strategy,
    },
  });
}

class MemoryStore implements StateStore {
  readonly m = new Map<string, string>();
  get(k: string) {
    return this.m.get(k);
  }
  set(k: string, v: string) {
    this.m.set(k, v);
  }
  delete(k: string) {
    this.m.delete(k);
  }
}

const applyOpts = { prune: true, wait: true, timeoutMs: 60_000 };

// ---------------------------------------------------------------- HTTP clients

function get(
  port: number,
  opts: { agent?: http.Agent; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: "127.0.0.1",
        port,
        path: "/",
        agent: opts.agent ?? false,
        headers: opts.headers ?? {},
        timeout: 8000,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

async function shares(
  port: number,
  n: number,
  headers?: Record<string, string>,
): Promise<Record<string, number>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const counts: Record<string, number> = {};
  try {
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        const r = await get(port, { agent, ...(headers ? { headers } : {}) });
        const k = r.status === 200 ? r.body : `status ${r.status}`;
        counts[k] = (counts[k] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    agent.destroy();
  }
  return counts;
}

interface Sample {
  start: number;
  end: number;
  body?: string;
  error?: string;
}

/** A client loop: `workers` concurrent keep-alive clients requesting `/` until stopped. */
class Load {
  readonly samples: Sample[] = [];
  private running = true;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  private readonly done: Promise<unknown>;

  constructor(port: number, workers = 3) {
    const worker = async () => {
      while (this.running) {
        const start = Date.now();
        try {
          const r = await get(port, { agent: this.agent });
          this.samples.push({
            start,
            end: Date.now(),
            ...(r.status === 200 ? { body: r.body } : { error: `status ${r.status}` }),
          });
        } catch (e) {
          this.samples.push({ start, end: Date.now(), error: (e as Error).message });
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    this.done = Promise.all(Array.from({ length: workers }, worker));
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    this.agent.destroy();
  }

  failures(): Sample[] {
    return this.samples.filter((s) => s.error);
  }

  bodiesStartedAfter(t: number, until = Number.POSITIVE_INFINITY): Set<string | undefined> {
    return new Set(this.samples.filter((s) => s.start >= t && s.start < until).map((s) => s.body ?? s.error));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function slotPods(env: string, slot: string): Promise<string[]> {
  const pods = await podman.json<{ Name: string }[]>([
    "pod",
    "ps",
    "--format",
    "json",
    "--filter",
    `label=sluice.dev/env=${env}`,
    "--filter",
    `label=sluice.dev/workload=Deployment/web-${slot}`,
  ]);
  return pods.map((p) => p.Name);
}

function summary(r: RolloutReconcileResult): string {
  return r.rollouts.map((x) => `${x.phase}: ${x.message}`).join("; ");
}

// ---------------------------------------------------------------- blue/green

describe("blue/green", () => {
  const env = envName("bg");
  const unit: UnitId = { env, unit: "web" };
  const dir = stateDir();
  const store = new MemoryStore();
  const engine = new RolloutEngine({ store });
  const ro = rollout({ blueGreen: { scaleDownDelay: "10m" } });
  let t: LocalTarget;
  let port = 0;
  const reconcile = (objects: KubeObject[]) =>
    engine.reconcile({ unit, target: t, objects, rollouts: [ro], smokeTests: [smoke], apply: applyOpts });

  test("v1 is adopted into slot blue and serves", async () => {
    t = await target(dir);
    const r = await reconcile(app("v1"));
    assert.equal(r.rollouts[0]?.phase, "Healthy", summary(r));
    assert.equal(r.rollouts[0]?.stable.slot, "blue");
    port = t.serviceAddress(unit, "default", "web")!.port;
    assert.equal((await get(port)).body, "v1");
    assert.ok(t.serviceAddress(unit, "default", "web-preview"), "the preview Service has an address");
    assert.deepEqual(r.apply.inventory.entries.map((e) => `${e.kind}/${e.name}`).sort(), [
      "Deployment/web-blue",
      "Service/web",
      "Service/web-preview",
    ]);
  });

  test("v1 → v2 under continuous load: no failed request, every response after the switch is v2", async () => {
    const load = new Load(port);
    await sleep(500);
    const r = await reconcile(app("v2"));
    await sleep(1500);
    await load.stop();
    const promoted = [...(r.rollouts[0]?.history ?? [])].reverse().find((h) => h.event === "Promoted");
    assert.ok(promoted, "promoted");
    const switched = Date.parse(promoted.at);
    assert.equal(r.rollouts[0]?.phase, "Healthy", summary(r));
    assert.equal(r.rollouts[0]?.stable.slot, "green");
    assert.equal(r.rollouts[0]?.standby?.slot, "blue");
    const types = r.events.map((e) => e.type);
    assert.ok(types.includes("SmokeTestPassed") && types.includes("Promoted"), types.join(","));
    assert.match(r.events.find((e) => e.type === "SmokeTestPassed")!.message, /web-preview/);
    assert.deepEqual(load.failures(), [], "no failed request");
    const beforeSwitch = load.samples.filter((s) => s.end < switched);
    assert.deepEqual(new Set(beforeSwitch.map((s) => s.body)), new Set(["v1"]), "before the switch, only v1");
    assert.deepEqual(load.bodiesStartedAfter(switched + 50), new Set(["v2"]), "after the switch, only v2");
    console.log(
      `blue/green: ${load.samples.length} requests during the switch, 0 failed; reconcile took ${r.events.length} events`,
    );
    // Both slots run: v1 is the standby for an instant rollback.
    assert.equal((await slotPods(env, "blue")).length, 1);
    assert.equal((await slotPods(env, "green")).length, 1);
  });

  test("rollback returns to v1 within 1 s with no failed request; the next reconcile keeps v1", async () => {
    const load = new Load(port);
    await sleep(500);
    const t0 = Date.now();
    const res = await engine.rollback(t, unit);
    const took = Date.now() - t0;
    assert.ok(res, "an instant rollback was possible");
    const back = Date.now();
    await sleep(1000);
    assert.ok(took < 1000, `rollback took ${took} ms`);
    assert.deepEqual(load.bodiesStartedAfter(back), new Set(["v1"]));
    // The lead reconciles again: Git still says v2, which stays rejected; its slot is scaled down.
    const r = await reconcile(app("v2"));
    await sleep(300);
    await load.stop();
    assert.deepEqual(load.failures(), [], "no failed request");
    assert.deepEqual(load.bodiesStartedAfter(back), new Set(["v1"]));
    assert.equal(r.rollouts[0]?.phase, "Aborted", summary(r));
    assert.equal(r.rollouts[0]?.stable.slot, "blue");
    assert.equal(r.rollouts[0]?.rejected?.reason, "rolled back by a user");
    assert.deepEqual(await slotPods(env, "green"), [], "the rolled-back slot is scaled down");
    console.log(`rollback: switched in ${took} ms; ${load.samples.length} requests, 0 failed`);
  });

  test("a v3 failing its smoke test never receives production traffic", async () => {
    const load = new Load(port);
    const r = await reconcile(app("v3", "fail"));
    await sleep(300);
    await load.stop();
    assert.equal(r.rollouts[0]?.phase, "Aborted", summary(r));
    assert.match(r.rollouts[0]?.message ?? "", /smoke test web-smoke failed on web-preview/);
    assert.ok(r.events.some((e) => e.type === "SmokeTestFailed"));
    assert.deepEqual(load.failures(), []);
    const bodies = new Set(load.samples.map((s) => s.body));
    assert.deepEqual(bodies, new Set(["v1"]), "production only ever saw v1");
    assert.deepEqual(await slotPods(env, "green"), [], "the failed version is scaled down");
    // Reconciling the same (failing) render again does not try it again.
    const again = await reconcile(app("v3", "fail"));
    assert.equal(again.rollouts[0]?.phase, "Aborted");
    assert.ok(!again.events.some((e) => e.type === "Started"));
    // Git back to v1 (a revert): healthy again.
    const back = await reconcile(app("v1"));
    assert.equal(back.rollouts[0]?.phase, "Healthy", summary(back));
  });
});

// ---------------------------------------------------------------- canary

describe("canary", () => {
  const env = envName("canary");
  const unit: UnitId = { env, unit: "web" };
  const dir = stateDir();
  const store = new MemoryStore();
  let skew = 0;
  const clock = () => Date.now() + skew;
  let engine = new RolloutEngine({ store, now: clock });
  const ro = rollout({
    canary: {
      steps: [{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }, { pause: { duration: "1h" } }],
      scaleDownDelay: "0s",
    },
  });
  let t: LocalTarget;
  let port = 0;
  const reconcile = (objects: KubeObject[]) =>
    engine.reconcile({ unit, target: t, objects, rollouts: [ro], smokeTests: [smoke], apply: applyOpts });

  test("a v2 failing its smoke test is aborted before it gets any traffic", async () => {
    t = await target(dir);
    const r1 = await reconcile(app("v1"));
    assert.equal(r1.rollouts[0]?.phase, "Healthy", summary(r1));
    port = t.serviceAddress(unit, "default", "web")!.port;
    const load = new Load(port);
    const r = await reconcile(app("v2-bad", "fail"));
    await load.stop();
    assert.equal(r.rollouts[0]?.phase, "Aborted", summary(r));
    assert.match(r.rollouts[0]?.message ?? "", /web-canary/);
    assert.deepEqual(new Set(load.samples.map((s) => s.body ?? s.error)), new Set(["v1"]));
  });

  test("at 10% over 2,000 requests v2 serves 10% ± 3%", async () => {
    const r = await reconcile(app("v2"));
    assert.equal(r.rollouts[0]?.phase, "Paused", summary(r));
    assert.equal(r.rollouts[0]?.candidate?.weight, 10);
    assert.equal(r.rollouts[0]?.candidate?.step, 1);
    assert.equal(r.requeueAfterMs, undefined, "an open pause needs no timer");
    const c = await shares(port, 2000);
    const share = (c.v2 ?? 0) / 2000;
    console.log(`canary 10%: ${JSON.stringify(c)} → ${(share * 100).toFixed(1)}% v2`);
    assert.equal((c.v1 ?? 0) + (c.v2 ?? 0), 2000, JSON.stringify(c));
    assert.ok(Math.abs(share - 0.1) <= 0.03, `share ${share}`);
  });

  test("resume → 50%: over 2,000 requests v2 serves 50% ± 4%", async () => {
    await engine.resume(t, unit);
    const r = await reconcile(app("v2"));
    assert.equal(r.rollouts[0]?.phase, "Paused", summary(r));
    assert.equal(r.rollouts[0]?.candidate?.weight, 50);
    assert.equal(r.rollouts[0]?.candidate?.step, 3);
    assert.ok(r.requeueAfterMs! > 3_500_000 && r.requeueAfterMs! <= 3_600_000, `requeue ${r.requeueAfterMs}`);
    const c = await shares(port, 2000);
    const share = (c.v2 ?? 0) / 2000;
    console.log(`canary 50%: ${JSON.stringify(c)} → ${(share * 100).toFixed(1)}% v2`);
    assert.equal((c.v1 ?? 0) + (c.v2 ?? 0), 2000, JSON.stringify(c));
    assert.ok(Math.abs(share - 0.5) <= 0.04, `share ${share}`);
  });

  test("a restart (new engine, new target, same state) resumes at the same step and weight", async () => {
    await closeTarget(t);
    t = await target(dir);
    engine = new RolloutEngine({ store, now: clock });
    // Before any reconcile, the restarted proxy already splits as before.
    const early = await shares(port, 400);
    assert.ok(Math.abs((early.v2 ?? 0) / 400 - 0.5) <= 0.05, JSON.stringify(early));
    const r = await reconcile(app("v2"));
    assert.equal(r.rollouts[0]?.phase, "Paused", summary(r));
    assert.equal(r.rollouts[0]?.candidate?.step, 3);
    assert.equal(r.rollouts[0]?.candidate?.weight, 50);
    assert.ok(r.requeueAfterMs! < 3_600_000 && r.requeueAfterMs! > 3_000_000, `requeue ${r.requeueAfterMs}`);
    assert.ok(!r.events.some((e) => e.type === "StepCompleted" || e.type === "Started"), "nothing restarted");
  });

  test("after the pause v2 is promoted to 100%", async () => {
    skew += 3_600_000;
    const load = new Load(port);
    const r = await reconcile(app("v2"));
    const done = Date.now();
    await sleep(500);
    await load.stop();
    assert.equal(r.rollouts[0]?.phase, "Healthy", summary(r));
    assert.equal(r.rollouts[0]?.stable.slot, "green");
    assert.deepEqual(load.failures(), []);
    assert.deepEqual(load.bodiesStartedAfter(done), new Set(["v2"]));
    // scaleDownDelay 0s: the old slot is gone at once.
    assert.deepEqual(await slotPods(env, "blue"), []);
  });

  test("a canary that starts failing mid-way is aborted automatically to 0%", async () => {
    const r1 = await reconcile(app("v3"));
    assert.equal(r1.rollouts[0]?.candidate?.weight, 10, summary(r1));
    // v3 breaks while at 10%: its health file now says fail.
    const [pod] = await slotPods(env, "blue");
    const ctrs = await podman.json<{ Names: string[]; IsInfra: boolean }[]>([
      "ps",
      "--format",
      "json",
      "--filter",
      `pod=${pod}`,
    ]);
    const ctr = ctrs.find((c) => !c.IsInfra)!.Names[0]!;
    await podman.run(["exec", ctr, "sh", "-c", "echo fail > /www/health.txt"]);
    await engine.resume(t, unit);
    const load = new Load(port);
    const r = await reconcile(app("v3"));
    const aborted = Date.now();
    await sleep(300);
    await load.stop();
    assert.equal(r.rollouts[0]?.phase, "Aborted", summary(r));
    assert.ok(r.events.some((e) => e.type === "SmokeTestFailed"));
    assert.deepEqual(load.failures(), []);
    assert.deepEqual(load.bodiesStartedAfter(aborted), new Set(["v2"]), "0% to v3 after the abort");
    const c = await shares(port, 200);
    assert.deepEqual(c, { v2: 200 });
  });

  test("an abort while a reconcile waits for the new version wins: it never gets traffic", async () => {
    const load = new Load(port);
    const pending = reconcile(app("v4"));
    // The candidate is recorded before the apply; abort it while its pod starts.
    const deadline = Date.now() + 10_000;
    while (!engine.status(unit)[0]?.candidate && Date.now() < deadline) await sleep(20);
    const a = await engine.abort(t, unit);
    assert.equal(a.rollouts[0]?.phase, "Aborted");
    const r = await pending;
    await sleep(300);
    await load.stop();
    assert.equal(r.rollouts[0]?.phase, "Aborted", summary(r));
    assert.equal(r.rollouts[0]?.rejected?.reason, "aborted by a user");
    assert.ok(!r.events.some((e) => e.type === "StepCompleted"), "no step ran after the abort");
    assert.deepEqual(load.failures(), []);
    assert.deepEqual(new Set(load.samples.map((s) => s.body)), new Set(["v2"]));
    assert.deepEqual(await slotPods(env, "blue"), [], "the aborted version is scaled down");
  });
});

// ---------------------------------------------------------------- A/B

describe("A/B", () => {
  const env = envName("ab");
  const unit: UnitId = { env, unit: "web" };
  const dir = stateDir();
  const engine = new RolloutEngine({ store: new MemoryStore() });
  const ro = rollout({
    abTest: {
      match: [{ header: { name: "X-Version", value: "v2" } }, { cookie: { name: "version", value: "v2" } }],
    },
  });
  let t: LocalTarget;
  const reconcile = (objects: KubeObject[]) =>
    engine.reconcile({ unit, target: t, objects, rollouts: [ro], smokeTests: [smoke], apply: applyOpts });

  test("requests with the header (or cookie) go to v2, all others to v1, always", async () => {
    t = await target(dir);
    await reconcile(app("v1"));
    const port = t.serviceAddress(unit, "default", "web")!.port;
    const r = await reconcile(app("v2"));
    assert.equal(r.rollouts[0]?.phase, "Paused", summary(r));
    assert.match(r.rollouts[0]?.message ?? "", /A\/B test/);
    assert.deepEqual(await shares(port, 300, { "x-version": "v2" }), { v2: 300 });
    assert.deepEqual(await shares(port, 300, { cookie: "a=1; version=v2" }), { v2: 300 });
    assert.deepEqual(await shares(port, 300), { v1: 300 });
    assert.deepEqual(await shares(port, 300, { "x-version": "v3", cookie: "version=v1" }), { v1: 300 });
    // Promote: everyone gets v2.
    const p = await engine.promote(t, unit);
    assert.equal(p.rollouts[0]?.phase, "Healthy");
    assert.deepEqual(await shares(port, 100), { v2: 100 });
  });
});

// ---------------------------------------------------------------- adoption and removal

describe("adopting a running Deployment and removing the Rollout again", () => {
  const env = envName("adopt");
  const unit: UnitId = { env, unit: "web" };
  const dir = stateDir();
  const store = new MemoryStore();
  const engine = new RolloutEngine({ store });
  const ro = rollout({ blueGreen: {} });
  let t: LocalTarget;
  let port = 0;

  test("a unit without Rollouts is applied as by the target itself", async () => {
    t = await target(dir);
    const r = await engine.reconcile({
      unit,
      target: t,
      objects: app("v1"),
      rollouts: [],
      smokeTests: [],
      apply: applyOpts,
    });
    assert.deepEqual(r.rollouts, []);
    assert.equal(r.apply.health?.status, "Healthy");
    assert.deepEqual(r.apply.inventory.entries.map((e) => `${e.kind}/${e.name}`).sort(), [
      "Deployment/web",
      "Service/web",
    ]);
    port = t.serviceAddress(unit, "default", "web")!.port;
  });

  test("adding a Rollout moves the pods into slot blue without a failed request", async () => {
    const load = new Load(port);
    await sleep(300);
    const r = await engine.reconcile({
      unit,
      target: t,
      objects: app("v1"),
      rollouts: [ro],
      smokeTests: [smoke],
      apply: applyOpts,
    });
    await sleep(300);
    await load.stop();
    assert.equal(r.rollouts[0]?.phase, "Healthy", summary(r));
    assert.deepEqual(load.failures(), []);
    assert.deepEqual(new Set(load.samples.map((s) => s.body)), new Set(["v1"]));
    assert.ok(load.samples.length > 20, `${load.samples.length} requests`);
    assert.deepEqual(r.apply.inventory.entries.map((e) => `${e.kind}/${e.name}`).sort(), [
      "Deployment/web-blue",
      "Service/web",
      "Service/web-preview",
    ]);
    assert.equal((await slotPods(env, "blue")).length, 1);
    const own = await podman.json<unknown[]>([
      "pod",
      "ps",
      "--format",
      "json",
      "--filter",
      `label=sluice.dev/env=${env}`,
      "--filter",
      "label=sluice.dev/workload=Deployment/web",
    ]);
    assert.equal(own.length, 0, "the Deployment's own pods are gone");
    assert.equal(t.traffic(unit, "default", "web")?.protocol, "http");
  });

  test("removing the Rollout gives the Deployment its name back without a failed request", async () => {
    const load = new Load(port);
    await sleep(300);
    const r = await engine.reconcile({
      unit,
      target: t,
      objects: app("v1"),
      rollouts: [],
      smokeTests: [],
      apply: applyOpts,
    });
    await sleep(300);
    await load.stop();
    assert.deepEqual(load.failures(), []);
    assert.deepEqual(new Set(load.samples.map((s) => s.body)), new Set(["v1"]));
    assert.deepEqual(r.rollouts, []);
    assert.ok(r.events.some((e) => e.type === "Removed"));
    assert.deepEqual(r.apply.inventory.entries.map((e) => `${e.kind}/${e.name}`).sort(), [
      "Deployment/web",
      "Service/web",
    ]);
    assert.deepEqual(await slotPods(env, "blue"), []);
    assert.equal(t.traffic(unit, "default", "web"), undefined, "the Service routes by its selector again");
    assert.deepEqual(engine.status(unit), []);
    assert.equal(store.m.size, 0, "no state left");
  });
});
