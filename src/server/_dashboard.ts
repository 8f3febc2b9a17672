/**
 * The dashboard's side of the server: the built front end (`dist/web`, from `web/` by Vite) served
 * as static files under a strict Content-Security-Policy, and the read routes the pages need that
 * the plain API does not answer cheaply.
 *
 * Routes (all under `/api/v1`, bearer token as for every API route; JSON, scrubbed like the rest):
 * - `GET /whoami` (viewer, operator) → {@link WhoAmIAnswer}: the caller's token name and role.
 * - `POST /stream-ticket` (viewer, operator) → {@link StreamTicketAnswer}: a one-time ticket, valid
 *   for {@link TICKET_TTL_MS}, that opens `GET /stream?ticket=…` without an `Authorization`
 *   header (a browser's EventSource cannot send one). The ticket carries the token's name and
 *   role, is kept as a SHA-256 digest, is spent by its first use, and is refused when its token
 *   was revoked meanwhile.
 * - `GET /matrix?offset=&limit=&q=&status=&kind=` (viewer, operator) → {@link MatrixAnswer}: the
 *   home page's environment × unit matrix, filtered and paginated on the server. `q` matches every
 *   whitespace-separated term against environment name, branch, rule and revisions; `status` is one
 *   of {@link STATUS_FILTERS} (a row matches when any of its cells does); `kind` is `long-lived` or
 *   `preview` (an environment with a time to live). Counts are over all environments.
 * - `GET /environments/:env` (viewer, operator) → {@link EnvironmentDetail}: units with their
 *   dependencies, objects with health, recent runs with stages, the last change's diff (Secret
 *   values are masked by the planner, and the answer is scrubbed), smoke-test results and URLs.
 *
 * Why the browser authenticates this way: the token stays in the tab (sessionStorage) and goes out
 * only as an `Authorization` header, which browsers never attach on their own, so a cross-site page
 * cannot make a request on the user's behalf (no CSRF by construction, no cookie to defend). The
 * event stream is the one request that cannot carry the header; it gets a short-lived single-use
 * ticket instead, bought with the header. The page itself runs under `script-src 'self'` with
 * Trusted Types required, so injected markup cannot run script to read the token.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { Logger } from "pino";
import { byKind } from "../config/index.js";
import { errorMessage, type ObjectRef, SluiceError, subject } from "../core/index.js";
import type { ChangeEntry } from "../plan/index.js";
import type { AgentEvent } from "../reconcile/index.js";
import type { EnvironmentRecord, RunRecord, RunStage, Store, TokenRole, UnitStatus } from "../store/index.js";
import type { HealthReport, HealthStatus } from "../targets/index.js";
import { HttpError, intParam, methodNotAllowed, sendJson } from "./_http.js";
import type { Scrubber } from "./_scrub.js";
import type { ApiAgent } from "./_types.js";

/** What the dashboard can show beyond the store, when `sluice serve` provides it. */
export interface DashboardOptions {
  /**
   * Directory of the built front end. Default: `dist/web` of this package; `false` serves none.
   */
  assets?: string | false;
  /** Live health of a unit's objects (the target's `health()`), for the environment page. */
  objectHealth?: (env: EnvironmentRecord, unit: string, refs: ObjectRef[]) => Promise<HealthReport>;
  /** Where a unit's Services answer (the local target's proxy addresses). */
  urls?: (env: EnvironmentRecord, unit: string) => { name: string; url: string }[];
}

// --- answer shapes ------------------------------------------------------------------------------

