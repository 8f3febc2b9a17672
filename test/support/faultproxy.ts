/**
 * A loopback TCP proxy that injects network faults between Sluice and a peer (Git server,
 * registry, notification receiver), switchable at run time:
 *
 * - `pass`: bytes flow both ways untouched;
 * - `delay`: every chunk, both ways, is held `delayMs` (a slow link; order is kept);
 * - `drop`: new connections are accepted and closed at once, nothing read (the peer hangs up);
 * - `reset`: new connections — and, on switching, every open one — are reset (TCP RST), after
 *   `afterBytes` bytes from the peer when set (a connection cut in the middle of an answer);
 * - `blackhole`: new connections are accepted and never answered, and open ones stop forwarding
 *   (a partition; they stay stalled until the client gives up, as on a real network);
 * - `refuse`: the port is closed (connection refused, a peer that is down); it listens again on
 *   the same port when the mode changes.
 *
 * `counts` says how many connections met each mode (the faults survived); `episodes` how many
 * times each fault was switched on. Everything is 127.0.0.1 only; `close()` ends every socket.
 */
import { createServer, type Server, Socket } from "node:net";

export type FaultMode = "pass" | "delay" | "drop" | "reset" | "blackhole" | "refuse";

export const FAULT_MODES: readonly FaultMode[] = ["pass", "delay", "drop", "reset", "blackhole", "refuse"];

export interface FaultOptions {
  /** For `delay`: how long each chunk is held (default 500 ms). */
  delayMs?: number;
  /** For `reset`: bytes from the peer forwarded before the reset (default 0: at once). */
  afterBytes?: number;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly port: number;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly mode: FaultMode;
  /** Connections that met each mode (accepted, or switched while open). */
  readonly counts: Record<FaultMode, number>;
  /** How many times each mode was switched on. */
  readonly episodes: Record<FaultMode, number>;
  /** Connections currently open. */
  readonly open: number;
  /** When each connection was accepted and the mode it met (the last 10 000). */
  readonly accepted: readonly { at: number; mode: FaultMode }[];
  set(mode: FaultMode, opts?: FaultOptions): Promise<void>;
  close(): Promise<void>;
}

/** One direction of a connection: chunks (and the end) leave in order, each when its delay is up. */
interface Pipe {
  queue: { due: number; fn: () => void }[];
  timer: NodeJS.Timeout | undefined;
  last: number;
}

interface Conn {
  client: Socket;
  upstream: Socket | undefined;
  stalled: boolean;
  /** Bytes from the peer forwarded so far. */
  down: number;
  /** Bytes from the peer after which this connection is reset, if any. */
  resetAt: number | undefined;
  toPeer: Pipe;
  toClient: Pipe;
}

const zero = (): Record<FaultMode, number> => ({
  pass: 0,
  delay: 0,
  drop: 0,
  reset: 0,
  blackhole: 0,
  refuse: 0,
});

const pipe = (): Pipe => ({ queue: [], timer: undefined, last: 0 });

