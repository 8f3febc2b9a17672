/**
 * The local service proxy: one TCP listener on 127.0.0.1 per Service port, forwarding each
 * connection to one ready backend (a pod's published port). Backends carry a weight; the pick is
 * smooth weighted round robin (nginx's), so equal weights are plain round robin and canary weights
 * later need no other change. A backend that refuses a connection is skipped for a moment and the
 * connection tries the next one; with no backend at all, a connection waits briefly for one (a
 * rollout or a restart) before it is closed. Active connections are counted per pod, so a rollout
 * can wait for them to drain before it stops an old pod.
 */
import net from "node:net";

export interface Backend {
  /** The pod's podman ID: unique, never reused. */
  podId: string;
  podName: string;
  host: string;
  port: number;
  /** Relative share of new connections (default 1). */
  weight: number;
}

const CONNECT_TIMEOUT_MS = 3000;
const NO_BACKEND_WAIT_MS = 5000;
const SUSPECT_MS = 1000;

export class ServiceProxy {
  readonly label: string;
  private server: net.Server | undefined;
  private backends: Backend[] = [];
  private readonly current = new Map<string, number>();
  private readonly suspect = new Map<string, number>();
  private readonly active = new Map<string, number>();
  private readonly sockets = new Set<net.Socket>();
  private waiters: (() => void)[] = [];
  private readonly log: (msg: string) => void;
  port = 0;

  constructor(label: string, log: (msg: string) => void) {
    this.label = label;
    this.log = log;
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

  setBackends(list: Backend[]): void {
    this.backends = list.filter((b) => b.weight > 0);
    const keys = new Set(this.backends.map((b) => key(b)));
    for (const k of [...this.current.keys()]) if (!keys.has(k)) this.current.delete(k);
    for (const k of [...this.suspect.keys()]) if (!keys.has(k)) this.suspect.delete(k);
    if (this.backends.length) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  getBackends(): readonly Backend[] {
    return this.backends;
  }

  /** Open proxied connections to pod `podId`. */
  activeFor(podId: string): number {
    return this.active.get(podId) ?? 0;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    for (const f of this.waiters) f();
    this.waiters = [];
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Smooth weighted round robin over backends not tried and not suspect (suspect ones as a last resort). */
  private pick(tried: Set<string>): Backend | undefined {
    const now = Date.now();
    let pool = this.backends.filter((b) => !tried.has(key(b)) && (this.suspect.get(key(b)) ?? 0) < now);
    if (pool.length === 0) pool = this.backends.filter((b) => !tried.has(key(b)));
    if (pool.length === 0) return undefined;
    let total = 0;
    let best: Backend | undefined;
    let bestCur = Number.NEGATIVE_INFINITY;
    for (const b of pool) {
      const cur = (this.current.get(key(b)) ?? 0) + b.weight;
      this.current.set(key(b), cur);
      total += b.weight;
      if (cur > bestCur) {
        bestCur = cur;
        best = b;
      }
    }
    if (best) this.current.set(key(best), bestCur - total);
    return best;
  }

  private onConnection(client: net.Socket): void {
    client.pause();
    this.sockets.add(client);
    client.on("error", () => {});
    client.once("close", () => this.sockets.delete(client));
    const tried = new Set<string>();
    const deadline = Date.now() + NO_BACKEND_WAIT_MS;
    const attempt = () => {
      if (client.destroyed || !this.server) {
        client.destroy();
        return;
      }
      const b = this.pick(tried);
      if (!b) {
        if (Date.now() >= deadline) {
          client.destroy();
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
          attempt();
        };
        const t = setTimeout(wake, this.backends.length ? 100 : Math.max(0, deadline - Date.now()));
        this.waiters.push(wake);
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
        this.sockets.add(up);
        this.active.set(b.podId, (this.active.get(b.podId) ?? 0) + 1);
        let counted = true;
        const release = () => {
          if (!counted) return;
          counted = false;
          this.active.set(b.podId, Math.max(0, (this.active.get(b.podId) ?? 1) - 1));
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
        client.resume();
      });
    };
    attempt();
  }
}

function key(b: Backend): string {
  return `${b.podId}:${b.port}`;
}
