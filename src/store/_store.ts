import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { type ObjectRef, objectKey, SluiceError } from "../core/index.js";
import { acquireLock, type HeldLock, LOCK_REFRESH_MS, refreshLock, releaseLock } from "./_lock.js";
import { CURRENT_SCHEMA_VERSION, migrate, schemaVersion, tooNewError } from "./_migrations.js";
import type {
  EnvironmentInput,
  EnvironmentRecord,
  EnvironmentState,
  EventRecord,
  Inventory,
  OpenStoreOptions,
  RunRecord,
  RunResult,
  RunStage,
  Severity,
  Store,
  TokenRole,
  UnitStatus,
} from "./index.js";

export const DB_FILE = "sluice.db";
const DEFAULT_EVENT_RETENTION = 10_000;
const DEFAULT_RUN_RETENTION = 200;
const MAX_LIST = 10_000;
const MAX_EVENT_MESSAGE = 8192;
const TOKEN_PREFIX = "sluice_";

/**
 * Opens (creating if needed) `dir/sluice.db`, takes the agent lock and brings the schema up to date.
 * @throws StoreLockedError when another live sluice holds the directory.
 * @throws SluiceError Conflict when the database was written by a newer sluice.
 */
export function openStore(dir: string, opts: OpenStoreOptions = {}): Store {
  const root = resolve(dir);
  const file = join(root, DB_FILE);
  positiveInt(opts.eventRetention ?? DEFAULT_EVENT_RETENTION, "eventRetention");
  positiveInt(opts.runRetention ?? DEFAULT_RUN_RETENTION, "runRetention");
  if (opts.readOnly) return new SqliteStore(openReadOnly(root, file), file, undefined, opts);
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new SluiceError("Internal", `cannot create state directory ${root}: ${(e as Error).message}`, {
      cause: e,
      hint: "check the --state-dir path and its permissions",
    });
  }
  const lock = acquireLock(root);
  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    // Holds API token digests: readable by the agent's user only (SQLite gives -wal/-shm the same mode).
    chmodSync(file, 0o600);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.pragma("journal_size_limit = 67108864");
    migrate(db, file);
    return new SqliteStore(db, file, lock, opts);
  } catch (e) {
    db?.close();
    releaseLock(lock);
    throw wrapOpenError(e, file);
  }
}

function openReadOnly(root: string, file: string): Database.Database {
  if (!existsSync(file)) {
    throw new SluiceError("NotFound", `no sluice state in ${root} (${DB_FILE} does not exist)`, {
      hint: "check --state-dir, or start the agent once to create it",
    });
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma("busy_timeout = 5000");
    db.pragma("foreign_keys = ON");
    const found = schemaVersion(db);
    if (found > CURRENT_SCHEMA_VERSION) throw tooNewError(file, found, CURRENT_SCHEMA_VERSION);
    if (found < CURRENT_SCHEMA_VERSION) {
      throw new SluiceError(
        "Conflict",
        `state database ${file} has schema version ${found}, older than this sluice (${CURRENT_SCHEMA_VERSION})`,
        {
          detail: { file, found, known: CURRENT_SCHEMA_VERSION },
          hint: "start the agent once to migrate it",
        },
      );
    }
    return db;
  } catch (e) {
    db?.close();
    throw wrapOpenError(e, file);
  }
}

function wrapOpenError(e: unknown, file: string): unknown {
  if (e instanceof SluiceError) return e;
  return new SluiceError("Internal", `cannot open state database ${file}: ${(e as Error).message}`, {
    cause: e,
    hint: "if the file is not a sluice database or is damaged, move it aside and restart (state is rebuilt from Git and the targets)",
  });
}

// Row shapes as SQLite returns them.
interface EnvRow {
  name: string;
  branch: string | null;
  rule: string | null;
  target: string;
  protected: number;
  ttl_seconds: number | null;
  created_at: string;
  expires_at: string | null;
  state: EnvironmentState;
  revision: string | null;
  pr_number: number | null;
  active_since: string | null;
  uptime_seconds: number;
  destroyed_at: string | null;
  held_commit: string | null;
}
interface StatusRow {
  env: string;
  unit: string;
  ready: UnitStatus["ready"];
  reason: string;
  message: string;
  revision: string | null;
  last_applied_revision: string | null;
  last_applied_at: string | null;
  drift: number;
  suspended: number;
  updated_at: string;
}
interface RunRow {
  id: number;
  env: string;
  unit: string;
  revision: string | null;
  trigger: string;
  started_at: string;
  ended_at: string | null;
  result: RunResult;
  reason: string | null;
  message: string | null;
  stages: string;
  summary: string;
}
interface RefRow {
  api_version: string;
  kind: string;
  namespace: string;
  name: string;
}

