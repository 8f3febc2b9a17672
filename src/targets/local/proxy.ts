/**
 * The local service proxy: one listener on 127.0.0.1 per Service port, forwarding to ready
 * backends (pods' published ports). Backends carry a weight; the pick is smooth weighted round
 * robin (nginx's), so equal weights are plain round robin and canary weights need nothing else.
 *
 * Two modes:
 * - `tcp` (the default): each connection goes to one backend, picked when it opens.
 * - `http`: the proxy parses HTTP/1.1 (node's own parser) and routes each *request*: requests on a
 *   kept-alive client connection may go to different backends, so a switch of weights reaches every
 *   client at its next request. Routes (in order, first match wins) select requests by header or
 *   cookie values — that is how A/B tests route; a route without matches takes every request.
 *   Upgrades (WebSocket) are tunnelled to one backend for their lifetime.
 *
 * A backend that refuses a connection is skipped for a moment and the connection (or request) tries
 * the next one — in http mode only when the request can be replayed (no body, or a body of at most
 * 1 MiB with a Content-Length, which is buffered). With no backend at all, a connection or request
 * waits briefly for one (a rollout or a restart) before it is closed (http: answered 503). Active
 * connections and requests are counted per pod, so a rollout can drain them before stopping a pod.
 */
import http from "node:http";
import net from "node:net";

export interface Backend {
  /** The pod's podman ID: unique, never reused. */
  podId: string;
  podName: string;
  host: string;
  port: number;
  /** Relative share of new connections or requests (default 1); 0 takes none. */
  weight: number;
}

/** Every listed header and cookie must be present with exactly this value (header names ignore case). */
export interface RequestMatch {
  headers?: { name: string; value: string }[];
  cookies?: { name: string; value: string }[];
}

export interface Route {
  /** A request matching any of these takes this route; absent or empty: every request. */
  matches?: RequestMatch[];
  backends: Backend[];
}

export type ProxyMode = "tcp" | "http";

const CONNECT_TIMEOUT_MS = 3000;
const NO_BACKEND_WAIT_MS = 5000;
const SUSPECT_MS = 1000;
const MAX_REPLAY_BODY = 1024 * 1024;
/** Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded. */
const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

interface Pool {
  matches: RequestMatch[];
  backends: Backend[];
  /** Smooth weighted round robin state, by backend key. */
  current: Map<string, number>;
}

export class ServiceProxy {
  readonly label: string;
  private server: net.Server | undefined;
  private readonly http: http.Server;
  private readonly agent = new http.Agent({ keepAlive: true, maxFreeSockets: 32 });
  private mode: ProxyMode = "tcp";
  private pools: Pool[] = [];
  private readonly suspect = new Map<string, number>();
  private readonly active = new Map<string, number>();
  private readonly sockets = new Set<net.Socket>();
  private waiters: (() => void)[] = [];
  private readonly log: (msg: string) => void;
  port = 0;

  constructor(label: string, log: (msg: string) => void) {
    this.label = label;
    this.log = log;
    this.http = http.createServer((req, res) => this.onRequest(req, res));
    this.http.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    this.http.on("clientError", (_e, socket: net.Socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      socket.destroy();
    });
  }

