/**
 * The agent's state: one SQLite database (`<state-dir>/sluice.db`, WAL mode) holding the environment
 * registry, unit status, runs, events, inventories, API tokens and a small key/value space.
 *
 * Why it is shaped this way:
 * - "Nothing lost": a run is inserted as `running` and committed before any work starts; after a
 *   crash (`kill -9`) the next agent calls {@link Store.markInterruptedRuns} and every run the dead
 *   process left open becomes `interrupted`. WAL with `synchronous = NORMAL` survives a process kill
 *   with every committed transaction intact; run and inventory writes additionally use
 *   `synchronous = FULL` (an fsync per commit) so they also survive power loss — they are few per
 *   reconcile, and they are what convergence and pruning are decided from after a restart.
 * - One agent per state directory: `openStore` takes `agent.lock` (created with O_EXCL, holding
 *   `{pid, host, startedAt}` and, on Linux, the boot id and process start ticks); a live holder makes
 *   it fail with {@link StoreLockedError}, a dead one's lock is taken over and reported in
 *   {@link Store.warnings}. `{ readOnly: true }` reads without it. See `_lock.ts` for the rules.
 * - Inventories are written in one transaction per unit: a reader sees the old set or the new set,
 *   never a mix, and a crash mid-write leaves the old set.
 * - API tokens are random 256-bit strings shown once; the store keeps only their SHA-256 and
 *   compares digests with `timingSafeEqual` against every stored token.
 * - Events are bounded (newest N kept); runs are bounded per unit (newest M kept).
 */
import type { ObjectRef } from "../core/index.js";

/** An environment in the registry: one branch (or a named configuration) deployed to one target. */
export interface EnvironmentRecord {
  name: string;
  branch: string | null;
  /** The `Environments` rule that produced it (null for a local override / hand-made environment). */
  rule: string | null;
  target: string;
  protected: boolean;
  ttlSeconds: number | null;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** ISO-8601 UTC, or null when the environment never expires. */
  expiresAt: string | null;
  state: EnvironmentState;
  /** The source revision last seen for it, `branch@sha1:<sha>`. */
  revision: string | null;
  /** The pull/merge request it previews, for `pr-<n>` environments. */
  prNumber: number | null;
  /** When the current life began (null unless active). */
  activeSince: string | null;
  /** Seconds this environment was active in earlier lives (add `now - activeSince` for the total). */
  uptimeSeconds: number;
  destroyedAt: string | null;
  /**
   * Set when a purge (TTL or schedule) destroyed the environment while its branch still exists:
   * the commit it was at. The environment comes back only when the branch moves past it, or when a
   * user creates it again.
   */
  heldCommit: string | null;
}

/** What callers set; the lifecycle columns are kept by the store. */
export type EnvironmentInput = Omit<
  EnvironmentRecord,
  "createdAt" | "prNumber" | "activeSince" | "uptimeSeconds" | "destroyedAt" | "heldCommit"
> & { createdAt?: string; prNumber?: number | null; heldCommit?: string | null };
export type EnvironmentState = "active" | "destroying" | "destroyed";

export type ReadyState = "True" | "False" | "Unknown";

/** The status of one unit (Kustomization) of one environment, as the API and dashboard show it. */
export interface UnitStatus {
  env: string;
  unit: string;
  ready: ReadyState;
  reason: string;
  message: string;
  revision: string | null;
  lastAppliedRevision: string | null;
  lastAppliedAt: string | null;
  drift: boolean;
  suspended: boolean;
  /** When any other field last changed (ISO-8601 UTC); an identical `setUnitStatus` does not touch it. */
  updatedAt: string;
}

export type RunResult = "running" | "succeeded" | "failed" | "interrupted";
export type StageResult = "succeeded" | "failed" | "skipped";
export interface RunStage {
  name: string;
  result: StageResult;
  ms: number;
  message?: string;
}

/** One reconcile of one unit. */
export interface RunRecord {
  id: number;
  env: string;
  unit: string;
  revision: string | null;
  /** What started it: `interval`, `webhook`, `manual`, `source`, `startup`, … */
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  result: RunResult;
  reason: string | null;
  message: string | null;
  stages: RunStage[];
  /** Change-set counts: created / configured / unchanged / deleted (and any other action). */
  summary: Record<string, number>;
}

export type Severity = "info" | "warning" | "error";
export interface EventRecord {
  id: number;
  at: string;
  env: string | null;
  unit: string | null;
  severity: Severity;
  reason: string;
  message: string;
}

export type TokenRole = "viewer" | "operator";

export interface Inventory {
  refs: ObjectRef[];
  revision: string | null;
}

export interface OpenStoreOptions {
  /** Keep the newest N events (default 10000). */
  eventRetention?: number;
  /** Keep the newest N finished runs per unit (default 200); running runs are never removed. */
  runRetention?: number;
  /** Open for reading only: no lock, no migrations, every write throws. For CLI reads. */
  readOnly?: boolean;
}

export interface Store {
  /** The database file. */
  readonly path: string;
  readonly readOnly: boolean;
  /** Things the user should know about the open, e.g. a stale lock that was taken over. */
  readonly warnings: readonly string[];

