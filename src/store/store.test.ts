import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import Database from "better-sqlite3";
import { isSluiceError } from "../core/index.js";
import { type EnvironmentInput, openStore, type Store, type UnitStatus } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "sluice-store-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `s${n++}`);

function env(name: string, over: Partial<EnvironmentInput> = {}): EnvironmentInput {
  return {
    name,
    branch: name,
    rule: "previews",
    target: "local",
    protected: false,
    ttlSeconds: null,
    expiresAt: null,
    state: "active",
    revision: null,
    ...over,
  };
}

function status(e: string, unit: string, over: Partial<UnitStatus> = {}): Omit<UnitStatus, "updatedAt"> {
  return {
    env: e,
    unit,
    ready: "Unknown",
    reason: "Progressing",
    message: "reconciling",
    revision: null,
    lastAppliedRevision: null,
    lastAppliedAt: null,
    drift: false,
    suspended: false,
    ...over,
  };
}

function withStore(fn: (s: Store, dir: string) => void, opts?: Parameters<typeof openStore>[1]): void {
  const dir = freshDir();
  const s = openStore(dir, opts);
  try {
    fn(s, dir);
  } finally {
    s.close();
  }
}

const code = (c: string) => (e: unknown) => isSluiceError(e) && e.code === c;

test("environments: insert, update keeps createdAt, state changes, list by name", () => {
  withStore((s) => {
    s.upsertEnvironment({ ...env("preview-b"), createdAt: "2024-05-01T10:00:00+02:00", ttlSeconds: 3600 });
    s.upsertEnvironment(env("main", { protected: true, rule: null }));
    const b = s.getEnvironment("preview-b")!;
    assert.equal(b.createdAt, "2024-05-01T08:00:00.000Z", "times are stored as ISO-8601 UTC");
    assert.equal(b.ttlSeconds, 3600);
    assert.equal(s.getEnvironment("main")!.protected, true);
    assert.equal(s.getEnvironment("main")!.rule, null);

    s.upsertEnvironment(
      env("preview-b", { revision: "preview-b@sha1:abc", expiresAt: "2024-05-02T08:00:00Z" }),
    );
    const b2 = s.getEnvironment("preview-b")!;
    assert.equal(b2.createdAt, "2024-05-01T08:00:00.000Z", "an update without createdAt keeps the original");
    assert.equal(b2.revision, "preview-b@sha1:abc");
    assert.equal(b2.expiresAt, "2024-05-02T08:00:00.000Z");
    assert.equal(b2.ttlSeconds, null);

    s.setEnvironmentState("preview-b", "destroying");
    assert.equal(s.getEnvironment("preview-b")!.state, "destroying");
    assert.deepEqual(
      s.listEnvironments().map((e) => e.name),
      ["main", "preview-b"],
    );
    assert.throws(() => s.setEnvironmentState("nope", "destroyed"), code("NotFound"));
    assert.throws(() => s.upsertEnvironment(env("x", { state: "gone" as never })), code("ConfigInvalid"));
    assert.equal(s.getEnvironment("nope"), undefined);
  });
});

test("deleting an environment refuses while it owns an inventory, then removes its status and runs", () => {
  withStore((s) => {
    s.upsertEnvironment(env("pr-1"));
    s.setUnitStatus(status("pr-1", "app"));
    const run = s.startRun({ env: "pr-1", unit: "app", revision: null, trigger: "source" });
    s.finishRun(run, { result: "succeeded", stages: [], summary: {} });
    s.setInventory("pr-1", "app", [{ apiVersion: "v1", kind: "ConfigMap", namespace: "a", name: "c" }], null);

    assert.throws(
      () => s.deleteEnvironment("pr-1"),
      (e: unknown) => isSluiceError(e, "Conflict") && /pr-1.*app/.test(e.message),
    );
    assert.ok(s.getEnvironment("pr-1"), "nothing was deleted");

    s.deleteInventory("pr-1", "app");
    s.deleteEnvironment("pr-1");
    s.deleteEnvironment("pr-1"); // idempotent
    assert.equal(s.getEnvironment("pr-1"), undefined);
    assert.deepEqual(s.listUnitStatus("pr-1"), []);
    assert.deepEqual(s.listRuns({ env: "pr-1" }), []);
    assert.deepEqual(s.integrityCheck(), []);
  });
});

