/**
 * The dashboard's server side without a browser: static files under a strict CSP, the one-time
 * stream tickets, the matrix and environment routes over a real store, and the status mapping.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cellHealth, cellSync, DASHBOARD_CSP, effectiveStatus } from "../src/server/_dashboard.js";
import { GIT_PASSWORD, makeFixture } from "../src/server/_testkit.js";
import { type ApiServer, createApiServer } from "../src/server/index.js";
import { ensureWebBuilt } from "./support/dashboard.js";

const fx = makeFixture();
let api: ApiServer;
let webDir: string;

before(async () => {
  webDir = ensureWebBuilt();
  api = await createApiServer({ agent: fx.agent, store: fx.store, log: fx.log, heartbeatMs: 200 });
});
after(async () => {
  await api.close();
  fx.cleanup();
});

async function call(
  path: string,
  opts: { method?: string; token?: string; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${api.url}${path}`, { method: opts.method ?? "GET", headers });
  const buf = Buffer.from(await res.arrayBuffer());
  let json: any;
  try {
    json = JSON.parse(buf.toString("utf8"));
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, buf, text: buf.toString("utf8"), json };
}

describe("static files", () => {
  test("the pages are index.html under a CSP without inline code or framing", async () => {
    for (const p of ["/", "/login", "/events", "/images", "/environments/main", "/environments/a%20b"]) {
      const r = await call(p);
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get("content-type")!, /^text\/html/);
      assert.match(r.text, /<div id="app">/);
      assert.equal(r.headers.get("content-security-policy"), DASHBOARD_CSP);
      assert.equal(r.headers.get("x-frame-options"), "DENY");
      assert.equal(r.headers.get("x-content-type-options"), "nosniff");
      assert.equal(r.headers.get("cache-control"), "no-cache");
    }
    assert.match(DASHBOARD_CSP, /script-src 'self';/);
    assert.doesNotMatch(DASHBOARD_CSP, /unsafe-inline|unsafe-eval/);
    // No inline script in the page itself.
    const html = (await call("/")).text;
    for (const m of html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)) assert.equal(m[1]!.trim(), "");
  });

  test("hashed assets are immutable, gzip when asked, and revalidate by ETag", async () => {
    const js = readdirSync(join(webDir, "assets")).find((f) => f.endsWith(".js"))!;
    const plain = await call(`/assets/${js}`);
    assert.equal(plain.status, 200);
    assert.match(plain.headers.get("content-type")!, /^text\/javascript/);
    assert.match(plain.headers.get("cache-control")!, /immutable/);
    const gz = await fetch(`${api.url}/assets/${js}`, { headers: { "accept-encoding": "gzip" } });
    // fetch decodes gzip itself; the header says it was compressed.
    assert.equal(gz.headers.get("content-encoding"), "gzip");
    assert.equal(Buffer.from(await gz.arrayBuffer()).length, plain.buf.length);
    const etag = plain.headers.get("etag")!;
    const again = await call(`/assets/${js}`, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    const icon = await call("/favicon-healthy.svg");
    assert.equal(icon.status, 200);
    assert.equal(icon.headers.get("content-type"), "image/svg+xml");
  });

  test("other methods and unknown paths are refused", async () => {
    const post = await call("/", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    const nope = await call("/nope.js");
    assert.equal(nope.status, 404);
    assert.equal(nope.json.error.code, "NotFound");
    // Path tricks do not reach files outside the build.
    assert.equal((await call("/assets/../../package.json")).status, 404);
    assert.equal((await call("/environments/a/b")).status, 404);
  });
});

describe("authentication for the browser", () => {
  test("whoami names the token and its role", async () => {
    assert.deepEqual((await call("/api/v1/whoami", { token: fx.viewer })).json, {
      name: "dash",
      role: "viewer",
    });
    assert.deepEqual((await call("/api/v1/whoami", { token: fx.operator })).json, {
      name: "ops",
      role: "operator",
    });
    assert.equal((await call("/api/v1/whoami")).status, 401);
    assert.equal((await call("/api/v1/whoami", { token: "not-a-token" })).status, 401);
  });

  async function openStream(ticket: string): Promise<{ status: number; first: string }> {
    const ac = new AbortController();
    const res = await fetch(`${api.url}/api/v1/stream?ticket=${encodeURIComponent(ticket)}`, {
      signal: ac.signal,
    });
    if (res.status !== 200) {
      await res.text();
      return { status: res.status, first: "" };
    }
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    ac.abort();
    return { status: res.status, first: Buffer.from(value!).toString("utf8") };
  }

  test("a stream ticket opens the event stream once, and only the stream", async () => {
    assert.equal((await call("/api/v1/stream-ticket", { token: fx.viewer })).status, 405);
    assert.equal((await call("/api/v1/stream-ticket", { method: "POST" })).status, 401);
    const r = await call("/api/v1/stream-ticket", { method: "POST", token: fx.viewer });
    assert.equal(r.status, 201);
    assert.match(r.json.ticket, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(Date.parse(r.json.expiresAt) > Date.now());
    // Not a credential anywhere else.
    assert.equal((await call(`/api/v1/environments?ticket=${r.json.ticket}`)).status, 401);
    const first = await openStream(r.json.ticket);
    assert.equal(first.status, 200);
    assert.match(first.first, /: connected/);
    // Spent.
    assert.equal((await openStream(r.json.ticket)).status, 401);
    assert.equal((await openStream("A".repeat(43))).status, 401);
  });

  test("a ticket dies with its token", async () => {
    const token = fx.store.addToken("short-lived", "viewer");
    const r = await call("/api/v1/stream-ticket", { method: "POST", token });
    fx.store.revokeToken("short-lived");
    assert.equal((await openStream(r.json.ticket)).status, 401);
  });
});

describe("read routes", () => {
  test("the matrix: environments × units with health, sync and reasons, secrets scrubbed", async () => {
    const prior = fx.store.getUnitStatus("main", "db")!;
    const { updatedAt: _, ...rest } = prior;
    fx.store.setUnitStatus({
      ...rest,
      message: `Applied with https://deploy:${GIT_PASSWORD}@git.example.com`,
    });
    try {
      fx.agent.emit("change", {
        type: "unit",
        env: "main",
        unit: "db",
        ready: "True",
        reason: "x",
        message: "",
      });
      const r = await call("/api/v1/matrix", { token: fx.viewer });
      assert.equal(r.status, 200);
      assert.ok(!r.text.includes(GIT_PASSWORD), "no secret in the matrix");
      assert.deepEqual(r.json.units, ["api", "db"]);
      assert.equal(r.json.total, 2);
      assert.deepEqual(
        r.json.rows.map((x: any) => x.env.name),
        ["main", "preview-x"],
      );
      const main = r.json.rows[0];
      assert.equal(main.env.health, "Healthy");
      assert.equal(main.cells.api.health, "Healthy");
      assert.equal(main.cells.api.sync, "InSync");
      const px = r.json.rows[1].cells.api;
      assert.equal(px.health, "Failed");
      assert.equal(px.reason, "BuildFailed");
      assert.equal(px.message, "kustomize build failed:", "one line, no terminal escapes");
      assert.equal(r.json.counts.health.Failed, 1);
      assert.equal(r.json.counts.health.Healthy, 2);
      const failed = await call("/api/v1/matrix?status=Failed", { token: fx.viewer });
      assert.deepEqual(
        failed.json.rows.map((x: any) => x.env.name),
        ["preview-x"],
      );
      const byBranch = await call("/api/v1/matrix?q=FEATURE/", { token: fx.viewer });
      assert.deepEqual(
        byBranch.json.rows.map((x: any) => x.env.name),
        ["preview-x"],
      );
    } finally {
      fx.store.setUnitStatus(rest);
    }
  });

  test("an environment: units, objects, runs, the last change's diff; 404 for an unknown one", async () => {
    fx.store.setInventory(
      "main",
      "api",
      [
        { apiVersion: "apps/v1", kind: "Deployment", namespace: "default", name: "api" },
        { apiVersion: "v1", kind: "Secret", namespace: "default", name: "api-creds" },
      ],
      "main@sha1:0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    );
    const runId = fx.store.listRuns({ env: "main", unit: "api", limit: 1 })[0]!.id;
    fx.agent.emit("change", {
      type: "run",
      env: "main",
      unit: "api",
      runId,
      result: "succeeded",
      changeSet: {
        entries: [
          {
            subject: "Deployment/default/api",
            ref: { apiVersion: "apps/v1", kind: "Deployment", namespace: "default", name: "api" },
            action: "configured",
            diff: `--- live\n+++ desired\n-  image: api:1\n+  image: api:2\n+  # ${GIT_PASSWORD}`,
          },
          {
            subject: "Secret/default/api-creds",
            ref: { apiVersion: "v1", kind: "Secret", namespace: "default", name: "api-creds" },
            action: "unchanged",
          },
        ],
      },
    });
    const r = await call("/api/v1/environments/main", { token: fx.viewer });
    assert.equal(r.status, 200);
    assert.ok(!r.text.includes(GIT_PASSWORD), "the diff is scrubbed");
    assert.equal(r.json.environment.name, "main");
    assert.deepEqual(
      r.json.units.map((u: any) => u.name),
      ["api", "db"],
    );
    const apiUnit = r.json.units[0];
    assert.deepEqual(
      apiUnit.objects.map((o: any) => [o.subject, o.health]),
      [
        ["Deployment/default/api", "Healthy"],
        ["Secret/default/api-creds", "Healthy"],
      ],
    );
    assert.equal(apiUnit.objectHealthFrom, "status");
    assert.equal(apiUnit.lastChange.entries.length, 1);
    assert.equal(apiUnit.lastChange.unchanged, 1);
    assert.match(apiUnit.lastChange.entries[0].diff, /\+ {2}image: api:2/);
    assert.equal(apiUnit.lastRun.id, runId);
    assert.equal(r.json.runs[0].id, runId);
    // A reconcile that changes nothing keeps the last change on show.
    fx.agent.emit("change", {
      type: "run",
      env: "main",
      unit: "api",
      runId,
      result: "succeeded",
      changeSet: { entries: [] },
    });
    const again = await call("/api/v1/environments/main", { token: fx.viewer });
    assert.equal(again.json.units[0].lastChange.entries.length, 1);
    const missing = await call("/api/v1/environments/nope", { token: fx.viewer });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, "NotFound");
    assert.equal((await call("/api/v1/environments/main")).status, 401);
    fx.store.deleteInventory("main", "api");
  });
});

test("health and sync follow the Ready condition and the revisions", () => {
  assert.equal(cellHealth({ ready: "True", reason: "ReconciliationSucceeded" }), "Healthy");
  assert.equal(cellHealth({ ready: "True", reason: "Progressing" }), "Progressing");
  assert.equal(cellHealth({ ready: "False", reason: "DependencyNotReady" }), "Progressing");
  assert.equal(cellHealth({ ready: "False", reason: "HealthCheckFailed" }), "Degraded");
  assert.equal(cellHealth({ ready: "False", reason: "SmokeTestFailed" }), "Degraded");
  assert.equal(cellHealth({ ready: "False", reason: "BuildFailed" }), "Failed");
  assert.equal(cellHealth({ ready: "Unknown", reason: "Suspended" }), "Unknown");
  assert.equal(cellSync({ revision: "a", lastAppliedRevision: "a", drift: false }), "InSync");
  assert.equal(cellSync({ revision: "b", lastAppliedRevision: "a", drift: false }), "OutOfSync");
  assert.equal(cellSync({ revision: "a", lastAppliedRevision: "a", drift: true }), "Drifted");
  assert.equal(cellSync({ revision: null, lastAppliedRevision: null, drift: false }), "Unknown");
});

test("a unit retrying the revision that failed keeps showing the failure; a new revision is Progressing", () => {
  const status = {
    env: "e",
    unit: "u",
    ready: "False" as const,
    reason: "Progressing",
    message: "Reconciling revision main@sha1:bbb",
    revision: "main@sha1:bbb",
    lastAppliedRevision: "main@sha1:aaa",
    lastAppliedAt: null,
    drift: false,
    suspended: false,
    updatedAt: new Date().toISOString(),
  };
  const failed = {
    id: 1,
    env: "e",
    unit: "u",
    revision: "main@sha1:bbb",
    trigger: "retry",
    startedAt: "",
    endedAt: "",
    result: "failed" as const,
    reason: "HealthCheckFailed",
    message: "Deployment/web: 0 of 1 ready",
    stages: [],
    summary: {},
  };
  assert.deepEqual(
    effectiveStatus(status, () => failed),
    {
      health: "Degraded",
      reason: "HealthCheckFailed",
      message: "Deployment/web: 0 of 1 ready (retrying)",
      retrying: true,
    },
  );
  // A push moved on: the new revision is a rollout in progress.
  assert.equal(
    effectiveStatus(status, () => ({ ...failed, revision: "main@sha1:aaa" })).health,
    "Progressing",
  );
  // A healthy unit taking a push is Progressing, whatever its history.
  assert.equal(effectiveStatus({ ...status, ready: "True" }, () => failed).health, "Progressing");
});