const now = () => new Date().toISOString();

class SqliteStore implements Store {
  readonly path: string;
  readonly readOnly: boolean;
  readonly warnings: readonly string[];
  private readonly db: Database.Database;
  private lock: HeldLock | undefined;
  private readonly eventRetention: number;
  private readonly runRetention: number;
  private closed = false;
  private readonly refresher: NodeJS.Timeout | undefined;

  constructor(db: Database.Database, file: string, lock: HeldLock | undefined, opts: OpenStoreOptions) {
    this.db = db;
    this.path = file;
    this.lock = lock;
    this.readOnly = opts.readOnly === true;
    this.warnings = lock?.warning ? [lock.warning] : [];
    this.eventRetention = positiveInt(opts.eventRetention ?? DEFAULT_EVENT_RETENTION, "eventRetention");
    this.runRetention = positiveInt(opts.runRetention ?? DEFAULT_RUN_RETENTION, "runRetention");
    if (lock) {
      this.refresher = setInterval(() => refreshLock(lock), LOCK_REFRESH_MS);
      this.refresher.unref();
    }
  }

  // ── environments ────────────────────────────────────────────────────────────

  upsertEnvironment(e: EnvironmentInput): void {
    this.writable();
    requireName(e.name, "environment name");
    oneOf(e.state, ["active", "destroying", "destroyed"], "environment state");
    if (e.ttlSeconds !== null && !(Number.isInteger(e.ttlSeconds) && e.ttlSeconds >= 0)) {
      throw invalid(`environment ${e.name}: ttlSeconds must be a non-negative integer or null`);
    }
    const created = e.createdAt === undefined ? null : isoTime(e.createdAt, "createdAt");
    this.durably(() =>
      this.q(
        `INSERT INTO environments (name, branch, rule, target, protected, ttl_seconds, created_at, expires_at, state, revision,
             pr_number, active_since, held_commit)
           VALUES (@name, @branch, @rule, @target, @protected, @ttl, coalesce(@created, @now), @expires, @state, @revision,
             @pr, CASE WHEN @state = 'active' THEN @now END, @held)
           ON CONFLICT (name) DO UPDATE SET branch = excluded.branch, rule = excluded.rule, target = excluded.target,
             protected = excluded.protected, ttl_seconds = excluded.ttl_seconds,
             created_at = coalesce(@created, environments.created_at), expires_at = excluded.expires_at,
             revision = excluded.revision, pr_number = coalesce(@pr, environments.pr_number),
             active_since = CASE
               WHEN excluded.state = 'active' AND environments.state <> 'active' THEN @now
               WHEN excluded.state = 'active' THEN coalesce(environments.active_since, @now)
               ELSE environments.active_since END,
             destroyed_at = CASE WHEN excluded.state = 'active' THEN NULL ELSE environments.destroyed_at END,
             held_commit = CASE WHEN excluded.state = 'active' THEN @held ELSE environments.held_commit END,
             state = excluded.state`,
      ).run({
        name: e.name,
        branch: e.branch,
        rule: e.rule,
        target: e.target,
        protected: e.protected ? 1 : 0,
        ttl: e.ttlSeconds,
        created,
        now: now(),
        expires: e.expiresAt === null ? null : isoTime(e.expiresAt, "expiresAt"),
        state: e.state,
        revision: e.revision,
        pr: e.prNumber ?? null,
        held: e.heldCommit ?? null,
      }),
    );
  }

  getEnvironment(name: string): EnvironmentRecord | undefined {
    const row = this.q("SELECT * FROM environments WHERE name = ?").get(name) as EnvRow | undefined;
    return row && envOf(row);
  }

  listEnvironments(): EnvironmentRecord[] {
    return (this.q("SELECT * FROM environments ORDER BY name").all() as EnvRow[]).map(envOf);
  }

