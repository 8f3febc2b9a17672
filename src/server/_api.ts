/**
 * The `/api/v1` routes. Every route needs a bearer token; the role is checked per route (reads
 * for viewers and operators, actions for operators only) before anything else is looked at, so a
 * viewer learns nothing from an action route but "forbidden".
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { SluiceError } from "../core/index.js";
import type { Store, TokenRole } from "../store/index.js";
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

/** Serves one `/api/v1/...` request. `path` is the URL path without the `/api/v1` prefix. */
export async function handleApi(
  ctx: ApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const caller = authenticate(req, ctx.store);
  const method = req.method === "HEAD" ? "GET" : (req.method ?? "GET");
  const parts = path.split("/").filter((p) => p !== "");
  const get = () => {
    if (method !== "GET") throw methodNotAllowed(["GET"]);
  };
  const json = (v: unknown, status = 200) => sendJson(res, status, ctx.scrub()(v));

  if (parts.length === 1) {
    switch (parts[0]) {
      case "environments":
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
        await ctx.agent.requestReconcile(env, unit, { withSource });
        ctx.log.info({ env, unit, withSource, by: caller.name }, "reconcile requested");
        return json({ queued: { env, unit, withSource } }, 202);
      }
      const suspended = action === "suspend";
      ctx.agent.setSuspended(env, unit, suspended);
      ctx.log.info({ env, unit, by: caller.name }, suspended ? "unit suspended" : "unit resumed");
      return json({ env, unit, suspended });
    }
  }
  throw new HttpError(404, "NotFound", `no API route ${req.method} /api/v1/${parts.join("/").slice(0, 200)}`);
}