  /** Listens on the first free port of `preferred`, else (with `anyElse`) on any free port; returns the port. */
  async listen(preferred: number[], anyElse = true): Promise<number> {
    const candidates = [...preferred.filter((p) => p > 0 && p < 65536), ...(anyElse ? [0] : [])];
    let lastErr: unknown = new Error("no port to listen on");
    for (const p of candidates) {
      try {
        const server = net.createServer({ allowHalfOpen: true }, (s) => this.onConnection(s));
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen({ host: "127.0.0.1", port: p, exclusive: true }, () => {
            server.off("error", reject);
            resolve();
          });
        });
        server.on("error", (e) => this.log(`service proxy ${this.label}: ${e.message}`));
        this.server = server;
        this.port = (server.address() as net.AddressInfo).port;
        return this.port;
      } catch (e) {
        lastErr = e;
      }
    }
    throw lastErr;
  }

  /** One pool of backends for every connection, in tcp mode. */
  setBackends(list: Backend[]): void {
    this.setRoutes("tcp", [{ backends: list }]);
  }

  /**
   * The routing table. In tcp mode only the first route without matches is used (else the first
   * route). New connections and requests follow it at once; open tcp connections stay where they are.
   */
  setRoutes(mode: ProxyMode, routes: Route[]): void {
    this.mode = mode;
    const old = this.pools;
    this.pools = routes.map((r, i) => {
      const backends = r.backends.filter((b) => b.weight > 0);
      const prev = old[i]?.current ?? new Map<string, number>();
      const keys = new Set(backends.map((b) => key(b)));
      const current = new Map([...prev].filter(([k]) => keys.has(k)));
      return { matches: r.matches ?? [], backends, current };
    });
    const keys = new Set(this.pools.flatMap((p) => p.backends.map((b) => key(b))));
    for (const k of [...this.suspect.keys()]) if (!keys.has(k)) this.suspect.delete(k);
    if (keys.size) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  getMode(): ProxyMode {
    return this.mode;
  }

  /** Every backend that can take traffic on some route (each once). */
  getBackends(): readonly Backend[] {
    const out = new Map<string, Backend>();
    for (const p of this.pools) for (const b of p.backends) if (!out.has(key(b))) out.set(key(b), b);
    return [...out.values()];
  }

  /** Open proxied connections (tcp) or requests in flight and tunnels (http) to pod `podId`. */
  activeFor(podId: string): number {
    return this.active.get(podId) ?? 0;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    for (const f of this.waiters) f();
    this.waiters = [];
    this.agent.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- picking

  private tcpPool(): Pool | undefined {
    return this.pools.find((p) => p.matches.length === 0) ?? this.pools[0];
  }

  private poolFor(req: http.IncomingMessage): Pool | undefined {
    return this.pools.find((p) => p.matches.length === 0 || p.matches.some((m) => matches(m, req)));
  }

  /** Smooth weighted round robin over backends not tried and not suspect (suspect ones as a last resort). */
  private pick(pool: Pool | undefined, tried: Set<string>): Backend | undefined {
    if (!pool) return undefined;
    const now = Date.now();
    let cands = pool.backends.filter((b) => !tried.has(key(b)) && (this.suspect.get(key(b)) ?? 0) < now);
    if (cands.length === 0) cands = pool.backends.filter((b) => !tried.has(key(b)));
    if (cands.length === 0) return undefined;
    let total = 0;
    let best: Backend | undefined;
    let bestCur = Number.NEGATIVE_INFINITY;
    for (const b of cands) {
      const cur = (pool.current.get(key(b)) ?? 0) + b.weight;
      pool.current.set(key(b), cur);
      total += b.weight;
      if (cur > bestCur) {
        bestCur = cur;
        best = b;
      }
    }
    if (best) pool.current.set(key(best), bestCur - total);
    return best;
  }

  /**
   * Calls `go` with a backend, waiting for one when none is left to try; `go(undefined)` once the
   * wait is over. `pool` is re-evaluated after a wait (the routes may have changed meanwhile).
   */
  private withBackend(
    poolOf: () => Pool | undefined,
    tried: Set<string>,
    deadline: number,
    alive: () => boolean,
    go: (b: Backend | undefined) => void,
  ): void {
    if (!alive()) {
      go(undefined);
      return;
    }
    const pool = poolOf();
    const b = this.pick(pool, tried);
    if (b || Date.now() >= deadline) {
      go(b);
      return;
    }
    // Nothing (left) to try: wait for new backends or a short while, then try all again.
    tried.clear();
    let fired = false;
    const wake = () => {
      if (fired) return;
      fired = true;
      clearTimeout(t);
      this.waiters = this.waiters.filter((w) => w !== wake);
      this.withBackend(poolOf, tried, deadline, alive, go);
    };
    const t = setTimeout(wake, pool?.backends.length ? 100 : Math.max(0, deadline - Date.now()));
    this.waiters.push(wake);
  }

  private count(podId: string, delta: number): void {
    this.active.set(podId, Math.max(0, (this.active.get(podId) ?? 0) + delta));
  }

  // ---------------------------------------------------------------- tcp

  private onConnection(client: net.Socket): void {
    this.sockets.add(client);
    client.on("error", () => {});
    client.once("close", () => this.sockets.delete(client));
    if (this.mode === "http") {
      this.http.emit("connection", client);
      return;
    }
    client.pause();
    const tried = new Set<string>();
    const deadline = Date.now() + NO_BACKEND_WAIT_MS;
    const alive = () => !client.destroyed && !!this.server;
    const attempt = () =>
      this.withBackend(
        () => this.tcpPool(),
        tried,
        deadline,
        alive,
        (b) => {
          if (!b || !alive()) {
            client.destroy();
            return;
          }
          tried.add(key(b));
          const up = net.connect({ host: b.host, port: b.port, allowHalfOpen: true });
          let connected = false;
          up.setTimeout(CONNECT_TIMEOUT_MS, () => {
            if (!connected) up.destroy(new Error("connect timeout"));
          });
          up.once("error", () => {
            if (!connected) {
              this.suspect.set(key(b), Date.now() + SUSPECT_MS);
              attempt();
            } else client.destroy();
          });
          up.once("connect", () => {
            connected = true;
            up.setTimeout(0);
            if (client.destroyed) {
              up.destroy();
              return;
            }
            this.pipeBoth(b, client, up);
            client.resume();
          });
        },
      );
    attempt();
  }

  private pipeBoth(b: Backend, client: net.Socket, up: net.Socket): void {
    this.sockets.add(up);
    this.count(b.podId, 1);
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.count(b.podId, -1);
      this.sockets.delete(up);
    };
    up.once("close", (hadError) => {
      release();
      if (hadError) client.destroy();
      else client.end();
    });
    client.once("close", (hadError) => {
      release();
      if (hadError) up.destroy();
      else up.end();
    });
    client.pipe(up);
    up.pipe(client);
  }

  // ---------------------------------------------------------------- http

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.on("error", () => {});
    res.on("error", () => {});
    const len = req.headers["content-length"];
    const chunked = req.headers["transfer-encoding"] !== undefined;
    const replayable = !chunked && (len === undefined || Number(len) <= MAX_REPLAY_BODY);
    if (!replayable) {
      this.forward(req, res, undefined);
      return;
    }
    if (len === undefined || Number(len) === 0) {
      this.forward(req, res, Buffer.alloc(0));
      return;
    }
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => this.forward(req, res, Buffer.concat(parts)));
  }

  /** Sends the request to a backend; `body` (when buffered) lets it be retried on another backend. */
  private forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | undefined): void {
    const tried = new Set<string>();
    const deadline = Date.now() + NO_BACKEND_WAIT_MS;
    const alive = () => !res.destroyed && !!this.server;
    const headers = forwardHeaders(req.rawHeaders);
    const attempt = () =>
      this.withBackend(
        () => this.poolFor(req),
        tried,
        deadline,
        alive,
        (b) => {
          if (!alive()) return;
          if (!b) {
            fail(res, 503, "no ready backend for this request");
            return;
          }
          tried.add(key(b));
          this.count(b.podId, 1);
          let done = false;
          const release = () => {
            if (done) return;
            done = true;
            this.count(b.podId, -1);
          };
          const up = http.request({
            host: b.host,
            port: b.port,
            method: req.method,
            path: req.url,
            headers,
            agent: this.agent,
            setHost: false,
          });
          let responded = false;
          res.once("close", () => {
            if (!responded) up.destroy();
          });
          up.setTimeout(CONNECT_TIMEOUT_MS);
          up.on("socket", (s: net.Socket) => {
            if (!s.connecting) up.setTimeout(0);
            else s.once("connect", () => up.setTimeout(0));
          });
          up.on("timeout", () => up.destroy(new Error("connect timeout")));
          up.on("response", (ur) => {
            responded = true;
            ur.on("error", () => res.destroy());
            res.on("close", () => {
              release();
              if (!ur.complete) ur.destroy();
            });
            ur.on("end", release);
            res.writeHead(ur.statusCode ?? 502, ur.statusMessage, forwardHeaders(ur.rawHeaders));
            ur.pipe(res);
          });
          up.on("error", (e: NodeJS.ErrnoException) => {
            release();
            if (responded) {
              res.destroy();
              return;
            }
            const neverConnected = e.code === "ECONNREFUSED" || e.message === "connect timeout";
            const staleKeepAlive = up.reusedSocket && (e.code === "ECONNRESET" || e.code === "EPIPE");
            if (body !== undefined && (neverConnected || staleKeepAlive)) {
              if (neverConnected) this.suspect.set(key(b), Date.now() + SUSPECT_MS);
              if (staleKeepAlive) tried.delete(key(b));
              attempt();
              return;
            }
            fail(res, 502, `backend ${b.podName}: ${e.message}`);
          });
          if (body !== undefined) up.end(body);
          else req.pipe(up);
        },
      );
    attempt();
  }

  private onUpgrade(req: http.IncomingMessage, client: net.Socket, head: Buffer): void {
    client.on("error", () => {});
    const tried = new Set<string>();
    const deadline = Date.now() + NO_BACKEND_WAIT_MS;
    const alive = () => !client.destroyed && !!this.server;
    const attempt = () =>
      this.withBackend(
        () => this.poolFor(req),
        tried,
        deadline,
        alive,
        (b) => {
          if (!b || !alive()) {
            client.destroy();
            return;
          }
          tried.add(key(b));
          const up = net.connect({ host: b.host, port: b.port });
          let connected = false;
          up.setTimeout(CONNECT_TIMEOUT_MS, () => {
            if (!connected) up.destroy(new Error("connect timeout"));
          });
          up.once("error", () => {
            if (!connected) {
              this.suspect.set(key(b), Date.now() + SUSPECT_MS);
              attempt();
            } else client.destroy();
          });
          up.once("connect", () => {
            connected = true;
            up.setTimeout(0);
            let headText = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
            for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
              headText += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
            up.write(`${headText}\r\n`);
            if (head.length) up.write(head);
            this.pipeBoth(b, client, up);
          });
        },
      );
    attempt();
  }
}