test("unit status reports whether it changed and only then moves updatedAt", () => {
  withStore((s) => {
    s.upsertEnvironment(env("main"));
    assert.deepEqual(s.setUnitStatus(status("main", "app")), { changed: true });
    const first = s.getUnitStatus("main", "app")!;
    assert.deepEqual(s.setUnitStatus(status("main", "app")), { changed: false });
    assert.equal(s.getUnitStatus("main", "app")!.updatedAt, first.updatedAt);

    const ready = status("main", "app", {
      ready: "True",
      reason: "ReconciliationSucceeded",
      message: "Applied revision: main@sha1:1",
      revision: "main@sha1:1",
      lastAppliedRevision: "main@sha1:1",
      lastAppliedAt: "2024-01-01T00:00:00Z",
      drift: true,
    });
    assert.deepEqual(s.setUnitStatus(ready), { changed: true });
    const got = s.getUnitStatus("main", "app")!;
    assert.equal(got.ready, "True");
    assert.equal(got.drift, true);
    assert.equal(got.suspended, false);
    assert.equal(got.lastAppliedAt, "2024-01-01T00:00:00.000Z");
    assert.deepEqual(s.setUnitStatus({ ...ready, lastAppliedAt: "2024-01-01T00:00:00.000Z" }), {
      changed: false,
    });
    assert.deepEqual(s.setUnitStatus({ ...ready, suspended: true }), { changed: true });

    s.upsertEnvironment(env("b"));
    s.setUnitStatus(status("b", "z"));
    s.setUnitStatus(status("b", "a"));
    assert.deepEqual(
      s.listUnitStatus().map((u) => `${u.env}/${u.unit}`),
      ["b/a", "b/z", "main/app"],
    );
    assert.deepEqual(
      s.listUnitStatus("b").map((u) => u.unit),
      ["a", "z"],
    );
    s.deleteUnitStatus("b", "a");
    assert.deepEqual(
      s.listUnitStatus("b").map((u) => u.unit),
      ["z"],
    );
    s.deleteUnitStatus("b");
    assert.deepEqual(s.listUnitStatus("b"), []);
    assert.throws(() => s.setUnitStatus(status("unregistered", "app")), code("NotFound"));
  });
});

test("runs: started as running and committed, finished once, listed newest first", () => {
  withStore((s) => {
    s.upsertEnvironment(env("main"));
    const a = s.startRun({ env: "main", unit: "app", revision: "main@sha1:1", trigger: "interval" });
    const running = s.getRun(a)!;
    assert.equal(running.result, "running");
    assert.equal(running.endedAt, null);
    assert.deepEqual(running.stages, []);
    assert.deepEqual(running.summary, {});

    const stages = [
      { name: "render", result: "succeeded" as const, ms: 12 },
      { name: "apply", result: "failed" as const, ms: 40, message: "Deployment/app/web apply failed: boom" },
      { name: "prune", result: "skipped" as const, ms: 0 },
    ];
    s.finishRun(a, {
      result: "failed",
      reason: "ReconciliationFailed",
      message: "apply failed",
      stages,
      summary: { created: 1, configured: 0, unchanged: 3, deleted: 0 },
    });
    const done = s.getRun(a)!;
    assert.equal(done.result, "failed");
    assert.equal(done.reason, "ReconciliationFailed");
    assert.ok(done.endedAt && done.endedAt >= done.startedAt);
    assert.deepEqual(done.stages, stages);
    assert.deepEqual(done.summary, { created: 1, configured: 0, unchanged: 3, deleted: 0 });

    assert.throws(() => s.finishRun(a, { result: "succeeded", stages: [], summary: {} }), code("Conflict"));
    assert.throws(
      () => s.finishRun(9999, { result: "succeeded", stages: [], summary: {} }),
      code("NotFound"),
    );
    assert.throws(
      () => s.startRun({ env: "nope", unit: "app", revision: null, trigger: "manual" }),
      code("NotFound"),
    );

    const b = s.startRun({ env: "main", unit: "db", revision: null, trigger: "webhook" });
    assert.deepEqual(
      s.listRuns({}).map((r) => r.id),
      [b, a],
    );
    assert.deepEqual(
      s.listRuns({ unit: "app" }).map((r) => r.id),
      [a],
    );
    assert.deepEqual(
      s.listRuns({ env: "main", limit: 1 }).map((r) => r.id),
      [b],
    );
    assert.deepEqual(
      s.listRuns({ result: "running" }).map((r) => r.id),
      [b],
    );
    assert.equal(s.markInterruptedRuns(), 1);
    const interrupted = s.getRun(b)!;
    assert.equal(interrupted.result, "interrupted");
    assert.equal(interrupted.reason, "Interrupted");
    assert.ok(interrupted.endedAt);
    assert.equal(s.markInterruptedRuns(), 0);
  });
});

