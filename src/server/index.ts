/**
 * The agent's HTTP face: the JSON API, the event stream, webhook receivers, metrics and probes.
 *
 * Routes (all answers carry `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`;
 * ours also a `Content-Security-Policy: default-src 'none'`):
 * - unauthenticated: `GET /healthz` (200 `ok`), `GET /readyz` (200 when the agent has started
 *   and the store answers, else 503), `GET /metrics` (Prometheus text), `POST /hook/<digest>`.
 * - viewer or operator (`Authorization: Bearer <token>`, else 401 with `WWW-Authenticate`):
 *   `GET /api/v1/environments`, `/units[?env=]`, `/sources`, `/runs[?env=&unit=&limit=]`,
 *   `/events[?env=&unit=&sinceId=&limit=]`, and `/stream` (Server-Sent Events: every
 *   {@link AgentEvent} as `event: <type>` / `data: <json>`, a heartbeat comment every 15 s).
 * - operator only (a viewer gets 403): `POST /api/v1/environments/:env/units/:unit/reconcile`
 *   (body optional `{"withSource": true}`; 202), `.../suspend`, `.../resume` (200).
 *
 * - the dashboard (`_dashboard.ts`): its pages and files outside these paths (own strict CSP), and
 *   `GET /api/v1/whoami`, `/matrix`, `/environments/:env`, `POST /api/v1/stream-ticket` (a
 *   one-time ticket that opens `/stream?ticket=…` for a browser's EventSource).
 *
 * Errors are `{"error": {"code", "message"}}`: SluiceError codes map to statuses (NotFound 404,
 * Unauthorized 401, Forbidden 403, ConfigInvalid 400, Conflict 409, any other 500); request
 * problems are 400 (bad JSON, bad query), 405 (with `Allow`), 413 (body over 1 MiB). Errors that
 * are not SluiceErrors are logged and answered with a generic 500, never echoed.
 *
 * Webhooks (`_hooks.ts`): each Flux `Receiver` in the configuration listens at
 * `/hook/<receiverPath(namespace, name, token)>`; see that file for verification, replays and
 * what a push does. Secrets: answers are built from store records and redacted source listings,
 * and every answer is additionally scrubbed of the configuration's Secret values (`_scrub.ts`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { errorMessage } from "../core/index.js";
import type { AgentEvent } from "../reconcile/index.js";
import type { Store } from "../store/index.js";
import { handleApi } from "./_api.js";
import { Dashboard, type DashboardOptions } from "./_dashboard.js";
import { Receivers } from "./_hooks.js";
import { describeError, HttpError, methodNotAllowed, securityHeaders, sendError, sendText } from "./_http.js";
import { makeScrubber, type Scrubber } from "./_scrub.js";
import { EventStream } from "./_stream.js";
import type { ApiAgent } from "./_types.js";

export type {
  DashboardOptions,
  EnvironmentDetail,
  MatrixAnswer,
  StreamTicketAnswer,
  WhoAmIAnswer,
} from "./_dashboard.js";
export { makeScrubber, type Scrubber } from "./_scrub.js";
export type { ApiAgent } from "./_types.js";

export interface ApiServerOptions {
  agent: ApiAgent;
  store: Store;
  log: Logger;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port (see `url`). */
  port?: number;
  /**
   * Routes served before the 404 (the dashboard): return true when the request was handled.
   * Called for every path outside `/api/`, `/hook/`, `/healthz`, `/readyz` and `/metrics`;
   * `X-Content-Type-Options: nosniff` is already set, everything else is up to the hook.
   */
  extraRoutes?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  /** The dashboard (`_dashboard.ts`): its static files after `extraRoutes`, and its read routes. */
  dashboard?: DashboardOptions;
  /** Readiness beyond "the store answers"; default: the agent's `started` flag when it has one. */
  ready?: () => boolean;
  /** Heartbeat period of `/api/v1/stream` (default 15 s). */
  heartbeatMs?: number;
  /** Concurrent event streams (default 100); more are answered 503. */
  maxStreams?: number;
}

export interface ApiServer {
  server: Server;
  /** `http://host:port`, with the port actually bound. */
  url: string;
  /** Ends the event streams, stops listening and closes every connection. */
  close(): Promise<void>;
  /** How many `/api/v1/stream` clients are connected. */
  streamCount(): number;
}

