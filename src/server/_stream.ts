/**
 * The Server-Sent Events stream of agent changes. One listener on the agent fans out to every
 * client (so a hundred dashboards do not mean a hundred listeners); each client gets a comment as
 * a heartbeat every `heartbeatMs`, which keeps proxies from timing the connection out and lets the
 * CLI notice a dead server. A client that does not read (its socket buffer beyond a bound) is
 * dropped rather than buffered without limit.
 */
import type { ServerResponse } from "node:http";
import type { AgentEvent } from "../reconcile/index.js";
import type { Scrubber } from "./_scrub.js";

/** Bytes queued on a client's socket before we give up on it. */
const MAX_BUFFERED = 4 * 1024 * 1024;

interface Client {
  res: ServerResponse;
  timer: NodeJS.Timeout;
}

export class EventStream {
  private readonly clients = new Set<Client>();

  constructor(private readonly opts: { heartbeatMs: number; maxClients: number; scrub: () => Scrubber }) {}

  get size(): number {
    return this.clients.size;
  }

  get full(): boolean {
    return this.clients.size >= this.opts.maxClients;
  }

  /** Takes over `res` (headers are already set by the caller) until the client goes away. */
  attach(res: ServerResponse): void {
    res.statusCode = 200;
    res.setHeader("Content-Type", "text/event-stream; charset=utf-8");
    res.setHeader("Connection", "keep-alive");
    res.setHeader("X-Accel-Buffering", "no");
    res.flushHeaders();
    res.write(": connected\nretry: 3000\n\n");
    const client: Client = {
      res,
      timer: setInterval(() => this.write(client, ": heartbeat\n\n"), this.opts.heartbeatMs),
    };
    client.timer.unref();
    this.clients.add(client);
    const drop = () => this.drop(client);
    res.on("close", drop);
    res.on("error", drop);
  }

  /** Sends one agent event to every client. */
  publish(e: AgentEvent): void {
    if (this.clients.size === 0) return;
    const data = JSON.stringify(this.opts.scrub()(e));
    const frame = `event: ${e.type}\ndata: ${data}\n\n`;
    for (const c of this.clients) this.write(c, frame);
  }

  /** Ends every stream (server shutdown). */
  closeAll(): void {
    for (const c of [...this.clients]) {
      this.drop(c);
      c.res.end();
    }
  }

  private write(c: Client, frame: string): void {
    if (c.res.writableEnded || c.res.destroyed) {
      this.drop(c);
      return;
    }
    if (c.res.writableLength > MAX_BUFFERED) {
      this.drop(c);
      c.res.destroy();
      return;
    }
    c.res.write(frame);
  }

  private drop(c: Client): void {
    clearInterval(c.timer);
    this.clients.delete(c);
  }
}