test("run history is bounded per unit and never drops a running run", () => {
  withStore(
    (s) => {
      s.upsertEnvironment(env("main"));
      const open = s.startRun({ env: "main", unit: "app", revision: null, trigger: "interval" });
      const ids: number[] = [];
      for (let i = 0; i < 8; i++) {
        const id = s.startRun({ env: "main", unit: "app", revision: null, trigger: "interval" });
        s.finishRun(id, { result: "succeeded", stages: [], summary: {} });
        ids.push(id);
      }
      const other = s.startRun({ env: "main", unit: "other", revision: null, trigger: "interval" });
      s.finishRun(other, { result: "succeeded", stages: [], summary: {} });
      assert.deepEqual(
        s.listRuns({ unit: "app", limit: 100 }).map((r) => r.id),
        [...ids.slice(-3).reverse(), open],
      );
      assert.deepEqual(
        s.listRuns({ unit: "other" }).map((r) => r.id),
        [other],
      );
    },
    { runRetention: 3 },
  );
});

test("events keep only the newest N, filter by env/unit, and tail with sinceId", () => {
  const dir = freshDir();
  let s = openStore(dir, { eventRetention: 50 });
  try {
    const added = [];
    for (let i = 0; i < 120; i++) {
      added.push(
        s.addEvent({
          env: i % 2 ? "main" : "pr-1",
          unit: i % 3 ? "app" : null,
          severity: i % 10 === 0 ? "error" : "info",
          reason: "ReconciliationSucceeded",
          message: `event ${i}`,
        }),
      );
    }
    const all = s.listEvents({ limit: 10_000 });
    assert.equal(all.length, 50, "bounded to the retention");
    assert.deepEqual(
      all.map((e) => e.message),
      added.slice(-50).map((e) => e.message),
    );
    assert.deepEqual(all.at(-1), added.at(-1), "returned record equals the stored one");

    assert.deepEqual(
      s.listEvents({ limit: 3 }).map((e) => e.message),
      ["event 117", "event 118", "event 119"],
    );
    const main = s.listEvents({ env: "main", unit: "app", limit: 1000 });
    assert.ok(main.length > 0 && main.every((e) => e.env === "main" && e.unit === "app"));
    const since = added[109]!.id;
    assert.deepEqual(
      s.listEvents({ sinceId: since, limit: 4 }).map((e) => e.message),
      ["event 110", "event 111", "event 112", "event 113"],
    );
    assert.deepEqual(s.listEvents({ sinceId: added[119]!.id }), []);

    const long = s.addEvent({
      env: null,
      unit: null,
      severity: "warning",
      reason: "Big",
      message: "x".repeat(100_000),
    });
    assert.ok(long.message.length < 9000 && long.message.endsWith("(truncated)"));
    assert.throws(
      () => s.addEvent({ env: null, unit: null, severity: "fatal" as never, reason: "X", message: "" }),
      code("ConfigInvalid"),
    );
  } finally {
    s.close();
  }
  // The bound holds across restarts.
  s = openStore(dir, { eventRetention: 50 });
  try {
    for (let i = 0; i < 10; i++)
      s.addEvent({ env: null, unit: null, severity: "info", reason: "R", message: `more ${i}` });
    assert.equal(s.listEvents({ limit: 10_000 }).length, 50);
    assert.deepEqual(s.integrityCheck(), []);
  } finally {
    s.close();
  }
});