  setEnvironmentState(
    name: string,
    state: EnvironmentState,
    opts: { heldCommit?: string | null } = {},
  ): void {
    this.writable();
    oneOf(state, ["active", "destroying", "destroyed"], "environment state");
    const params = {
      at: now(),
      state,
      name,
      setHeld: opts.heldCommit === undefined ? 0 : 1,
      held: opts.heldCommit ?? null,
    };
    const r = this.durably(() =>
      this.q(
        `UPDATE environments SET state = @state,
           held_commit = CASE WHEN @setHeld = 1 THEN @held ELSE held_commit END,
           uptime_seconds = uptime_seconds + CASE WHEN @state = 'destroyed' AND active_since IS NOT NULL
             THEN max(0, CAST(round((julianday(@at) - julianday(active_since)) * 86400) AS INTEGER)) ELSE 0 END,
           destroyed_at = CASE WHEN @state = 'destroyed' THEN @at ELSE destroyed_at END,
           active_since = CASE WHEN @state = 'destroyed' THEN NULL
             WHEN @state = 'active' THEN coalesce(active_since, @at) ELSE active_since END
         WHERE name = @name`,
      ).run(params),
    );
    if (r.changes === 0) throw notRegistered(name);
  }

  setEnvironmentExpiry(name: string, expiresAt: string | null): void {
    this.writable();
    const v = expiresAt === null ? null : isoTime(expiresAt, "expiresAt");
    const r = this.durably(() =>
      this.q("UPDATE environments SET expires_at = ? WHERE name = ?").run(v, name),
    );
    if (r.changes === 0) throw notRegistered(name);
  }

  deleteEnvironment(name: string): void {
    this.writable();
    const owned = this.q("SELECT unit FROM inventories WHERE env = ? ORDER BY unit").pluck().all(name);
    if (owned.length > 0) {
      throw new SluiceError(
        "Conflict",
        `environment ${name} still has inventories for units ${owned.join(", ")}; its objects would be orphaned`,
        { detail: { env: name, units: owned }, hint: "prune those units and delete their inventories first" },
      );
    }
    this.durably(() => this.q("DELETE FROM environments WHERE name = ?").run(name));
  }

  // ── unit status ─────────────────────────────────────────────────────────────

  setUnitStatus(s: Omit<UnitStatus, "updatedAt">): { changed: boolean } {
    this.writable();
    oneOf(s.ready, ["True", "False", "Unknown"], "ready");
    const row = {
      env: s.env,
      unit: s.unit,
      ready: s.ready,
      reason: s.reason,
      message: s.message,
      revision: s.revision,
      last_applied_revision: s.lastAppliedRevision,
      last_applied_at: s.lastAppliedAt === null ? null : isoTime(s.lastAppliedAt, "lastAppliedAt"),
      drift: s.drift ? 1 : 0,
      suspended: s.suspended ? 1 : 0,
    };
    const write = this.db.transaction(() => {
      const old = this.q("SELECT * FROM unit_status WHERE env = ? AND unit = ?").get(s.env, s.unit) as
        | StatusRow
        | undefined;
      if (old && sameStatus(old, row)) return false;
      this.q(
        `INSERT INTO unit_status (env, unit, ready, reason, message, revision, last_applied_revision, last_applied_at, drift, suspended, updated_at)
           VALUES (@env, @unit, @ready, @reason, @message, @revision, @last_applied_revision, @last_applied_at, @drift, @suspended, @updated_at)
           ON CONFLICT (env, unit) DO UPDATE SET ready = excluded.ready, reason = excluded.reason, message = excluded.message,
             revision = excluded.revision, last_applied_revision = excluded.last_applied_revision,
             last_applied_at = excluded.last_applied_at, drift = excluded.drift, suspended = excluded.suspended,
             updated_at = excluded.updated_at`,
      ).run({ ...row, updated_at: now() });
      return true;
    });
    return { changed: this.withEnv(s.env, () => write.immediate()) };
  }

  getUnitStatus(env: string, unit: string): UnitStatus | undefined {
    const row = this.q("SELECT * FROM unit_status WHERE env = ? AND unit = ?").get(env, unit) as
      | StatusRow
      | undefined;
    return row && statusOf(row);
  }

  listUnitStatus(env?: string): UnitStatus[] {
    const rows = (
      env === undefined
        ? this.q("SELECT * FROM unit_status ORDER BY env, unit").all()
        : this.q("SELECT * FROM unit_status WHERE env = ? ORDER BY unit").all(env)
    ) as StatusRow[];
    return rows.map(statusOf);
  }