/** A cell's health, from its unit status (see {@link cellHealth}). */
export type Health = "Healthy" | "Progressing" | "Degraded" | "Failed" | "Unknown";
/** A cell's sync state (see {@link cellSync}). */
export type Sync = "InSync" | "OutOfSync" | "Drifted" | "Unknown";
export const HEALTHS: readonly Health[] = ["Healthy", "Progressing", "Degraded", "Failed", "Unknown"];
export const SYNCS: readonly Sync[] = ["InSync", "OutOfSync", "Drifted", "Unknown"];
/** Values of the matrix's `status` filter. */
export const STATUS_FILTERS = [...HEALTHS, "OutOfSync", "Drifted", "Suspended"] as const;
export type StatusFilter = (typeof STATUS_FILTERS)[number];
export type EnvironmentKind = "long-lived" | "preview";

export interface WhoAmIAnswer {
  name: string;
  role: TokenRole;
}
export interface StreamTicketAnswer {
  ticket: string;
  /** ISO-8601 UTC. */
  expiresAt: string;
}

export interface MatrixCell {
  health: Health;
  sync: Sync;
  ready: UnitStatus["ready"];
  reason: string;
  /** The first line of the status message, at most 240 characters. */
  message: string;
  /**
   * The unit failed and is being tried again at the same revision: health, reason and message are
   * the failure's (a retry must not make a failing unit look like a rollout in progress).
   */
  retrying: boolean;
  revision: string | null;
  lastAppliedRevision: string | null;
  suspended: boolean;
  updatedAt: string;
}

export interface MatrixEnvironment {
  name: string;
  branch: string | null;
  rule: string | null;
  target: string;
  protected: boolean;
  createdAt: string;
  expiresAt: string | null;
  state: EnvironmentRecord["state"];
  kind: EnvironmentKind;
  /** The worst health of its cells ("Unknown" when it has none yet). */
  health: Health;
}

export interface MatrixRow {
  env: MatrixEnvironment;
  /** By unit name; a unit the environment does not have is absent. */
  cells: Record<string, MatrixCell>;
}

export interface MatrixCounts {
  environments: number;
  previews: number;
  cells: number;
  health: Record<Health, number>;
  sync: Record<Sync, number>;
  suspended: number;
}

export interface MatrixAnswer {
  /** Rows matching the filters (all of them, not only this page). */
  total: number;
  offset: number;
  limit: number;
  /** Column order: the configuration's Kustomizations, then any other unit seen, by name. */
  units: string[];
  /** Over every environment, whatever the filters. */
  counts: MatrixCounts;
  rows: MatrixRow[];
}

export interface DetailObject {
  subject: string;
  kind: string;
  namespace: string | null;
  name: string;
  health: HealthStatus | null;
  message: string;
}

export interface DetailChange {
  runId: number | null;
  at: string;
  revision: string | null;
  /** Entries that changed something (unchanged ones are left out); diffs have Secret values masked. */
  entries: ChangeEntry[];
  unchanged: number;
}

export interface DetailUnit {
  name: string;
  dependsOn: string[];
  /** The unit's status; while it retries a failed revision, reason and message are the failure's. */
  status: UnitStatus | null;
  health: Health;
  retrying: boolean;
  sync: Sync;
  objects: DetailObject[];
  /** Where object health comes from: the target now, the last run's health stage, or nowhere. */
  objectHealthFrom: "target" | "last-run" | "status" | "none";
  inventoryRevision: string | null;
  lastRun: RunRecord | null;
  lastChange: DetailChange | null;
  /** The last run's smoke-test stage (`checks`), if it got that far. */
  smoke: {
    runId: number;
    revision: string | null;
    at: string;
    result: RunStage["result"];
    ms: number;
    message: string | null;
  } | null;
  urls: { name: string; url: string }[];
}

export interface EnvironmentDetail {
  environment: MatrixEnvironment & { ttlSeconds: number | null; revision: string | null };
  units: DetailUnit[];
  /** Newest first, every unit of the environment. */
  runs: RunRecord[];
}

// --- status mapping -----------------------------------------------------------------------------

const DEGRADED_REASONS = new Set(["HealthCheckFailed", "SmokeTestFailed"]);
const WAITING_REASONS = new Set(["Progressing", "DependencyNotReady"]);

