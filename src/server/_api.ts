/**
 * The `/api/v1` routes. Every route needs a bearer token; the role is checked per route (reads
 * for viewers and operators, actions for operators only) before anything else is looked at, so a
 * viewer learns nothing from an action route but "forbidden".
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { parseDuration, SluiceError } from "../core/index.js";
import type { Agent } from "../reconcile/index.js";
import type { Store, TokenRole } from "../store/index.js";
import type { Dashboard } from "./_dashboard.js";
import { HttpError, intParam, methodNotAllowed, parseJsonObject, readBody, sendJson } from "./_http.js";
import type { Scrubber } from "./_scrub.js";
import type { EventStream } from "./_stream.js";
import type { ApiAgent } from "./_types.js";

export interface ApiContext {
  agent: ApiAgent;
  store: Store;
  log: Logger;
  stream: EventStream;
  scrub: () => Scrubber;
  /** The dashboard's routes (`_dashboard.ts`): stream tickets, matrix, environment detail. */
  dashboard?: Dashboard;
}

interface Caller {
  name: string;
  role: TokenRole;
}

const BEARER = /^Bearer[ \t]+([A-Za-z0-9._~+/=-]{1,512})[ \t]*$/i;

/** The caller of a request, or a 401 (which also tells the client how to authenticate). */
export function authenticate(req: IncomingMessage, store: Store): Caller {
  const h = req.headers.authorization;
  const m = h ? BEARER.exec(h) : null;
  const who = m ? store.verifyToken(m[1]!) : undefined;
  if (!who) {
    throw new HttpError(
      401,
      "Unauthorized",
      h ? "the bearer token is not valid" : "a bearer token is required (Authorization: Bearer <token>)",
      { "WWW-Authenticate": h ? 'Bearer error="invalid_token"' : 'Bearer realm="sluice"' },
    );
  }
  return who;
}

function requireOperator(caller: Caller, what: string): void {
  if (caller.role !== "operator")
    throw new SluiceError("Forbidden", `${what} needs an operator token; token ${caller.name} is a viewer`);
}

function segment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, "BadRequest", "malformed percent-encoding in the path");
  }
}

const LIMIT = { min: 1, max: 10_000 };

type Lifecycle = Required<
  Pick<ApiAgent, "createEnvironment" | "requestDestroy" | "extendEnvironment" | "gc">
>;

function lifecycleOf(agent: ApiAgent): Lifecycle {
  const a = agent as Partial<Lifecycle>;
  if (!a.createEnvironment || !a.requestDestroy || !a.extendEnvironment || !a.gc)
    throw new HttpError(501, "NotImplemented", "this agent does not manage environment lifecycles");
  return a as Lifecycle;
}