  deleteUnitStatus(env: string, unit?: string): void {
    this.writable();
    if (unit === undefined) this.q("DELETE FROM unit_status WHERE env = ?").run(env);
    else this.q("DELETE FROM unit_status WHERE env = ? AND unit = ?").run(env, unit);
  }

  // ── runs ────────────────────────────────────────────────────────────────────

  startRun(r: { env: string; unit: string; revision: string | null; trigger: string }): number {
    this.writable();
    requireName(r.unit, "unit name");
    requireName(r.trigger, "run trigger");
    const info = this.withEnv(r.env, () =>
      this.durably(() =>
        this.q(
          "INSERT INTO runs (env, unit, revision, trigger, started_at, result) VALUES (?, ?, ?, ?, ?, 'running')",
        ).run(r.env, r.unit, r.revision, r.trigger, now()),
      ),
    );
    return Number(info.lastInsertRowid);
  }

  finishRun(
    id: number,
    r: {
      result: Exclude<RunResult, "running">;
      reason?: string | null;
      message?: string | null;
      stages: RunStage[];
      summary: Record<string, number>;
    },
  ): void {
    this.writable();
    oneOf(r.result, ["succeeded", "failed", "interrupted"], "run result");
    for (const st of r.stages) {
      oneOf(st.result, ["succeeded", "failed", "skipped"], `stage ${st.name} result`);
      if (!(typeof st.ms === "number" && Number.isFinite(st.ms) && st.ms >= 0)) {
        throw invalid(`run ${id}: stage ${st.name} duration must be a non-negative number of milliseconds`);
      }
    }
    for (const [k, v] of Object.entries(r.summary)) {
      if (!Number.isInteger(v) || v < 0)
        throw invalid(`run ${id}: summary count ${k} must be a non-negative integer`);
    }
    this.durably(() => {
      const cur = this.q("SELECT env, unit, result FROM runs WHERE id = ?").get(id) as
        | { env: string; unit: string; result: RunResult }
        | undefined;
      if (!cur) throw new SluiceError("NotFound", `run ${id} does not exist`);
      if (cur.result !== "running") {
        throw new SluiceError(
          "Conflict",
          `run ${id} of ${cur.env}/${cur.unit} already ended (${cur.result})`,
          {
            detail: { id, result: cur.result },
          },
        );
      }
      this.q(
        "UPDATE runs SET ended_at = ?, result = ?, reason = ?, message = ?, stages = ?, summary = ? WHERE id = ?",
      ).run(
        now(),
        r.result,
        r.reason ?? null,
        r.message ?? null,
        JSON.stringify(r.stages.map(stageOf)),
        JSON.stringify(r.summary),
        id,
      );
      // Bounded history per unit; running runs are never removed.
      this.q(
        `DELETE FROM runs WHERE env = @env AND unit = @unit AND result != 'running' AND id < coalesce(
             (SELECT id FROM runs WHERE env = @env AND unit = @unit AND result != 'running'
              ORDER BY id DESC LIMIT 1 OFFSET @keep - 1), 0)`,
      ).run({ env: cur.env, unit: cur.unit, keep: this.runRetention });
    });
  }

  getRun(id: number): RunRecord | undefined {
    const row = this.q("SELECT * FROM runs WHERE id = ?").get(id) as RunRow | undefined;
    return row && runOf(row);
  }