/** Health as the dashboard shows it: Flux's Ready condition and reason, in Argo CD's words. */
export function cellHealth(s: Pick<UnitStatus, "ready" | "reason">): Health {
  if (WAITING_REASONS.has(s.reason)) return "Progressing";
  if (s.ready === "True") return "Healthy";
  if (s.ready === "Unknown") return "Unknown";
  return DEGRADED_REASONS.has(s.reason) ? "Degraded" : s.reason === "Suspended" ? "Unknown" : "Failed";
}

/** In sync when the revision seen is the one applied; drifted when the last apply had to correct. */
export function cellSync(s: Pick<UnitStatus, "revision" | "lastAppliedRevision" | "drift">): Sync {
  if (!s.revision) return s.lastAppliedRevision ? "InSync" : "Unknown";
  if (s.revision !== s.lastAppliedRevision) return "OutOfSync";
  return s.drift ? "Drifted" : "InSync";
}

/** Units retrying after a failure whose last run is looked up per matrix build (the rest show Progressing). */
const MAX_RETRY_LOOKUPS = 500;

/**
 * What a unit shows: its status, except while it retries a revision whose last run failed (the
 * agent then writes `Progressing` over the failure), when the failure is what matters.
 */
export function effectiveStatus(
  s: UnitStatus,
  lastFinishedRun: () => RunRecord | undefined,
): { health: Health; reason: string; message: string; retrying: boolean } {
  if (s.ready === "False" && s.reason === "Progressing") {
    const run = lastFinishedRun();
    if (run?.result === "failed" && run.reason && run.revision === s.revision) {
      return {
        health: cellHealth({ ready: "False", reason: run.reason }),
        reason: run.reason,
        message: `${run.message ?? run.reason} (retrying)`,
        retrying: true,
      };
    }
  }
  return { health: cellHealth(s), reason: s.reason, message: s.message, retrying: false };
}

function lastFinished(store: Store, env: string, unit: string): RunRecord | undefined {
  return store.listRuns({ env, unit, limit: 5 }).find((r) => r.result !== "running");
}

const WORST: Health[] = ["Failed", "Degraded", "Progressing", "Unknown", "Healthy"];
function worst(hs: Iterable<Health>): Health {
  let best = WORST.length - 1;
  let any = false;
  for (const h of hs) {
    any = true;
    best = Math.min(best, WORST.indexOf(h));
  }
  return any ? WORST[best]! : "Unknown";
}

function kindOf(e: EnvironmentRecord): EnvironmentKind {
  return e.ttlSeconds !== null || e.expiresAt !== null ? "preview" : "long-lived";
}