test("inventories replace the whole set at once, keep order, de-duplicate, and tell empty from absent", () => {
  withStore((s) => {
    s.upsertEnvironment(env("main"));
    assert.equal(s.getInventory("main", "app"), undefined);
    const cm = { apiVersion: "v1", kind: "ConfigMap", namespace: "app", name: "settings" };
    const deployV1 = { apiVersion: "apps/v1", kind: "Deployment", namespace: "app", name: "web" };
    const ns = { apiVersion: "v1", kind: "Namespace", name: "app" };
    s.setInventory("main", "app", [ns, cm, deployV1], "main@sha1:1");
    assert.deepEqual(s.getInventory("main", "app"), { refs: [ns, cm, deployV1], revision: "main@sha1:1" });

    const svc = { apiVersion: "v1", kind: "Service", namespace: "app", name: "web" };
    const deployBeta = { ...deployV1, apiVersion: "apps/v1beta1" };
    s.setInventory("main", "app", [deployV1, svc, deployBeta], "main@sha1:2");
    assert.deepEqual(
      s.getInventory("main", "app"),
      { refs: [deployV1, svc], revision: "main@sha1:2" },
      "the old set is gone entirely; the same object under another version counts once",
    );
    assert.deepEqual(s.listInventories(), [{ env: "main", unit: "app", revision: "main@sha1:2", count: 2 }]);

    s.setInventory("main", "app", [], "main@sha1:3");
    assert.deepEqual(s.getInventory("main", "app"), { refs: [], revision: "main@sha1:3" }, "owns nothing");

    assert.throws(() => s.setInventory("main", "app", [{ apiVersion: "v1", kind: "", name: "x" }], null));
    assert.deepEqual(
      s.getInventory("main", "app"),
      { refs: [], revision: "main@sha1:3" },
      "a refused write changes nothing",
    );
    assert.throws(() => s.setInventory("nope", "app", [cm], null), code("NotFound"));

    s.deleteInventory("main", "app");
    s.deleteInventory("main", "app");
    assert.equal(s.getInventory("main", "app"), undefined);
    assert.deepEqual(s.integrityCheck(), []);
  });
});

test("key/value space is namespaced and survives reopen", () => {
  const dir = freshDir();
  const s = openStore(dir);
  s.setKV("images", "ghcr.io/acme/web", JSON.stringify({ latest: "1.2.3" }));
  s.setKV("webhooks", "delivery-1", "seen");
  s.setKV("webhooks", "delivery-1", "seen twice");
  assert.equal(s.getKV("images", "delivery-1"), undefined);
  s.close();
  const again = openStore(dir);
  try {
    assert.equal(again.getKV("webhooks", "delivery-1"), "seen twice");
    assert.deepEqual(JSON.parse(again.getKV("images", "ghcr.io/acme/web")!), { latest: "1.2.3" });
    assert.deepEqual(
      again.listKV("webhooks").map((r) => [r.key, r.value]),
      [["delivery-1", "seen twice"]],
    );
    again.deleteKV("webhooks", "delivery-1");
    assert.equal(again.getKV("webhooks", "delivery-1"), undefined);
  } finally {
    again.close();
  }
});

test("a read-only store reads while the agent writes, and refuses every write", () => {
  withStore((s, dir) => {
    s.upsertEnvironment(env("main"));
    const ro = openStore(dir, { readOnly: true });
    try {
      assert.equal(ro.readOnly, true);
      assert.equal(ro.getEnvironment("main")!.name, "main");
      s.addEvent({
        env: "main",
        unit: null,
        severity: "info",
        reason: "Later",
        message: "after the reader opened",
      });
      assert.equal(ro.listEvents({}).at(-1)!.reason, "Later", "sees commits made after it opened");
      assert.throws(() => ro.upsertEnvironment(env("x")), code("Forbidden"));
      assert.throws(() => ro.markInterruptedRuns(), code("Forbidden"));
      assert.throws(() => ro.setKV("a", "b", "c"), code("Forbidden"));
      assert.deepEqual(ro.integrityCheck(), []);
    } finally {
      ro.close();
    }
    s.addEvent({
      env: null,
      unit: null,
      severity: "info",
      reason: "StillMine",
      message: "the lock is still held",
    });
  });
  assert.throws(() => openStore(join(root, "never-created"), { readOnly: true }), code("NotFound"));
});

test("integrity check is clean on a used store and reports a broken foreign key", () => {
  withStore((s) => {
    s.upsertEnvironment(env("main"));
    s.setUnitStatus(status("main", "app"));
    s.setInventory("main", "app", [{ apiVersion: "v1", kind: "ConfigMap", name: "c" }], null);
    s.addEvent({ env: "main", unit: "app", severity: "info", reason: "R", message: "m" });
    s.addToken("ci", "viewer");
    assert.deepEqual(s.integrityCheck(), []);
  });

  // Corrupt a copy behind the store's back (foreign keys off), then check it.
  const dir = freshDir();
  const s = openStore(dir);
  s.upsertEnvironment(env("main"));
  s.setUnitStatus(status("main", "app"));
  s.close();
  const raw = new Database(join(dir, "sluice.db"));
  raw.pragma("foreign_keys = OFF");
  raw.prepare("DELETE FROM environments").run();
  raw.close();
  const again = openStore(dir);
  try {
    const problems = again.integrityCheck();
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /unit_status.*environments/);
  } finally {
    again.close();
  }
});