function key(b: Backend): string {
  return `${b.podId}:${b.port}`;
}

function fail(res: http.ServerResponse, status: number, why: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", connection: "close" });
  res.end(`${why}\n`);
}

/** Raw header pairs without hop-by-hop headers (and those the Connection header names). */
function forwardHeaders(raw: string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === "connection")
      for (const t of raw[i + 1]!.split(",")) named.add(t.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (HOP.has(k) || named.has(k)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function matches(m: RequestMatch, req: http.IncomingMessage): boolean {
  for (const h of m.headers ?? []) {
    const v = req.headers[h.name.toLowerCase()];
    const values = Array.isArray(v) ? v : v === undefined ? [] : [v];
    if (!values.some((x) => x === h.value)) return false;
  }
  if (m.cookies?.length) {
    const jar = parseCookies(req.headers.cookie);
    for (const c of m.cookies) if (!(jar.get(c.name) ?? []).includes(c.value)) return false;
  }
  return true;
}

/** `a=1; b=2` → name → values (RFC 6265 §5.4: names compared as-is, values may be quoted). */
export function parseCookies(header: string | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!header) return out;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    const name = part.slice(0, i).trim();
    let value = part.slice(i + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    out.set(name, [...(out.get(name) ?? []), value]);
  }
  return out;
}