function oneLine(s: string, max = 240): string {
  const first = s.split("\n", 1)[0] ?? "";
  const clean = first.replace(/\u001b\[[0-9;]*[A-Za-z]/g, "").replace(/[\u0000-\u001f\u007f]/g, " ");
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

// --- the matrix model ---------------------------------------------------------------------------

interface Row {
  out: MatrixRow;
  text: string;
  tags: Set<StatusFilter>;
}

interface Model {
  at: number;
  units: string[];
  rows: Row[];
  counts: MatrixCounts;
}

/** A model older than this is rebuilt even without a change event (writes made outside the agent). */
const MODEL_MAX_AGE_MS = 2_000;

/** One-time stream tickets. */
export const TICKET_TTL_MS = 60_000;
const MAX_TICKETS = 10_000;

/** Last changes kept in memory (one per unit), and the largest diff kept per entry. */
const MAX_CHANGES = 20_000;
const MAX_DIFF_CHARS = 64 * 1024;

interface Caller {
  name: string;
  role: TokenRole;
}

export interface DashboardContext {
  agent: ApiAgent;
  store: Store;
  log: Logger;
  scrub: () => Scrubber;
}

export class Dashboard {
  private model: Model | undefined;
  private dirty = true;
  private readonly tickets = new Map<string, { name: string; role: TokenRole; exp: number }>();
  private readonly changes = new Map<string, DetailChange>();
  private assets: Assets | undefined;

  constructor(
    private readonly ctx: DashboardContext,
    private readonly opts: DashboardOptions = {},
  ) {}

  /**
   * Every agent change (the server's one listener calls it): marks the matrix stale and keeps
   * each unit's last change set, for the environment page's diff.
   */
  observe(e: AgentEvent): void {
    this.dirty = true;
    if (e.type === "run" && e.changeSet) {
      const entries: ChangeEntry[] = [];
      let unchanged = 0;
      for (const c of e.changeSet.entries) {
        if (c.action === "unchanged") unchanged++;
        else
          entries.push(
            c.diff && c.diff.length > MAX_DIFF_CHARS
              ? { ...c, diff: `${c.diff.slice(0, MAX_DIFF_CHARS)}\n… (diff truncated)` }
              : c,
          );
      }
      // A reconcile that changed nothing keeps the last real change on show.
      if (entries.length === 0 && this.changes.has(`${e.env}/${e.unit}`)) return;
      const key = `${e.env}/${e.unit}`;
      this.changes.delete(key);
      this.changes.set(key, {
        runId: e.runId,
        at: new Date().toISOString(),
        revision: this.ctx.store.getRun(e.runId)?.revision ?? null,
        entries,
        unchanged,
      });
      if (this.changes.size > MAX_CHANGES) this.changes.delete(this.changes.keys().next().value!);
    }
    if (e.type === "environment" && e.state === "destroyed") {
      for (const k of [...this.changes.keys()]) if (k.startsWith(`${e.env}/`)) this.changes.delete(k);
    }
  }

  // --- authentication of the event stream -------------------------------------------------------

  /**
   * The caller of `GET /api/v1/stream?ticket=…` sent without an `Authorization` header, or
   * undefined when the request is anything else (it then authenticates as usual).
   * @throws HttpError 401 for a ticket that is unknown, spent, expired or whose token is gone.
   */
  ticketCaller(req: IncomingMessage, path: string, query: URLSearchParams): Caller | undefined {
    if (path !== "/stream" || req.headers.authorization !== undefined) return undefined;
    const ticket = query.get("ticket");
    if (ticket === null) return undefined;
    const key = digest(ticket);
    const t = this.tickets.get(key);
    this.tickets.delete(key);
    if (!t || t.exp < Date.now() || !this.ctx.store.listTokens().some((x) => x.name === t.name))
      throw new HttpError(401, "Unauthorized", "the stream ticket is not valid (spent, expired or unknown)", {
        "WWW-Authenticate": 'Bearer realm="sluice"',
      });
    return { name: t.name, role: t.role };
  }

  private issueTicket(caller: Caller): StreamTicketAnswer {
    const now = Date.now();
    if (this.tickets.size >= MAX_TICKETS) {
      for (const [k, t] of this.tickets) if (t.exp < now) this.tickets.delete(k);
      if (this.tickets.size >= MAX_TICKETS)
        throw new HttpError(503, "Unavailable", "too many stream tickets outstanding; try again later", {
          "Retry-After": "10",
        });
    }
    const ticket = randomBytes(32).toString("base64url");
    const exp = now + TICKET_TTL_MS;
    this.tickets.set(digest(ticket), { name: caller.name, role: caller.role, exp });
    return { ticket, expiresAt: new Date(exp).toISOString() };
  }

  // --- API routes -------------------------------------------------------------------------------

  /** Serves the dashboard's `/api/v1` routes; false when `parts` is not one of them. */
  async handleApi(
    caller: Caller,
    req: IncomingMessage,
    res: ServerResponse,
    parts: string[],
    query: URLSearchParams,
  ): Promise<boolean> {
    const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
    const json = (v: unknown, status = 200) => sendJson(res, status, this.ctx.scrub()(v));
    if (parts.length === 1 && parts[0] === "whoami") {
      if (method !== "GET") throw methodNotAllowed(["GET"]);
      json({ name: caller.name, role: caller.role } satisfies WhoAmIAnswer);
      return true;
    }
    if (parts.length === 1 && parts[0] === "stream-ticket") {
      if (method !== "POST") throw methodNotAllowed(["POST"]);
      json(this.issueTicket(caller), 201);
      return true;
    }
    if (parts.length === 1 && parts[0] === "matrix") {
      if (method !== "GET") throw methodNotAllowed(["GET"]);
      json(this.matrix(query));
      return true;
    }
    // GET only: other methods on this path belong to the environment actions.
    if (parts.length === 2 && parts[0] === "environments" && method === "GET") {
      json(await this.detail(segment(parts[1]!)));
      return true;
    }
    return false;
  }

  // --- the matrix -------------------------------------------------------------------------------

  matrix(query: URLSearchParams): MatrixAnswer {
    const offset = intParam(query, "offset", { min: 0, max: 10_000_000 }) ?? 0;
    const limit = intParam(query, "limit", { min: 0, max: 500 }) ?? 100;
    const status = query.get("status") || undefined;
    if (status !== undefined && !(STATUS_FILTERS as readonly string[]).includes(status))
      throw new HttpError(
        400,
        "BadRequest",
        `query parameter status=${JSON.stringify(status.slice(0, 40))}: expected one of ${STATUS_FILTERS.join(", ")}`,
      );
    const kind = query.get("kind") || undefined;
    if (kind !== undefined && kind !== "long-lived" && kind !== "preview")
      throw new HttpError(
        400,
        "BadRequest",
        `query parameter kind=${JSON.stringify(kind.slice(0, 40))}: expected long-lived or preview`,
      );
    const q = (query.get("q") ?? "").slice(0, 200).toLowerCase();
    const terms = q.split(/\s+/).filter((t) => t !== "");
    const m = this.currentModel();
    const page: MatrixRow[] = [];
    let total = 0;
    for (const r of m.rows) {
      if (kind && r.out.env.kind !== kind) continue;
      if (status && !r.tags.has(status as StatusFilter)) continue;
      if (terms.length && !terms.every((t) => r.text.includes(t))) continue;
      if (total >= offset && page.length < limit) page.push(r.out);
      total++;
    }
    return { total, offset, limit, units: m.units, counts: m.counts, rows: page };
  }

  private currentModel(): Model {
    const now = Date.now();
    if (this.model && !this.dirty && now - this.model.at < MODEL_MAX_AGE_MS) return this.model;
    this.dirty = false;
    this.model = this.buildModel(now);
    return this.model;
  }

  private buildModel(now: number): Model {
    const envs = this.ctx.store.listEnvironments().filter((e) => e.state !== "destroyed");
    const byEnv = new Map<string, UnitStatus[]>();
    const seen = new Set<string>();
    for (const s of this.ctx.store.listUnitStatus()) {
      const l = byEnv.get(s.env);
      if (l) l.push(s);
      else byEnv.set(s.env, [s]);
      seen.add(s.unit);
    }
    const configured = byKind(this.ctx.agent.configuration, "Kustomization").map((k) => k.metadata.name);
    const units = [
      ...configured.filter((u) => seen.has(u)),
      ...[...seen].filter((u) => !configured.includes(u)).sort(),
    ];
    const counts: MatrixCounts = {
      environments: envs.length,
      previews: 0,
      cells: 0,
      health: Object.fromEntries(HEALTHS.map((h) => [h, 0])) as Record<Health, number>,
      sync: Object.fromEntries(SYNCS.map((s) => [s, 0])) as Record<Sync, number>,
      suspended: 0,
    };
    const rows: Row[] = [];
    let lookups = 0;
    for (const e of envs) {
      const cells: Record<string, MatrixCell> = {};
      const tags = new Set<StatusFilter>();
      const text = [e.name, e.branch ?? "", e.rule ?? "", e.revision ?? ""];
      for (const s of byEnv.get(e.name) ?? []) {
        const eff = effectiveStatus(s, () =>
          lookups++ < MAX_RETRY_LOOKUPS ? lastFinished(this.ctx.store, s.env, s.unit) : undefined,
        );
        const health = eff.health;
        const sync = cellSync(s);
        cells[s.unit] = {
          health,
          sync,
          ready: s.ready,
          reason: eff.reason,
          message: oneLine(eff.message),
          retrying: eff.retrying,
          revision: s.revision,
          lastAppliedRevision: s.lastAppliedRevision,
          suspended: s.suspended,
          updatedAt: s.updatedAt,
        };
        tags.add(health);
        if (sync === "OutOfSync" || sync === "Drifted") tags.add(sync);
        if (s.suspended) tags.add("Suspended");
        counts.cells++;
        counts.health[health]++;
        counts.sync[sync]++;
        if (s.suspended) counts.suspended++;
        if (s.revision) text.push(s.revision);
      }
      const kind = kindOf(e);
      if (kind === "preview") counts.previews++;
      const health = worst(Object.values(cells).map((c) => c.health));
      if (!tags.size) tags.add("Unknown");
      rows.push({
        out: {
          env: {
            name: e.name,
            branch: e.branch,
            rule: e.rule,
            target: e.target,
            protected: e.protected,
            createdAt: e.createdAt,
            expiresAt: e.expiresAt,
            state: e.state,
            kind,
            health,
          },
          cells,
        },
        text: text.join("\n").toLowerCase(),
        tags,
      });
    }
    // Long-lived environments first (production, staging, …), then previews; each by name.
    rows.sort((a, b) =>
      a.out.env.kind !== b.out.env.kind
        ? a.out.env.kind === "long-lived"
          ? -1
          : 1
        : a.out.env.name < b.out.env.name
          ? -1
          : a.out.env.name > b.out.env.name
            ? 1
            : 0,
    );
    return { at: now, units, rows, counts };
  }

  // --- one environment --------------------------------------------------------------------------

  async detail(name: string): Promise<EnvironmentDetail> {
    const rec = this.ctx.store.getEnvironment(name);
    if (!rec || rec.state === "destroyed")
      throw new SluiceError("NotFound", `environment ${name} does not exist`);
    const statuses = new Map(this.ctx.store.listUnitStatus(name).map((s) => [s.unit, s]));
    const inventories = new Map(this.ctx.store.listInventories(name).map((i) => [i.unit, i]));
    const kusts = byKind(this.ctx.agent.configuration, "Kustomization");
    const deps = new Map(kusts.map((k) => [k.metadata.name, (k.spec.dependsOn ?? []).map((d) => d.name)]));
    const order = kusts.map((k) => k.metadata.name);
    const names = [...new Set([...statuses.keys(), ...inventories.keys()])].sort((a, b) => {
      const ia = order.indexOf(a);
      const ib = order.indexOf(b);
      return ia !== ib ? (ia < 0 ? 1 : ib < 0 ? -1 : ia - ib) : a < b ? -1 : a > b ? 1 : 0;
    });
    const runs = this.ctx.store.listRuns({ env: name, limit: 40 });
    const units = await Promise.all(
      names.map(async (unit): Promise<DetailUnit> => {
        const raw = statuses.get(unit) ?? null;
        const unitRuns = this.ctx.store.listRuns({ env: name, unit, limit: 10 });
        const eff = raw ? effectiveStatus(raw, () => unitRuns.find((r) => r.result !== "running")) : null;
        const status = raw && eff ? { ...raw, reason: eff.reason, message: eff.message } : null;
        const lastRun = unitRuns[0] ?? null;
        const inv = this.ctx.store.getInventory(name, unit);
        const { objects, from } = await this.objects(rec, unit, inv?.refs ?? [], status, unitRuns);
        const smokeRun = unitRuns.find((r) => r.stages.some((s) => s.name === "checks"));
        const smokeStage = smokeRun?.stages.find((s) => s.name === "checks");
        let urls: { name: string; url: string }[] = [];
        try {
          // Only web addresses: the page renders them as links.
          urls = (this.opts.urls?.(rec, unit) ?? []).filter((u) => /^https?:\/\//i.test(u.url));
        } catch (e) {
          this.ctx.log.debug({ env: name, unit, err: errorMessage(e) }, "dashboard: urls failed");
        }
        return {
          name: unit,
          dependsOn: deps.get(unit) ?? [],
          status,
          health: eff ? eff.health : "Unknown",
          retrying: eff?.retrying ?? false,
          sync: status ? cellSync(status) : "Unknown",
          objects,
          objectHealthFrom: from,
          inventoryRevision: inv?.revision ?? null,
          lastRun,
          lastChange: this.changes.get(`${name}/${unit}`) ?? null,
          smoke:
            smokeRun && smokeStage
              ? {
                  runId: smokeRun.id,
                  revision: smokeRun.revision,
                  at: smokeRun.endedAt ?? smokeRun.startedAt,
                  result: smokeStage.result,
                  ms: smokeStage.ms,
                  message: smokeStage.message ?? null,
                }
              : null,
          urls,
        };
      }),
    );
    const kind = kindOf(rec);
    return {
      environment: {
        name: rec.name,
        branch: rec.branch,
        rule: rec.rule,
        target: rec.target,
        protected: rec.protected,
        createdAt: rec.createdAt,
        expiresAt: rec.expiresAt,
        state: rec.state,
        kind,
        health: worst(units.filter((u) => u.status).map((u) => u.health)),
        ttlSeconds: rec.ttlSeconds,
        revision: rec.revision,
      },
      units,
      runs,
    };
  }

  private async objects(
    env: EnvironmentRecord,
    unit: string,
    refs: ObjectRef[],
    status: UnitStatus | null,
    runs: RunRecord[],
  ): Promise<{ objects: DetailObject[]; from: DetailUnit["objectHealthFrom"] }> {
    const base = refs.map(
      (r): DetailObject => ({
        subject: subject(r),
        kind: r.kind,
        namespace: r.namespace ?? null,
        name: r.name,
        health: null,
        message: "",
      }),
    );
    if (!base.length) return { objects: base, from: "none" };
    if (this.opts.objectHealth) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const report = await Promise.race([
          this.opts.objectHealth(env, unit, refs),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error("timed out after 3 s")), 3_000);
          }),
        ]);
        const by = new Map(report.objects.map((o) => [o.subject, o]));
        for (const o of base) {
          const h = by.get(o.subject);
          if (h) {
            o.health = h.status;
            o.message = oneLine(h.message);
          }
        }
        return { objects: base, from: "target" };
      } catch (e) {
        this.ctx.log.debug({ env: env.name, unit, err: errorMessage(e) }, "dashboard: object health failed");
      } finally {
        clearTimeout(timer);
      }
    }
    // Without the target: the last run's health stage names the objects that were not healthy
    // ("subject: message; …"); everything else follows the unit's Ready condition.
    const last = runs.find((r) => r.result !== "running");
    const healthStage = last?.stages.find((s) => s.name === "health" && s.result === "failed");
    if (healthStage?.message) {
      const bad = new Map<string, string>();
      for (const part of healthStage.message.split("; ")) {
        const i = part.indexOf(": ");
        if (i > 0) bad.set(part.slice(0, i), part.slice(i + 2));
      }
      for (const o of base) {
        const msg = bad.get(o.subject);
        o.health = msg !== undefined ? "Degraded" : "Healthy";
        o.message = msg !== undefined ? oneLine(msg) : "";
      }
      return { objects: base, from: "last-run" };
    }
    if (status?.ready === "True") {
      for (const o of base) o.health = "Healthy";
      return { objects: base, from: "status" };
    }
    return { objects: base, from: "none" };
  }

  // --- static files -----------------------------------------------------------------------------

  /**
   * Serves the front end: its files, and `index.html` for the pages' paths (the app routes in the
   * browser). Returns false for any other path.
   */
  serveStatic(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (this.opts.assets === false) return false;
    const page = isPagePath(path);
    this.assets ??= loadAssets(this.opts.assets ?? defaultAssetsDir(), this.ctx.log);
    const file = page ? this.assets.files.get("/index.html") : this.assets.files.get(path);
    if (!file && !page) return false;
    pageHeaders(res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      res.statusCode = 405;
      res.setHeader("Content-Type", "text/plain; charset=utf-8");
      res.end("method not allowed\n");
      return true;
    }
    if (!file) {
      res.statusCode = 503;
      res.setHeader("Content-Type", "text/plain; charset=utf-8");
      res.setHeader("Cache-Control", "no-store");
      res.end("The dashboard is not built: run `npm run build` (it builds web/ into dist/web).\n");
      return true;
    }
    res.setHeader("Content-Type", file.type);
    res.setHeader("ETag", file.etag);
    res.setHeader("Vary", "Accept-Encoding");
    res.setHeader(
      "Cache-Control",
      path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
    );
    if (req.headers["if-none-match"] === file.etag) {
      res.statusCode = 304;
      res.end();
      return true;
    }
    const gz = file.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    const body = gz ? file.gzip! : file.body;
    if (gz) res.setHeader("Content-Encoding", "gzip");
    res.statusCode = 200;
    res.setHeader("Content-Length", body.length);
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  }
}