  // environments
  /** Inserts or replaces an environment. `createdAt` defaults to now on insert and is kept on update. */
  /**
   * Going to `active` from anything else starts a new life (`activeSince` = now, `heldCommit`
   * cleared unless given).
   */
  upsertEnvironment(e: EnvironmentInput): void;
  getEnvironment(name: string): EnvironmentRecord | undefined;
  /** All environments, by name. */
  listEnvironments(): EnvironmentRecord[];
  /**
   * Moving to `destroyed` ends the current life: its seconds are added to `uptimeSeconds` and
   * `destroyedAt` is set. `heldCommit` (a commit, or null to clear; absent keeps it) records a purge
   * (see {@link EnvironmentRecord.heldCommit}).
   * @throws SluiceError NotFound when the environment is not registered.
   */
  setEnvironmentState(name: string, state: EnvironmentState, opts?: { heldCommit?: string | null }): void;
  /** Sets (or clears) when the environment expires. @throws SluiceError NotFound */
  setEnvironmentExpiry(name: string, expiresAt: string | null): void;
  /**
   * Removes an environment with its unit status and runs. Idempotent.
   * @throws SluiceError Conflict while inventories still exist for it (prune and `deleteInventory` first).
   */
  deleteEnvironment(name: string): void;

  // unit status
  /**
   * Records a unit's status. `changed` is false (and nothing is written) when it equals the stored one.
   * @throws SluiceError NotFound when the environment is not registered.
   */
  setUnitStatus(s: Omit<UnitStatus, "updatedAt">): { changed: boolean };
  getUnitStatus(env: string, unit: string): UnitStatus | undefined;
  /** By environment, then unit. */
  listUnitStatus(env?: string): UnitStatus[];
  /** One unit's status, or every unit's of `env` when `unit` is omitted. Idempotent. */
  deleteUnitStatus(env: string, unit?: string): void;

  // runs
  /** Inserts a `running` run and commits it (durably) before returning its id. */
  startRun(r: { env: string; unit: string; revision: string | null; trigger: string }): number;
  /**
   * Ends a run.
   * @throws SluiceError NotFound for an unknown id, Conflict when the run is no longer running.
   */
  finishRun(
    id: number,
    r: {
      result: Exclude<RunResult, "running">;
      reason?: string | null;
      message?: string | null;
      stages: RunStage[];
      summary: Record<string, number>;
    },
  ): void;
  getRun(id: number): RunRecord | undefined;
  /** Newest first; `limit` defaults to 50 (at most 10000). */
  listRuns(filter?: { env?: string; unit?: string; result?: RunResult; limit?: number }): RunRecord[];
  /**
   * At start-up, with the lock held: every run still `running` was left by a process that died,
   * and becomes `interrupted`. Returns how many.
   */
  markInterruptedRuns(): number;

  // events
  /** Appends an event (message capped at 8 KiB) and drops the oldest beyond the retention. */
  addEvent(e: Omit<EventRecord, "id" | "at">): EventRecord;
  /**
   * Events in ascending id order. With `sinceId`, the first `limit` events after it (for tailing);
   * without, the newest `limit`. `limit` defaults to 100 (at most 10000).
   */
  listEvents(filter?: { env?: string; unit?: string; sinceId?: number; limit?: number }): EventRecord[];

  // inventories
  /**
   * Replaces the set of objects a unit owns, atomically. Refs are de-duplicated by `objectKey`
   * (the first wins) and returned in the order given.
   * @throws SluiceError NotFound when the environment is not registered.
   */
  setInventory(env: string, unit: string, refs: ObjectRef[], revision: string | null): void;
  /** `undefined` when the unit never had an inventory (unlike an empty one: it owns nothing). */
  getInventory(env: string, unit: string): Inventory | undefined;
  /** Units of `env` (or of every environment) that have an inventory. */
  listInventories(env?: string): { env: string; unit: string; revision: string | null; count: number }[];
  /** Idempotent. */
  deleteInventory(env: string, unit: string): void;

  // API tokens
  /**
   * Creates a token and returns its plaintext — the only time it exists; the store keeps its SHA-256.
   * @throws SluiceError Conflict when a token with this name exists.
   */
  addToken(name: string, role: TokenRole): string;
  /** The token's name and role, or undefined. Compares digests in constant time against every token. */
  verifyToken(token: string): { name: string; role: TokenRole } | undefined;
  listTokens(): { name: string; role: TokenRole; createdAt: string }[];
  /** @throws SluiceError NotFound for an unknown name (a mistyped revocation must not pass silently). */
  revokeToken(name: string): void;

  // small key/value space for other modules
  getKV(ns: string, key: string): string | undefined;
  setKV(ns: string, key: string, value: string): void;
  /** Idempotent. */
  deleteKV(ns: string, key: string): void;
  /** Every key of a namespace, by key. */
  listKV(ns: string): { key: string; value: string; updatedAt: string }[];

  /** `PRAGMA integrity_check` and `foreign_key_check` findings; `[]` when the database is sound. */
  integrityCheck(): string[];
  /** Closes the database and releases the lock. Idempotent. */
  close(): void;
}

export { StoreLockedError } from "./_lock.js";
export { CURRENT_SCHEMA_VERSION } from "./_migrations.js";
export { openStore } from "./_store.js";