/** Serves one `/api/v1/...` request. `path` is the URL path without the `/api/v1` prefix. */
export async function handleApi(
  ctx: ApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const caller = ctx.dashboard?.ticketCaller(req, path, query) ?? authenticate(req, ctx.store);
  const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
  const parts = path.split("/").filter((p) => p !== "");
  const get = () => {
    if (method !== "GET") throw methodNotAllowed(["GET"]);
  };
  const json = (v: unknown, status = 200) => sendJson(res, status, ctx.scrub()(v));
  // The dashboard's read routes (whoami, stream-ticket, matrix, GET environments/:env); see _dashboard.ts.
  if (ctx.dashboard && (await ctx.dashboard.handleApi(caller, req, res, parts, query))) return;

  if (parts.length === 1) {
    switch (parts[0]) {
      case "environments":
        if (method === "POST") break; // create: below
        get();
        return json({ environments: ctx.agent.listEnvironments() });
      case "units":
        get();
        return json({ units: ctx.agent.listUnits(query.get("env") || undefined) });
      case "sources":
        get();
        return json({ sources: ctx.agent.listSources() });
      case "runs": {
        get();
        const limit = intParam(query, "limit", LIMIT);
        const filter: Parameters<Store["listRuns"]>[0] = {};
        if (query.get("env")) filter.env = query.get("env")!;
        if (query.get("unit")) filter.unit = query.get("unit")!;
        if (limit !== undefined) filter.limit = limit;
        return json({ runs: ctx.store.listRuns(filter) });
      }
      case "events": {
        get();
        const limit = intParam(query, "limit", LIMIT);
        const sinceId = intParam(query, "sinceId", { min: 0, max: Number.MAX_SAFE_INTEGER });
        const filter: Parameters<Store["listEvents"]>[0] = {};
        if (query.get("env")) filter.env = query.get("env")!;
        if (query.get("unit")) filter.unit = query.get("unit")!;
        if (limit !== undefined) filter.limit = limit;
        if (sinceId !== undefined) filter.sinceId = sinceId;
        return json({ events: ctx.store.listEvents(filter) });
      }
      case "stream":
        get();
        if (ctx.stream.full)
          throw new HttpError(503, "Unavailable", "too many event streams are open; try again later", {
            "Retry-After": "10",
          });
        ctx.stream.attach(res);
        return;
    }
  }

  // Environment lifecycle (operators): create from a branch, destroy, extend, sweep orphans.
  if (parts[0] === "environments" && (parts.length === 1 || parts.length === 2 || parts.length === 3)) {
    const lifecycle = lifecycleOf(ctx.agent);
    if (parts.length === 1 && method === "POST") {
      requireOperator(caller, "creating an environment");
      const body = parseJsonObject(await readBody(req, res));
      if (typeof body.branch !== "string" || body.branch === "")
        throw new HttpError(400, "BadRequest", "branch (a non-empty string) is required");
      const name = await lifecycle.createEnvironment(body.branch, caller.name);
      return json({ created: { name, branch: body.branch } }, 201);
    }
    if (parts.length === 2) {
      if (method !== "DELETE") throw methodNotAllowed(["DELETE"]);
      requireOperator(caller, "destroying an environment");
      const env = segment(parts[1]!);
      lifecycle.requestDestroy(env, caller.name);
      return json({ destroying: { name: env } }, 202);
    }
    if (parts.length === 3 && parts[2] === "extend") {
      if (method !== "POST") throw methodNotAllowed(["POST"]);
      requireOperator(caller, "extending an environment");
      const env = segment(parts[1]!);
      const body = parseJsonObject(await readBody(req, res));
      const ms = typeof body.duration === "string" ? parseDuration(body.duration) : undefined;
      if (!ms || ms <= 0)
        throw new HttpError(400, "BadRequest", "duration must be a positive duration such as 4h or 30m");
      const expiresAt = lifecycle.extendEnvironment(env, ms, caller.name);
      return json({ extended: { name: env, expiresAt } });
    }
  }
  if (parts[0] === "images" && parts.length <= 2) {
    const a = ctx.agent as ApiAgent & Partial<Pick<Agent, "imageStatus" | "scanImages">>;
    if (parts.length === 1) {
      get();
      return json(a.imageStatus?.() ?? { repositories: [], policies: [], automations: [] });
    }
    if (parts[1] === "scan") {
      if (method !== "POST") throw methodNotAllowed(["POST"]);
      requireOperator(caller, "scanning images");
      const body = parseJsonObject(await readBody(req, res));
      if (body.name !== undefined && typeof body.name !== "string")
        throw new HttpError(400, "BadRequest", "name must be a string");
      if (!a.scanImages) throw new HttpError(501, "NotImplemented", "this agent does not scan images");
      const scanned = await a.scanImages(body.name as string | undefined);
      ctx.log.info({ scanned, by: caller.name }, "image scan requested");
      return json({ scanned, ...(a.imageStatus?.() ?? {}) });
    }
  }
  // Delivery: promote, rollback, rollout commands, rollouts and builds.
  const delivery = ctx.agent as ApiAgent &
    Partial<
      Pick<
        Agent,
        "promote" | "rollback" | "rolloutCommand" | "rolloutStatus" | "listBuilds" | "buildLog" | "buildNow"
      >
    >;
  const need = <T>(f: T | undefined, what: string): T => {
    if (!f) throw new HttpError(501, "NotImplemented", `this agent does not support ${what}`);
    return f;
  };
  const reasonOf = (body: Record<string, unknown>) => {
    if (body.reason !== undefined && typeof body.reason !== "string")
      throw new HttpError(400, "BadRequest", "reason must be a string");
    return (body.reason as string | undefined)?.slice(0, 500);
  };
  if (
    parts[0] === "environments" &&
    parts.length === 3 &&
    (parts[2] === "promote" || parts[2] === "rollback")
  ) {
    if (method !== "POST") throw methodNotAllowed(["POST"]);
    requireOperator(caller, parts[2]);
    const env = segment(parts[1]!);
    const body = parseJsonObject(await readBody(req, res));
    const reason = reasonOf(body);
    if (parts[2] === "promote") {
      if (typeof body.to !== "string" || !body.to)
        throw new HttpError(400, "BadRequest", "to (the environment to promote into) is required");
      const r = await need(delivery.promote, "promotion").call(ctx.agent, env, body.to, caller.name, reason);
      return json({ promoted: { from: env, to: body.to, ...r } });
    }
    const r = await need(delivery.rollback, "rollback").call(ctx.agent, env, caller.name, reason);
    return json({ rolledBack: { env, ...r } });
  }
  if (parts[0] === "environments" && parts.length === 3 && parts[2] === "rollouts") {
    get();
    return json({ rollouts: need(delivery.rolloutStatus, "rollouts").call(ctx.agent, segment(parts[1]!)) });
  }
  if (parts[0] === "environments" && parts.length === 6 && parts[2] === "units" && parts[4] === "rollout") {
    const command = parts[5];
    if (command !== "promote" && command !== "abort" && command !== "resume")
      throw new HttpError(404, "NotFound", "rollout commands are promote, abort and resume");
    if (method !== "POST") throw methodNotAllowed(["POST"]);
    requireOperator(caller, `rollout ${command}`);
    const body = parseJsonObject(await readBody(req, res));
    if (body.name !== undefined && typeof body.name !== "string")
      throw new HttpError(400, "BadRequest", "name must be a string");
    const rollouts = await need(delivery.rolloutCommand, "rollouts").call(
      ctx.agent,
      segment(parts[1]!),
      segment(parts[3]!),
      command,
      caller.name,
      body.name as string | undefined,
    );
    return json({ rollouts });
  }
  if (parts.length === 1 && parts[0] === "checks") {
    get();
    const a = ctx.agent as ApiAgent & Partial<Pick<Agent, "listChecks">>;
    return json({ checks: a.listChecks?.(query.get("env") || undefined) ?? [] });
  }
  if (parts[0] === "builds") {
    if (parts.length === 1) {
      get();
      return json({ builds: need(delivery.listBuilds, "builds").call(ctx.agent) });
    }
    const name = segment(parts[1]!);
    if (parts.length === 3 && parts[2] === "log") {
      get();
      const commit = query.get("commit") ?? "";
      if (!/^[0-9a-f]{40}$/.test(commit))
        throw new HttpError(400, "BadRequest", "commit (40 hex digits) is required");
      const log = need(delivery.buildLog, "builds").call(ctx.agent, name, commit);
      if (log === undefined)
        throw new SluiceError("NotFound", `no log of Build ${name} at ${commit.slice(0, 10)}`);
      return json({ build: name, commit, log });
    }
    if (parts.length === 2) {
      if (method !== "POST") throw methodNotAllowed(["POST"]);
      requireOperator(caller, "starting a build");
      const body = parseJsonObject(await readBody(req, res));
      const ref =
        typeof body.tag === "string" && body.tag
          ? { tag: body.tag }
          : typeof body.branch === "string" && body.branch
            ? { branch: body.branch }
            : undefined;
      if (!ref) throw new HttpError(400, "BadRequest", "branch or tag is required");
      const r = await need(delivery.buildNow, "builds").call(ctx.agent, name, ref);
      return json({ build: r });
    }
  }
  if (parts.length === 1 && parts[0] === "gc") {
    if (method !== "POST") throw methodNotAllowed(["POST"]);
    requireOperator(caller, "garbage collection");
    const body = parseJsonObject(await readBody(req, res));
    if (body.dryRun !== undefined && typeof body.dryRun !== "boolean")
      throw new HttpError(400, "BadRequest", "dryRun must be true or false");
    const orphans = await lifecycleOf(ctx.agent).gc({ dryRun: body.dryRun === true, who: caller.name });
    return json({ dryRun: body.dryRun === true, orphans });
  }

  // /environments/:env/units/:unit/(reconcile|suspend|resume)
  if (parts.length === 5 && parts[0] === "environments" && parts[2] === "units") {
    const action = parts[4];
    if (action === "reconcile" || action === "suspend" || action === "resume") {
      if (method !== "POST") throw methodNotAllowed(["POST"]);
      requireOperator(caller, action);
      const env = segment(parts[1]!);
      const unit = segment(parts[3]!);
      const body = parseJsonObject(await readBody(req, res));
      if (action === "reconcile") {
        const ws = body.withSource;
        if (ws !== undefined && typeof ws !== "boolean")
          throw new HttpError(400, "BadRequest", "withSource must be true or false");
        const withSource = ws === true;
        await ctx.agent.requestReconcile(env, unit, { withSource, who: caller.name });
        ctx.log.info({ env, unit, withSource, by: caller.name }, "reconcile requested");
        return json({ queued: { env, unit, withSource } }, 202);
      }
      const suspended = action === "suspend";
      ctx.agent.setSuspended(env, unit, suspended, caller.name);
      ctx.log.info({ env, unit, by: caller.name }, suspended ? "unit suspended" : "unit resumed");
      return json({ env, unit, suspended });
    }
  }
  throw new HttpError(404, "NotFound", `no API route ${req.method} /api/v1/${parts.join("/").slice(0, 200)}`);
}
