/**
 * Live updates: one EventSource on `/api/v1/stream`, opened with a one-time ticket (EventSource
 * cannot send an Authorization header). A dropped stream is reopened with a new ticket after a
 * growing pause; every (re)open tells the pages to resynchronise, since events may have been
 * missed meanwhile. Pages subscribe and decide what to refetch: no polling loop.
 */
import { session } from "./api";
import type { LiveEvent } from "./types";

export type LiveState = "connecting" | "live" | "reconnecting" | "off";
type Listener = (e: LiveEvent) => void;

const TYPES = ["unit", "environment", "source", "run", "event"] as const;

class Live {
  state: LiveState = "off";
  private es: EventSource | null = null;
  private readonly listeners = new Set<Listener>();
  private readonly stateListeners = new Set<(s: LiveState) => void>();
  private retryMs = 1000;
  private timer: number | undefined;
  private generation = 0;

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  onState(l: (s: LiveState) => void): () => void {
    this.stateListeners.add(l);
    return () => this.stateListeners.delete(l);
  }

  private setState(s: LiveState): void {
    this.state = s;
    for (const l of this.stateListeners) l(s);
  }

  private emit(e: LiveEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        console.error(err);
      }
    }
  }

  start(): void {
    if (this.state !== "off") return;
    void this.open(++this.generation);
  }

  stop(): void {
    this.generation++;
    clearTimeout(this.timer);
    this.es?.close();
    this.es = null;
    this.setState("off");
  }

  private async open(gen: number): Promise<void> {
    this.setState(this.state === "off" ? "connecting" : "reconnecting");
    let ticket: string;
    try {
      ticket = (await session.post<{ ticket: string }>("/stream-ticket")).ticket;
    } catch {
      if (gen === this.generation && session.hasToken) this.retry(gen);
      return;
    }
    if (gen !== this.generation) return;
    const es = new EventSource(`/api/v1/stream?ticket=${encodeURIComponent(ticket)}`);
    this.es = es;
    es.onopen = () => {
      if (gen !== this.generation) return;
      this.retryMs = 1000;
      this.setState("live");
      this.emit({ type: "resync" });
    };
    es.onerror = () => {
      // The ticket was spent on the first connection: EventSource's own retry would be refused,
      // so close it and buy a new ticket.
      es.close();
      if (gen === this.generation) this.retry(gen);
    };
    for (const t of TYPES) {
      es.addEventListener(t, (m) => {
        try {
          this.emit({ ...(JSON.parse((m as MessageEvent<string>).data) as object), type: t } as LiveEvent);
        } catch {
          // not JSON: ignore
        }
      });
    }
  }

  private retry(gen: number): void {
    this.setState("reconnecting");
    clearTimeout(this.timer);
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 15_000);
    this.timer = window.setTimeout(() => {
      if (gen === this.generation) void this.open(gen);
    }, wait);
  }
}

export const live = new Live();

/**
 * Calls `fn` at most once per `ms` after events (trailing), so a burst of a thousand unit
 * changes costs one refetch.
 */
export function debounced(fn: () => void, ms: number): { (): void; cancel(): void } {
  let t: number | undefined;
  const f = () => {
    if (t !== undefined) return;
    t = window.setTimeout(() => {
      t = undefined;
      fn();
    }, ms);
  };
  f.cancel = () => {
    clearTimeout(t);
    t = undefined;
  };
  return f;
}