/** The pages of the app (each answered with index.html). */
function isPagePath(path: string): boolean {
  return (
    path === "/" ||
    path === "/index.html" ||
    path === "/login" ||
    path === "/events" ||
    path === "/images" ||
    /^\/environments\/[^/]+\/?$/.test(path)
  );
}

/** The dashboard's policy: its own scripts, styles and images only; no inline code, no framing. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

function pageHeaders(res: ServerResponse): void {
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Content-Security-Policy", DASHBOARD_CSP);
  res.setHeader("Referrer-Policy", "no-referrer");
  res.setHeader("X-Frame-Options", "DENY");
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.setHeader("Permissions-Policy", "camera=(), microphone=(), geolocation=()");
}

interface Asset {
  body: Buffer;
  gzip?: Buffer;
  type: string;
  etag: string;
}
interface Assets {
  files: Map<string, Asset>;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".webmanifest": "application/manifest+json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** `dist/web` of the package this file belongs to (from `src/server` or from `dist/server`). */
export function defaultAssetsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json"))) return join(dir, "dist", "web");
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), "..", "web");
}

/** Reads the built files once (a few hundred KiB), with their gzip forms. */
function loadAssets(root: string, log: Logger): Assets {
  const files = new Map<string, Asset>();
  if (!existsSync(join(root, "index.html"))) {
    log.warn({ dir: root }, "the dashboard is not built (no index.html); serving the API only");
    return { files };
  }
  const walk = (dir: string, depth: number) => {
    if (depth > 4) return;
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, ent.name);
      if (ent.isDirectory()) walk(p, depth + 1);
      else if (ent.isFile() && statSync(p).size <= 8 * 1024 * 1024) {
        const type = TYPES[extname(ent.name).toLowerCase()];
        if (!type) continue;
        const body = readFileSync(p);
        const asset: Asset = {
          body,
          type,
          etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
        };
        if (body.length > 1024 && /text|json|svg|manifest/.test(type))
          asset.gzip = gzipSync(body, { level: 9 });
        files.set(`/${relative(root, p).split(sep).join("/")}`, asset);
      }
    }
  };
  walk(root, 0);
  return { files };
}

function digest(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function segment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, "BadRequest", "malformed percent-encoding in the path");
  }
}