/** The JSON shapes of the API's answers (for clients such as the CLI). */
export interface ApiErrorBody {
  error: { code: string; message: string };
}
export type EnvironmentsAnswer = { environments: ReturnType<ApiAgent["listEnvironments"]> };
export type UnitsAnswer = { units: ReturnType<ApiAgent["listUnits"]> };
export type SourcesAnswer = { sources: ReturnType<ApiAgent["listSources"]> };
export type RunsAnswer = { runs: ReturnType<Store["listRuns"]> };
export type EventsAnswer = { events: ReturnType<Store["listEvents"]> };
export type ReconcileAnswer = { queued: { env: string; unit: string; withSource: boolean } };
export type SuspendAnswer = { env: string; unit: string; suspended: boolean };
export type HookAnswer = { refreshed: string[] } | { ping: true } | { ignored: string };

/**
 * Starts the API server and resolves once it listens.
 * @throws the listen error (e.g. EADDRINUSE) when the address cannot be bound.
 */
export async function createApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { agent, store, log } = opts;

  // The scrubber depends on the configuration's Secrets; rebuilt only when the configuration is.
  let scrubFor: { config: unknown; scrub: Scrubber } | undefined;
  const scrub = (): Scrubber => {
    const config = agent.configuration;
    if (scrubFor?.config !== config) scrubFor = { config, scrub: makeScrubber(config) };
    return scrubFor.scrub;
  };
  const stream = new EventStream({
    heartbeatMs: opts.heartbeatMs ?? 15_000,
    maxClients: opts.maxStreams ?? 100,
    scrub,
  });
  const dashboard = new Dashboard({ agent, store, log, scrub }, opts.dashboard);
  const onChange = (e: AgentEvent) => {
    stream.publish(e);
    dashboard.observe(e);
  };
  agent.on("change", onChange);
  const receivers = new Receivers({ agent, log });
  const ctx = { agent, store, log, stream, scrub, dashboard };

  const isReady = (): { ok: boolean; why: string } => {
    try {
      store.getKV("server", "readyz");
    } catch (e) {
      return { ok: false, why: `the store is not open: ${errorMessage(e)}` };
    }
    const started = opts.ready ? opts.ready() : agent.started !== false;
    return started ? { ok: true, why: "ready" } : { ok: false, why: "the agent has not started" };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader("X-Content-Type-Options", "nosniff");
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://sluice.invalid");
    } catch {
      securityHeaders(res);
      return sendError(res, new HttpError(400, "BadRequest", "malformed request URL"));
    }
    const path = url.pathname;
    const method = req.method === "HEAD" ? "GET" : req.method;
    const ours =
      path === "/healthz" ||
      path === "/readyz" ||
      path === "/metrics" ||
      path === "/api" ||
      path.startsWith("/api/") ||
      path.startsWith("/hook/");
    if (!ours && opts.extraRoutes && (await opts.extraRoutes(req, res))) return;
    if (!ours && dashboard.serveStatic(req, res, path)) return;
    securityHeaders(res);

    if (path === "/healthz") {
      if (method !== "GET") throw methodNotAllowed(["GET"]);
      return sendText(res, 200, "ok\n");
    }
    if (path === "/readyz") {
      if (method !== "GET") throw methodNotAllowed(["GET"]);
      const r = isReady();
      return sendText(res, r.ok ? 200 : 503, `${r.why}\n`);
    }
    if (path === "/metrics") {
      if (method !== "GET") throw methodNotAllowed(["GET"]);
      const reg = agent.metrics.registry;
      return sendText(res, 200, await reg.metrics(), reg.contentType);
    }
    if (path.startsWith("/hook/")) return receivers.handle(req, res, path.slice("/hook/".length));
    if (path.startsWith("/api/v1/"))
      return handleApi(ctx, req, res, path.slice("/api/v1".length), url.searchParams);
    throw new HttpError(404, "NotFound", "not found");
  };

  const server = createServer((req, res) => {
    const t0 = Date.now();
    res.once("finish", () => {
      // Webhook paths are credentials (token-derived): never logged.
      const raw = req.url ?? "";
      const path = raw.startsWith("/hook/") ? "/hook/…" : raw.split("?")[0];
      log.debug({ method: req.method, path, status: res.statusCode, ms: Date.now() - t0 }, "http");
    });
    handle(req, res).catch((e) => {
      const d = describeError(e);
      // SluiceError messages are safe to log; anything else is logged here and answered generically.
      if (d.status >= 500)
        log.error({ method: req.method, code: d.code, err: errorMessage(e) }, "API request failed");
      sendError(res, e);
    });
  });
  server.requestTimeout = 60_000;
  server.headersTimeout = 20_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      agent.off("change", onChange);
      stream.closeAll();
      server.close(() => resolve());
      server.closeIdleConnections();
      // Streams and slow clients do not get to hold the shutdown.
      setTimeout(() => server.closeAllConnections(), 2_000).unref();
    });
    return closing;
  };
  return { server, url, close, streamCount: () => stream.size };
}
