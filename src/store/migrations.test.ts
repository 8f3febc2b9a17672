import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import Database from "better-sqlite3";
import { isSluiceError } from "../core/index.js";
import { MIGRATIONS, migrate } from "./_migrations.js";
import { CURRENT_SCHEMA_VERSION, openStore } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "sluice-migrations-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `s${n++}`);

function applied(dir: string): { version: number; name: string; applied_at: string }[] {
  const db = new Database(join(dir, "sluice.db"), { readonly: true });
  try {
    return db.prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").all() as {
      version: number;
      name: string;
      applied_at: string;
    }[];
  } finally {
    db.close();
  }
}

test("a new store is migrated to the current version; reopening applies nothing and keeps the data", () => {
  const dir = freshDir();
  const s = openStore(dir);
  s.upsertEnvironment({
    name: "main",
    branch: "main",
    rule: null,
    target: "local",
    protected: true,
    ttlSeconds: null,
    expiresAt: null,
    state: "active",
    revision: null,
  });
  s.close();
  const first = applied(dir);
  assert.deepEqual(
    first.map((m) => m.version),
    MIGRATIONS.map((m) => m.version),
  );
  assert.equal(first.at(-1)!.version, CURRENT_SCHEMA_VERSION);

  for (let i = 0; i < 3; i++) {
    const again = openStore(dir);
    assert.equal(again.getEnvironment("main")?.protected, true);
    assert.deepEqual(again.integrityCheck(), []);
    again.close();
  }
  assert.deepEqual(applied(dir), first, "no step ran twice");

  const db = new Database(join(dir, "sluice.db"), { readonly: true });
  try {
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
  } finally {
    db.close();
  }
});

test("a database from a newer sluice is refused with a clear error, and the lock is released", () => {
  const dir = freshDir();
  openStore(dir).close();
  const db = new Database(join(dir, "sluice.db"));
  db.prepare(
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', ?)",
  ).run(CURRENT_SCHEMA_VERSION + 1, new Date().toISOString());
  db.close();

  for (const readOnly of [false, true]) {
    assert.throws(
      () => openStore(dir, { readOnly }),
      (e: unknown) =>
        isSluiceError(e, "Conflict") &&
        e.message.includes(
          `schema version ${CURRENT_SCHEMA_VERSION + 1}, newer than this sluice knows (${CURRENT_SCHEMA_VERSION})`,
        ) &&
        /upgrade sluice/.test(e.hint ?? ""),
    );
  }
  assert.equal(existsSync(join(dir, "agent.lock")), false, "a failed open does not keep the lock");
});

test("each step runs in its own transaction: a failing step leaves the database at the previous version", () => {
  const db = new Database(":memory:");
  try {
    const steps = [
      { version: 1, name: "widgets", sql: "CREATE TABLE widgets (id INTEGER PRIMARY KEY)" },
      {
        version: 2,
        name: "gadgets then a typo",
        sql: "CREATE TABLE gadgets (id INTEGER PRIMARY KEY); INSERT INTO widgets VALUES (1); INSERT INTO nowhere VALUES (1);",
      },
    ];
    assert.throws(
      () => migrate(db, "test.db", steps),
      (e: unknown) =>
        isSluiceError(e, "Internal") &&
        /migration 2 \(gadgets then a typo\) failed: no such table: nowhere/.test(e.message),
    );
    const tables = db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
      .pluck()
      .all();
    assert.deepEqual(tables, ["schema_migrations", "widgets"], "step 2 left nothing behind");
    assert.equal(db.prepare("SELECT count(*) FROM widgets").pluck().get(), 0);
    assert.deepEqual(db.prepare("SELECT version FROM schema_migrations").pluck().all(), [1]);

    const fixed = [steps[0]!, { ...steps[1]!, sql: "CREATE TABLE gadgets (id INTEGER PRIMARY KEY)" }];
    assert.deepEqual(migrate(db, "test.db", fixed), [2], "only the missing step runs");
    assert.deepEqual(migrate(db, "test.db", fixed), [], "idempotent");
  } finally {
    db.close();
  }
});

test("a read-only open of a database older than this sluice asks for the agent to migrate it", () => {
  const dir = freshDir();
  openStore(dir).close();
  const db = new Database(join(dir, "sluice.db"));
  db.prepare("DELETE FROM schema_migrations WHERE version = ?").run(CURRENT_SCHEMA_VERSION);
  db.close();
  assert.throws(
    () => openStore(dir, { readOnly: true }),
    (e: unknown) => isSluiceError(e, "Conflict") && /older than this sluice/.test(e.message),
  );
});

test("a file that is not a SQLite database is reported, not crashed on", () => {
  const dir = freshDir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "sluice.db"),
    "this is not a database, just some text that is long enough ".repeat(20),
  );
  assert.throws(
    () => openStore(dir),
    (e: unknown) =>
      isSluiceError(e, "Internal") &&
      /cannot open state database .*sluice\.db: file is not a database/.test(e.message),
  );
  assert.equal(existsSync(join(dir, "agent.lock")), false);
});
