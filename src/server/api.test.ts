import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { makeFixture } from "./_testkit.js";
import { type ApiServer, createApiServer } from "./index.js";

const fx = makeFixture();
let api: ApiServer;

before(async () => {
  api = await createApiServer({ agent: fx.agent, store: fx.store, log: fx.log, heartbeatMs: 200 });
});
after(async () => {
  await api.close();
  fx.cleanup();
});

async function call(
  path: string,
  opts: { method?: string; token?: string; body?: string; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${api.url}${path}`, {
    method: opts.method ?? "GET",
    headers,
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

describe("probes and metrics", () => {
  test("/healthz answers ok without a token", async () => {
    const r = await call("/healthz");
    assert.equal(r.status, 200);
    assert.equal(r.text.trim(), "ok");
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  });

  test("/readyz follows the agent's start and the store", async () => {
    assert.equal((await call("/readyz")).status, 200);
    fx.agent.started = false;
    try {
      const r = await call("/readyz");
      assert.equal(r.status, 503);
      assert.match(r.text, /not started/);
    } finally {
      fx.agent.started = true;
    }
  });

  test("/metrics is Prometheus text from the agent's registry", async () => {
    fx.agent.metrics.ready.set({ env: "main", unit: "api" }, 1);
    const r = await call("/metrics");
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(r.text, /# TYPE sluice_reconcile_duration_seconds histogram/);
    assert.match(r.text, /sluice_unit_ready\{env="main",unit="api"\} 1/);
  });

  test("an unknown path is 404 and a wrong method 405 with Allow", async () => {
    assert.equal((await call("/nope")).status, 404);
    const r = await call("/healthz", { method: "POST" });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get("allow"), "GET");
  });
});

describe("authentication and roles", () => {
  test("no token is 401 with WWW-Authenticate: Bearer", async () => {
    const r = await call("/api/v1/units");
    assert.equal(r.status, 401);
    assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal(r.json.error.code, "Unauthorized");
  });

  test("a wrong token is 401", async () => {
    const r = await call("/api/v1/units", { token: `${fx.viewer.slice(0, -2)}xx` });
    assert.equal(r.status, 401);
    assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer error="invalid_token"/);
    // Not a bearer scheme at all.
    const basic = await call("/api/v1/units", { headers: { authorization: `Basic ${fx.viewer}` } });
    assert.equal(basic.status, 401);
  });

  test("a revoked token is 401", async () => {
    const t = fx.store.addToken("temp", "operator");
    assert.equal((await call("/api/v1/units", { token: t })).status, 200);
    fx.store.revokeToken("temp");
    assert.equal((await call("/api/v1/units", { token: t })).status, 401);
  });

  test("a viewer can read but not act", async () => {
    for (const p of ["environments", "units", "sources", "runs", "events"]) {
      const r = await call(`/api/v1/${p}`, { token: fx.viewer });
      assert.equal(r.status, 200, p);
    }
    const before = fx.agent.reconciles.length;
    for (const a of ["reconcile", "suspend", "resume"]) {
      const r = await call(`/api/v1/environments/main/units/api/${a}`, { method: "POST", token: fx.viewer });
      assert.equal(r.status, 403, a);
      assert.equal(r.json.error.code, "Forbidden");
    }
    assert.equal(fx.agent.reconciles.length, before);
    assert.equal(fx.store.getUnitStatus("main", "api")?.suspended, false);
  });
});

describe("reads", () => {
  test("answers carry the security headers", async () => {
    const r = await call("/api/v1/environments", { token: fx.viewer });
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assert.equal(r.headers.get("cache-control"), "no-store");
    assert.match(r.headers.get("content-security-policy") ?? "", /^default-src 'none'/);
    assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
  });

  test("environments and units (filtered by env)", async () => {
    const envs = await call("/api/v1/environments", { token: fx.viewer });
    assert.deepEqual(
      envs.json.environments.map((e: any) => e.name),
      ["main", "preview-x"],
    );
    const all = await call("/api/v1/units", { token: fx.viewer });
    assert.equal(all.json.units.length, 3);
    const main = await call("/api/v1/units?env=main", { token: fx.viewer });
    assert.deepEqual(
      main.json.units.map((u: any) => `${u.env}/${u.unit}/${u.ready}`),
      ["main/api/True", "main/db/True"],
    );
  });

  test("runs and events with filters; a bad limit is 400", async () => {
    const runs = await call("/api/v1/runs?env=main&unit=api&limit=5", { token: fx.viewer });
    assert.equal(runs.json.runs.length, 1);
    assert.equal(runs.json.runs[0].result, "succeeded");
    assert.deepEqual(runs.json.runs[0].summary, { created: 2, unchanged: 1 });
    assert.equal((await call("/api/v1/runs?env=preview-x", { token: fx.viewer })).json.runs.length, 0);
    const ev = await call("/api/v1/events?env=preview-x", { token: fx.viewer });
    assert.deepEqual(
      ev.json.events.map((e: any) => e.reason),
      ["BuildFailed"],
    );
    const first = (await call("/api/v1/events", { token: fx.viewer })).json.events[0].id;
    const since = await call(`/api/v1/events?sinceId=${first}`, { token: fx.viewer });
    assert.ok(since.json.events.every((e: any) => e.id > first));
    for (const q of ["limit=0", "limit=abc", "limit=-1", "limit=100000", "sinceId=1.5"]) {
      const r = await call(`/api/v1/events?${q}`, { token: fx.viewer });
      assert.equal(r.status, 400, q);
      assert.equal(r.json.error.code, "BadRequest");
    }
  });

  test("no secret value appears in any answer", async () => {
    fx.agent.sourceMessage =
      "git ls-remote https://deploy:git-pw-9c2e7a4f1b8d3e6c@git.example.com/org/app.git: 403";
    const texts: string[] = [];
    for (const p of ["environments", "units", "sources", "runs", "events"])
      texts.push((await call(`/api/v1/${p}`, { token: fx.operator })).text);
    const all = texts.join("\n");
    assert.ok(!all.includes("git-pw-9c2e7a4f1b8d3e6c"), "git password leaked");
    assert.ok(!all.includes("deploy:"), "URL credentials leaked");
    assert.match(all, /https:\/\/\*\*\*@git\.example\.com/);
    fx.agent.sourceMessage = "2 branch(es) listed";
  });
});

describe("actions", () => {
  test("an operator's reconcile reaches the agent (202), with and without source", async () => {
    const n = fx.agent.reconciles.length;
    const r = await call("/api/v1/environments/main/units/api/reconcile", {
      method: "POST",
      token: fx.operator,
    });
    assert.equal(r.status, 202);
    assert.deepEqual(r.json, { queued: { env: "main", unit: "api", withSource: false } });
    const r2 = await call("/api/v1/environments/main/units/db/reconcile", {
      method: "POST",
      token: fx.operator,
      body: JSON.stringify({ withSource: true }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(r2.status, 202);
    assert.deepEqual(fx.agent.reconciles.slice(n), [
      { env: "main", unit: "api", withSource: false },
      { env: "main", unit: "db", withSource: true },
    ]);
  });

  test("path segments are percent-decoded", async () => {
    const n = fx.agent.reconciles.length;
    const r = await call("/api/v1/environments/preview%2Dx/units/api/reconcile", {
      method: "POST",
      token: fx.operator,
    });
    assert.equal(r.status, 202);
    assert.deepEqual(fx.agent.reconciles.at(n), { env: "preview-x", unit: "api", withSource: false });
  });

  test("an unknown unit is 404 with the agent's message", async () => {
    const r = await call("/api/v1/environments/main/units/nope/reconcile", {
      method: "POST",
      token: fx.operator,
    });
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, {
      error: { code: "NotFound", message: "unit nope of environment main does not exist" },
    });
    const s = await call("/api/v1/environments/gone/units/api/suspend", {
      method: "POST",
      token: fx.operator,
    });
    assert.equal(s.status, 404);
  });

  test("suspend and resume change the unit", async () => {
    const s = await call("/api/v1/environments/main/units/db/suspend", {
      method: "POST",
      token: fx.operator,
    });
    assert.equal(s.status, 200);
    assert.deepEqual(s.json, { env: "main", unit: "db", suspended: true });
    assert.equal(fx.store.getUnitStatus("main", "db")?.suspended, true);
    const r = await call("/api/v1/environments/main/units/db/resume", { method: "POST", token: fx.operator });
    assert.equal(r.json.suspended, false);
    assert.equal(fx.store.getUnitStatus("main", "db")?.suspended, false);
  });

  test("bad JSON and a bad withSource are 400; GET on an action is 405", async () => {
    const bad = await call("/api/v1/environments/main/units/api/reconcile", {
      method: "POST",
      token: fx.operator,
      body: "{withSource: true",
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, "BadRequest");
    assert.match(bad.json.error.message, /not valid JSON/);
    const arr = await call("/api/v1/environments/main/units/api/reconcile", {
      method: "POST",
      token: fx.operator,
      body: "[]",
    });
    assert.equal(arr.status, 400);
    const ws = await call("/api/v1/environments/main/units/api/reconcile", {
      method: "POST",
      token: fx.operator,
      body: '{"withSource":"yes"}',
    });
    assert.equal(ws.status, 400);
    const get = await call("/api/v1/environments/main/units/api/reconcile", { token: fx.operator });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
  });

  test("a body over 1 MiB is 413", async () => {
    const big = JSON.stringify({ withSource: true, pad: "x".repeat(1024 * 1024) });
    const r = await call("/api/v1/environments/main/units/api/reconcile", {
      method: "POST",
      token: fx.operator,
      body: big,
    });
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, "PayloadTooLarge");
  });

  test("a body over 1 MiB without Content-Length (chunked) is 413 too", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(`${api.url}/api/v1/environments/main/units/api/reconcile`);
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: "POST",
          headers: { authorization: `Bearer ${fx.operator}`, "transfer-encoding": "chunked" },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", (e: NodeJS.ErrnoException) =>
        e.code === "EPIPE" || e.code === "ECONNRESET" ? 0 : reject(e),
      );
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < 2 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(status, 413);
  });
});

describe("event stream", () => {
  test("delivers an emitted change event and heartbeats; cleans up on close", async () => {
    const ac = new AbortController();
    const res = await fetch(`${api.url}/api/v1/stream`, {
      headers: { authorization: `Bearer ${fx.viewer}` },
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const readUntil = async (re: RegExp) => {
      const deadline = Date.now() + 5_000;
      while (!re.test(buf)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in ${JSON.stringify(buf)}`);
        const { value, done } = await reader.read();
        if (done) throw new Error("stream ended");
        buf += dec.decode(value);
      }
    };
    await readUntil(/: connected/);
    fx.agent.emit("change", {
      type: "unit",
      env: "main",
      unit: "api",
      ready: "False",
      reason: "BuildFailed",
      message: `failed with token ${"wh-7f3c1e9a2b8d4c6e0a5f9b3d7c1e8a2f"}`,
      revision: null,
    });
    await readUntil(/event: unit\ndata: (\{.*\})\n\n/);
    const data = JSON.parse(/event: unit\ndata: (\{.*\})\n\n/.exec(buf)![1]!);
    assert.equal(data.reason, "BuildFailed");
    assert.equal(data.env, "main");
    assert.ok(!buf.includes("wh-7f3c1e9a2b8d4c6e0a5f9b3d7c1e8a2f"), "secret streamed");
    await readUntil(/: heartbeat\n\n/);
    ac.abort();
    const deadline = Date.now() + 5_000;
    // The server notices the close and drops the client; the agent keeps exactly one listener.
    while (Date.now() < deadline) {
      fx.agent.emit("change", { type: "source", source: "x", ok: true, message: "" });
      await new Promise((r) => setTimeout(r, 20));
      if (api.streamCount() === 0) break;
    }
    assert.equal(api.streamCount(), 0);
    assert.equal(fx.agent.listenerCount("change"), 1);
  });

  test("the stream needs a token", async () => {
    const r = await call("/api/v1/stream");
    assert.equal(r.status, 401);
  });
});