/** Starts a proxy on 127.0.0.1 (a free port unless `port`) to `targetPort` on 127.0.0.1. */
export async function startFaultProxy(opts: { targetPort: number; port?: number }): Promise<FaultProxy> {
  let mode: FaultMode = "pass";
  let options: FaultOptions = {};
  const counts = zero();
  const episodes = zero();
  const conns = new Set<Conn>();
  const accepted: { at: number; mode: FaultMode }[] = [];
  let closed = false;

  const reset = (s: Socket | undefined) => {
    if (s && !s.destroyed) s.resetAndDestroy();
  };
  const end = (c: Conn) => {
    conns.delete(c);
    for (const p of [c.toPeer, c.toClient]) {
      if (p.timer) clearTimeout(p.timer);
      p.queue.length = 0;
    }
    c.client.destroy();
    c.upstream?.destroy();
  };
  const pump = (p: Pipe) => {
    if (p.timer) return;
    while (p.queue.length && p.queue[0]!.due <= Date.now()) p.queue.shift()!.fn();
    if (!p.queue.length) return;
    p.timer = setTimeout(() => {
      p.timer = undefined;
      pump(p);
    }, p.queue[0]!.due - Date.now());
    p.timer.unref();
  };
  /** Runs `fn` after the current delay, never before what was queued earlier in this direction. */
  const later = (p: Pipe, fn: () => void) => {
    const delay = mode === "delay" ? (options.delayMs ?? 500) : 0;
    p.last = Math.max(Date.now() + delay, p.last);
    p.queue.push({ due: p.last, fn });
    pump(p);
  };

  const fromPeer = (c: Conn, chunk: Buffer) => {
    if (c.stalled || c.client.destroyed) return; // blackholed: swallowed
    let data = chunk;
    if (c.resetAt !== undefined) {
      const room = c.resetAt - c.down;
      if (room <= 0) {
        reset(c.client);
        reset(c.upstream);
        return;
      }
      if (data.length > room) data = data.subarray(0, room);
    }
    c.down += data.length;
    c.client.write(data);
    if (c.resetAt !== undefined && c.down >= c.resetAt) {
      // Let the bytes leave first, then cut.
      setImmediate(() => {
        reset(c.client);
        reset(c.upstream);
      });
    }
  };

  const accept = (client: Socket) => {
    if (closed) {
      client.destroy();
      return;
    }
    client.on("error", () => {});
    counts[mode]++;
    accepted.push({ at: Date.now(), mode });
    if (accepted.length > 10_000) accepted.shift();
    if (mode === "drop") {
      client.end();
      client.destroy();
      return;
    }
    if (mode === "reset" && !options.afterBytes) {
      reset(client);
      return;
    }
    const c: Conn = {
      client,
      upstream: undefined,
      stalled: mode === "blackhole",
      down: 0,
      resetAt: mode === "reset" ? options.afterBytes : undefined,
      toPeer: pipe(),
      toClient: pipe(),
    };
    conns.add(c);
    client.on("close", () => end(c));
    if (c.stalled) return; // never connects upstream; the client waits
    // Connecting is the first thing sent toward the peer (so a slow link delays it too).
    later(c.toPeer, () => {
      if (c.stalled || client.destroyed) return;
      const up = new Socket();
      c.upstream = up;
      up.on("error", () => reset(client));
      up.on("data", (chunk: Buffer) => {
        if (!c.stalled) later(c.toClient, () => fromPeer(c, chunk));
      });
      up.on("end", () => later(c.toClient, () => client.end()));
      up.on("close", () => conns.delete(c));
      up.connect(opts.targetPort, "127.0.0.1");
    });
    client.on("data", (chunk: Buffer) => {
      if (c.stalled) return;
      later(c.toPeer, () => {
        if (!c.stalled && c.upstream && !c.upstream.destroyed) c.upstream.write(chunk);
      });
    });
    client.on("end", () => later(c.toPeer, () => c.upstream?.end()));
  };

  let server: Server = createServer({ pauseOnConnect: false }, accept);
  const listen = (s: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        s.off("error", reject);
        const a = s.address();
        resolve(typeof a === "object" && a ? a.port : 0);
      });
    });
  const port = await listen(server, opts.port ?? 0);
  let listening = true;

  // The listening socket closes at once; close()'s callback would wait for open connections.
  const stopListening = async () => {
    if (!listening) return;
    listening = false;
    server.close();
  };
  const startListening = async () => {
    if (listening || closed) return;
    // The port was ours a moment ago; retry briefly if the kernel is slow to free it.
    const deadline = Date.now() + 5000;
    for (;;) {
      const s = createServer(accept);
      try {
        await listen(s, port);
        server = s;
        listening = true;
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  return {
    host: `127.0.0.1:${port}`,
    port,
    url: `http://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    counts,
    episodes,
    get open() {
      return conns.size;
    },
    accepted,
    async set(next, o = {}) {
      if (closed) return;
      const prev = mode;
      mode = next;
      options = o;
      if (next !== prev) episodes[next]++;
      if (next === "refuse") await stopListening();
      else await startListening();
      // Open connections meet the new fault too.
      for (const c of [...conns]) {
        if (next === "reset") {
          counts.reset++;
          if (o.afterBytes) c.resetAt = c.down + o.afterBytes;
          else {
            reset(c.client);
            reset(c.upstream);
            conns.delete(c);
          }
        } else if (next === "blackhole" && !c.stalled) {
          counts.blackhole++;
          c.stalled = true;
        } else if (next === "refuse" || next === "drop") {
          counts[next]++;
          end(c);
        }
      }
    },
    async close() {
      closed = true;
      for (const c of [...conns]) end(c);
      await stopListening();
    },
  };
}