  listRuns(filter: { env?: string; unit?: string; result?: RunResult; limit?: number } = {}): RunRecord[] {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: limitOf(filter.limit, 50) };
    if (filter.env !== undefined) {
      where.push("env = @env");
      params.env = filter.env;
    }
    if (filter.unit !== undefined) {
      where.push("unit = @unit");
      params.unit = filter.unit;
    }
    if (filter.result !== undefined) {
      where.push("result = @result");
      params.result = filter.result;
    }
    const sql = `SELECT * FROM runs ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT @limit`;
    return (this.q(sql).all(params) as RunRow[]).map(runOf);
  }

  markInterruptedRuns(): number {
    this.writable();
    const r = this.durably(() =>
      this.q(
        `UPDATE runs SET result = 'interrupted', ended_at = ?, reason = 'Interrupted',
             message = 'sluice stopped before this run finished (the process was killed or crashed); the unit is reconciled again'
           WHERE result = 'running'`,
      ).run(now()),
    );
    return r.changes;
  }

  // ── events ──────────────────────────────────────────────────────────────────

  addEvent(e: Omit<EventRecord, "id" | "at">): EventRecord {
    this.writable();
    oneOf(e.severity, ["info", "warning", "error"], "event severity");
    requireName(e.reason, "event reason");
    const message =
      e.message.length > MAX_EVENT_MESSAGE
        ? `${e.message.slice(0, MAX_EVENT_MESSAGE)} … (truncated)`
        : e.message;
    const at = now();
    const add = this.db.transaction(() => {
      const id = Number(
        this.q("INSERT INTO events (at, env, unit, severity, reason, message) VALUES (?, ?, ?, ?, ?, ?)").run(
          at,
          e.env,
          e.unit,
          e.severity,
          e.reason,
          message,
        ).lastInsertRowid,
      );
      // Ids are assigned in order and only the oldest are ever removed, so the newest N are id > id - N.
      this.q("DELETE FROM events WHERE id <= ?").run(id - this.eventRetention);
      return id;
    });
    const id = add.immediate();
    return { id, at, env: e.env, unit: e.unit, severity: e.severity as Severity, reason: e.reason, message };
  }

  listEvents(filter: { env?: string; unit?: string; sinceId?: number; limit?: number } = {}): EventRecord[] {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: limitOf(filter.limit, 100) };
    if (filter.env !== undefined) {
      where.push("env = @env");
      params.env = filter.env;
    }
    if (filter.unit !== undefined) {
      where.push("unit = @unit");
      params.unit = filter.unit;
    }
    const cond = (extra: string[]) => (extra.length ? `WHERE ${extra.join(" AND ")}` : "");
    let sql: string;
    if (filter.sinceId !== undefined) {
      params.since = filter.sinceId;
      sql = `SELECT * FROM events ${cond([...where, "id > @since"])} ORDER BY id ASC LIMIT @limit`;
    } else {
      sql = `SELECT * FROM (SELECT * FROM events ${cond(where)} ORDER BY id DESC LIMIT @limit) ORDER BY id ASC`;
    }
    return this.q(sql).all(params) as EventRecord[];
  }

  // ── inventories ─────────────────────────────────────────────────────────────

  setInventory(env: string, unit: string, refs: ObjectRef[], revision: string | null): void {
    this.writable();
    requireName(unit, "unit name");
    const seen = new Set<string>();
    const rows: (RefRow & { key: string })[] = [];
    for (const r of refs) {
      if (!r?.apiVersion || !r.kind || !r.name) {
        throw invalid(`inventory of ${env}/${unit}: every object needs apiVersion, kind and name`);
      }
      const key = objectKey(r);
      if (seen.has(key)) continue;
      seen.add(key);
      rows.push({ api_version: r.apiVersion, kind: r.kind, namespace: r.namespace ?? "", name: r.name, key });
    }
    this.withEnv(env, () =>
      this.durably(() => {
        const t = now();
        this.q(
          `INSERT INTO inventories (env, unit, revision, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (env, unit) DO UPDATE SET revision = excluded.revision, updated_at = excluded.updated_at`,
        ).run(env, unit, revision, t);
        this.q("DELETE FROM inventory_objects WHERE env = ? AND unit = ?").run(env, unit);
        const ins = this.q(
          "INSERT INTO inventory_objects (env, unit, seq, api_version, kind, namespace, name, object_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        rows.forEach((r, i) => {
          ins.run(env, unit, i, r.api_version, r.kind, r.namespace, r.name, r.key);
        });
      }),
    );
  }

  getInventory(env: string, unit: string): Inventory | undefined {
    // One read transaction, so the header and the objects come from the same version.
    return this.db.transaction(() => {
      const head = this.q("SELECT revision FROM inventories WHERE env = ? AND unit = ?").get(env, unit) as
        | { revision: string | null }
        | undefined;
      if (!head) return undefined;
      const rows = this.q(
        "SELECT api_version, kind, namespace, name FROM inventory_objects WHERE env = ? AND unit = ? ORDER BY seq",
      ).all(env, unit) as RefRow[];
      return { refs: rows.map(refOfRow), revision: head.revision };
    })();
  }

  listInventories(env?: string): { env: string; unit: string; revision: string | null; count: number }[] {
    const sql = `SELECT i.env, i.unit, i.revision,
        (SELECT count(*) FROM inventory_objects o WHERE o.env = i.env AND o.unit = i.unit) AS count
      FROM inventories i ${env === undefined ? "" : "WHERE i.env = @env"} ORDER BY i.env, i.unit`;
    return this.q(sql).all(env === undefined ? {} : { env }) as {
      env: string;
      unit: string;
      revision: string | null;
      count: number;
    }[];
  }

  deleteInventory(env: string, unit: string): void {
    this.writable();
    this.durably(() => this.q("DELETE FROM inventories WHERE env = ? AND unit = ?").run(env, unit));
  }

  // ── API tokens ──────────────────────────────────────────────────────────────

  addToken(name: string, role: TokenRole): string {
    this.writable();
    requireName(name, "token name");
    if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(name)) {
      throw invalid(`token name ${JSON.stringify(name)} must be 1–128 letters, digits, '.', '_', '@' or '-'`);
    }
    oneOf(role, ["viewer", "operator"], "token role");
    const token = TOKEN_PREFIX + randomBytes(32).toString("base64url");
    try {
      this.durably(() =>
        this.q("INSERT INTO api_tokens (name, role, sha256, created_at) VALUES (?, ?, ?, ?)").run(
          name,
          role,
          digest(token),
          now(),
        ),
      );
    } catch (e) {
      if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY") {
        throw new SluiceError("Conflict", `an API token named ${name} already exists`, {
          hint: "revoke it first or choose another name",
        });
      }
      throw e;
    }
    return token;
  }

  verifyToken(token: string): { name: string; role: TokenRole } | undefined {
    if (typeof token !== "string" || token.length === 0 || token.length > 1024) return undefined;
    const presented = digest(token);
    const rows = this.q("SELECT name, role, sha256 FROM api_tokens").all() as {
      name: string;
      role: TokenRole;
      sha256: Buffer;
    }[];
    // Compare against every token without stopping early: the time does not depend on which matched.
    let found: { name: string; role: TokenRole } | undefined;
    for (const r of rows) {
      if (timingSafeEqual(r.sha256, presented) && !found) found = { name: r.name, role: r.role };
    }
    return found;
  }

  listTokens(): { name: string; role: TokenRole; createdAt: string }[] {
    return this.q("SELECT name, role, created_at AS createdAt FROM api_tokens ORDER BY name").all() as {
      name: string;
      role: TokenRole;
      createdAt: string;
    }[];
  }

  revokeToken(name: string): void {
    this.writable();
    const r = this.durably(() => this.q("DELETE FROM api_tokens WHERE name = ?").run(name));
    if (r.changes === 0) {
      throw new SluiceError("NotFound", `no API token named ${name}`, {
        hint: "list tokens to see their names",
      });
    }
  }

  // ── key/value ───────────────────────────────────────────────────────────────

  getKV(ns: string, key: string): string | undefined {
    return this.q("SELECT value FROM kv WHERE ns = ? AND key = ?").pluck().get(ns, key) as string | undefined;
  }

  setKV(ns: string, key: string, value: string): void {
    this.writable();
    requireName(ns, "key/value namespace");
    if (typeof value !== "string") throw invalid(`key/value ${ns}/${key}: value must be a string`);
    this.q(
      `INSERT INTO kv (ns, key, value, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    ).run(ns, key, value, now());
  }

  deleteKV(ns: string, key: string): void {
    this.writable();
    this.q("DELETE FROM kv WHERE ns = ? AND key = ?").run(ns, key);
  }

  listKV(ns: string): { key: string; value: string; updatedAt: string }[] {
    return this.q("SELECT key, value, updated_at AS updatedAt FROM kv WHERE ns = ? ORDER BY key").all(ns) as {
      key: string;
      value: string;
      updatedAt: string;
    }[];
  }

  // ── housekeeping ────────────────────────────────────────────────────────────

  integrityCheck(): string[] {
    const problems = (this.db.pragma("integrity_check") as { integrity_check: string }[])
      .map((r) => r.integrity_check)
      .filter((m) => m !== "ok");
    const fk = this.db.pragma("foreign_key_check") as {
      table: string;
      rowid: number | null;
      parent: string;
      fkid: number;
    }[];
    for (const v of fk) {
      problems.push(
        `foreign key: a row of ${v.table} (rowid ${v.rowid ?? "n/a"}) refers to a missing ${v.parent} row`,
      );
    }
    return problems;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.refresher);
    try {
      this.db.close();
    } finally {
      if (this.lock) releaseLock(this.lock);
      this.lock = undefined;
    }
  }

  // ── helpers ─────────────────────────────────────────────────────────────────

  /** Prepared statements, one per SQL text. */
  private readonly statements = new Map<string, Database.Statement>();
  private q(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private writable(): void {
    if (this.closed) throw new SluiceError("Internal", `state database ${this.path} is closed`);
    if (this.readOnly) {
      throw new SluiceError("Forbidden", `state database ${this.path} is open read-only`, {
        hint: "changes go through the running agent (its API), not the state files",
      });
    }
  }

  /**
   * Runs `fn` in an IMMEDIATE transaction committed with `synchronous = FULL` (fsync of the WAL), for
   * records that must survive power loss as well as a process kill: runs, inventories, environments, tokens.
   */
  private durably<T>(fn: () => T): T {
    this.db.pragma("synchronous = FULL");
    try {
      return this.db.transaction(fn).immediate();
    } finally {
      this.db.pragma("synchronous = NORMAL");
    }
  }

  /** Turns a foreign-key failure on `env` into "environment not registered". */
  private withEnv<T>(env: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_FOREIGNKEY") throw notRegistered(env);
      throw e;
    }
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function envOf(r: EnvRow): EnvironmentRecord {
  return {
    name: r.name,
    branch: r.branch,
    rule: r.rule,
    target: r.target,
    protected: r.protected === 1,
    ttlSeconds: r.ttl_seconds,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    state: r.state,
    revision: r.revision,
    prNumber: r.pr_number,
    activeSince: r.active_since,
    uptimeSeconds: r.uptime_seconds,
    destroyedAt: r.destroyed_at,
    heldCommit: r.held_commit,
  };
}

function statusOf(r: StatusRow): UnitStatus {
  return {
    env: r.env,
    unit: r.unit,
    ready: r.ready,
    reason: r.reason,
    message: r.message,
    revision: r.revision,
    lastAppliedRevision: r.last_applied_revision,
    lastAppliedAt: r.last_applied_at,
    drift: r.drift === 1,
    suspended: r.suspended === 1,
    updatedAt: r.updated_at,
  };
}

function sameStatus(old: StatusRow, row: Omit<StatusRow, "updated_at">): boolean {
  return (Object.keys(row) as (keyof typeof row)[]).every((k) => old[k] === row[k]);
}

function runOf(r: RunRow): RunRecord {
  return {
    id: r.id,
    env: r.env,
    unit: r.unit,
    revision: r.revision,
    trigger: r.trigger,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    result: r.result,
    reason: r.reason,
    message: r.message,
    stages: JSON.parse(r.stages) as RunStage[],
    summary: JSON.parse(r.summary) as Record<string, number>,
  };
}

function stageOf(s: RunStage): RunStage {
  return s.message === undefined
    ? { name: s.name, result: s.result, ms: s.ms }
    : { name: s.name, result: s.result, ms: s.ms, message: s.message };
}

function refOfRow(r: RefRow): ObjectRef {
  const ref: ObjectRef = { apiVersion: r.api_version, kind: r.kind, name: r.name };
  if (r.namespace) ref.namespace = r.namespace;
  return ref;
}

function notRegistered(env: string): SluiceError {
  return new SluiceError("NotFound", `environment ${env} is not registered in the store`, {
    detail: { env },
    hint: "register it with upsertEnvironment first",
  });
}

function invalid(message: string): SluiceError {
  return new SluiceError("ConfigInvalid", message);
}

function requireName(v: unknown, what: string): void {
  if (typeof v !== "string" || v.length === 0) throw invalid(`${what} must be a non-empty string`);
}

function oneOf(v: unknown, allowed: readonly string[], what: string): void {
  if (typeof v !== "string" || !allowed.includes(v)) {
    throw invalid(`${what} must be one of ${allowed.join(", ")} (got ${JSON.stringify(v)})`);
  }
}

function isoTime(v: string, what: string): string {
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw invalid(`${what} must be an ISO-8601 time (got ${JSON.stringify(v)})`);
  return new Date(t).toISOString();
}

function positiveInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1)
    throw invalid(`store option ${what} must be a positive integer (got ${v})`);
  return v;
}

function limitOf(v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw invalid(`limit must be a positive integer (got ${v})`);
  return Math.min(v, MAX_LIST);
}
