/**
 * Schema migrations: an ordered list of SQL steps, recorded in `schema_migrations`. Each step runs
 * in its own IMMEDIATE transaction together with its record, so a crash or a failing statement
 * leaves the database at the previous version. Steps are append-only: never edit a released one.
 */
import type Database from "better-sqlite3";
import { SluiceError } from "../core/index.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial schema",
    sql: `
CREATE TABLE environments (
  name        TEXT PRIMARY KEY,
  branch      TEXT,
  rule        TEXT,
  target      TEXT NOT NULL,
  protected   INTEGER NOT NULL CHECK (protected IN (0, 1)),
  ttl_seconds INTEGER CHECK (ttl_seconds IS NULL OR ttl_seconds >= 0),
  created_at  TEXT NOT NULL,
  expires_at  TEXT,
  state       TEXT NOT NULL CHECK (state IN ('active', 'destroying', 'destroyed')),
  revision    TEXT
) STRICT;

CREATE TABLE unit_status (
  env                   TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,
  unit                  TEXT NOT NULL,
  ready                 TEXT NOT NULL CHECK (ready IN ('True', 'False', 'Unknown')),
  reason                TEXT NOT NULL,
  message               TEXT NOT NULL,
  revision              TEXT,
  last_applied_revision TEXT,
  last_applied_at       TEXT,
  drift                 INTEGER NOT NULL CHECK (drift IN (0, 1)),
  suspended             INTEGER NOT NULL CHECK (suspended IN (0, 1)),
  updated_at            TEXT NOT NULL,
  PRIMARY KEY (env, unit)
) STRICT, WITHOUT ROWID;

CREATE TABLE runs (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  env        TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE,
  unit       TEXT NOT NULL,
  revision   TEXT,
  trigger    TEXT NOT NULL,
  started_at TEXT NOT NULL,
  ended_at   TEXT,
  result     TEXT NOT NULL CHECK (result IN ('running', 'succeeded', 'failed', 'interrupted')),
  reason     TEXT,
  message    TEXT,
  stages     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(stages)),
  summary    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(summary))
) STRICT;
CREATE INDEX runs_by_unit ON runs (env, unit, id);
CREATE INDEX runs_running ON runs (result) WHERE result = 'running';

CREATE TABLE events (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  at       TEXT NOT NULL,
  env      TEXT,
  unit     TEXT,
  severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
  reason   TEXT NOT NULL,
  message  TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_env ON events (env, unit, id);

-- RESTRICT: an environment cannot be forgotten while the store still records objects it owns.
CREATE TABLE inventories (
  env        TEXT NOT NULL REFERENCES environments(name) ON DELETE RESTRICT,
  unit       TEXT NOT NULL,
  revision   TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (env, unit)
) STRICT, WITHOUT ROWID;

CREATE TABLE inventory_objects (
  env         TEXT NOT NULL,
  unit        TEXT NOT NULL,
  seq         INTEGER NOT NULL,
  api_version TEXT NOT NULL,
  kind        TEXT NOT NULL,
  namespace   TEXT NOT NULL DEFAULT '',
  name        TEXT NOT NULL,
  object_key  TEXT NOT NULL,
  PRIMARY KEY (env, unit, seq),
  UNIQUE (env, unit, object_key),
  FOREIGN KEY (env, unit) REFERENCES inventories(env, unit) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX inventory_objects_by_key ON inventory_objects (env, object_key);

CREATE TABLE api_tokens (
  name       TEXT PRIMARY KEY,
  role       TEXT NOT NULL CHECK (role IN ('viewer', 'operator')),
  sha256     BLOB NOT NULL UNIQUE CHECK (length(sha256) = 32),
  created_at TEXT NOT NULL
) STRICT;

CREATE TABLE kv (
  ns         TEXT NOT NULL,
  key        TEXT NOT NULL,
  value      TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (ns, key)
) STRICT, WITHOUT ROWID;
`,
  },
  {
    version: 2,
    name: "environment lifecycle: pull requests, uptime, purge hold",
    sql: `
ALTER TABLE environments ADD COLUMN pr_number INTEGER;
ALTER TABLE environments ADD COLUMN active_since TEXT;
ALTER TABLE environments ADD COLUMN uptime_seconds INTEGER NOT NULL DEFAULT 0 CHECK (uptime_seconds >= 0);
ALTER TABLE environments ADD COLUMN destroyed_at TEXT;
ALTER TABLE environments ADD COLUMN held_commit TEXT;
UPDATE environments SET active_since = created_at WHERE state = 'active';
`,
  },
];

export const CURRENT_SCHEMA_VERSION = MIGRATIONS.reduce((v, m) => Math.max(v, m.version), 0);

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
) STRICT`;

/** The highest applied version, 0 for a new database. Does not create anything. */
export function schemaVersion(db: Database.Database): number {
  const t = db
    .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  if (!t) return 0;
  const row = db.prepare("SELECT max(version) AS v FROM schema_migrations").get() as { v: number | null };
  return row.v ?? 0;
}

export function tooNewError(file: string, found: number, known: number): SluiceError {
  return new SluiceError(
    "Conflict",
    `state database ${file} has schema version ${found}, newer than this sluice knows (${known}); it was written by a newer sluice`,
    { detail: { file, found, known }, hint: "upgrade sluice, or use another --state-dir" },
  );
}

/** Applies every step above the database's version, in order. Returns the versions applied. */
export function migrate(
  db: Database.Database,
  file: string,
  steps: readonly Migration[] = MIGRATIONS,
): number[] {
  db.exec(CREATE_TABLE);
  const known = steps.reduce((v, m) => Math.max(v, m.version), 0);
  const found = schemaVersion(db);
  if (found > known) throw tooNewError(file, found, known);
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
  const applied: number[] = [];
  for (const step of [...steps].sort((a, b) => a.version - b.version)) {
    if (step.version <= found) continue;
    const apply = db.transaction(() => {
      db.exec(step.sql);
      record.run(step.version, step.name, new Date().toISOString());
    });
    try {
      apply.immediate();
    } catch (e) {
      throw new SluiceError(
        "Internal",
        `state database ${file}: migration ${step.version} (${step.name}) failed: ${(e as Error).message}`,
        {
          cause: e,
          detail: { file, version: step.version },
          hint: "the database was left at the previous version",
        },
      );
    }
    applied.push(step.version);
  }
  return applied;
}
