/**
 * The Notifier: `notify(event)` returns at once; matching alerts put one delivery per provider on
 * that provider's queue; each provider sends one delivery at a time (in order), retrying what can
 * be retried with exponential backoff and jitter, a bounded number of times. A slow or failing
 * provider delays only its own queue, and never the caller: `notify` neither waits nor throws.
 *
 * Secrets: the caller's scrubber (and URL userinfo redaction) runs over the message, the metadata
 * values and the summary before anything is queued; failures name a provider and an address's
 * host, never the address itself (a webhook URL is often the secret) or a token.
 *
 * Like Flux's notification-controller, an identical event (same object, message and metadata)
 * within `dedupeMs` (default 5 minutes) is sent once.
 */
import type { Config } from "../config/index.js";
import { errorMessage } from "../core/index.js";
import type { Forge } from "../forges/index.js";
import { redactUrls } from "../source/index.js";
import { alertRejects, type ResolvedAlert, type ResolvedProvider, resolveNotifications } from "./alerts.js";
import { DeliveryError, deliver, forgeFor } from "./providers.js";
import type { NotificationEvent, NotifyInput } from "./types.js";

export interface NotifierLog {
  warn(obj: Record<string, unknown>, msg: string): void;
  debug(obj: Record<string, unknown>, msg: string): void;
}

export interface NotifierOptions {
  providers: ResolvedProvider[];
  alerts: ResolvedAlert[];
  /** Masks secret values in text (e.g. the server's scrubber of known secrets). */
  scrub?: (text: string) => string;
  /** Attempts per delivery (default 5), first backoff (500 ms), longest backoff (30 s). */
  retry?: { attempts?: number; baseMs?: number; maxMs?: number };
  /** Most deliveries waiting, over all providers (default 1000); beyond, the oldest are dropped. */
  queueLimit?: number;
  /** Identical events within this window are sent once (default 300 000; 0 turns it off). */
  dedupeMs?: number;
  /** `reportingController` when the event has none (default `sluice`). */
  controller?: string;
  fetch?: typeof fetch;
  /** A forge for github/gitlab providers (default: from the provider's address and token). */
  forge?: (p: ResolvedProvider) => Forge;
  log?: NotifierLog;
}

export interface NotifierCounters {
  /** Events handed to notify(). */
  received: number;
  /** Events no alert took (severity, source, inclusion/exclusion, suspended). */
  filtered: number;
  /** Events dropped as duplicates within the window. */
  deduplicated: number;
  /** Deliveries queued (one per matching provider). */
  queued: number;
  delivered: number;
  /** Deliveries given up (attempts exhausted, or an error retrying cannot fix). */
  failed: number;
  /** Attempts after the first. */
  retries: number;
  /** Deliveries dropped because the queue was full or the notifier closed. */
  dropped: number;
  /** Events that could not be handled at all (malformed input). */
  invalid: number;
}

export interface ProviderStats {
  delivered: number;
  failed: number;
  pending: number;
  lastError?: string;
  lastDeliveredAt?: string;
}

interface Job {
  event: NotificationEvent;
  attempt: number;
}

interface Lane {
  provider: ResolvedProvider;
  queue: Job[];
  busy: boolean;
  timer?: NodeJS.Timeout;
  stats: ProviderStats;
}

export class Notifier {
  readonly counters: NotifierCounters = {
    received: 0,
    filtered: 0,
    deduplicated: 0,
    queued: 0,
    delivered: 0,
    failed: 0,
    retries: 0,
    dropped: 0,
    invalid: 0,
  };
  private readonly lanes = new Map<string, Lane>();
  private readonly alerts: ResolvedAlert[];
  private readonly recent = new Map<string, number>();
  private readonly forges = new Map<string, Forge>();
  private readonly abort = new AbortController();
  private readonly attempts: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: NotifierOptions) {
    this.alerts = opts.alerts;
    for (const p of opts.providers)
      this.lanes.set(p.key, {
        provider: p,
        queue: [],
        busy: false,
        stats: { delivered: 0, failed: 0, pending: 0 },
      });
    this.attempts = Math.max(1, Math.min(20, opts.retry?.attempts ?? 5));
    this.baseMs = Math.max(1, opts.retry?.baseMs ?? 500);
    this.maxMs = Math.max(this.baseMs, opts.retry?.maxMs ?? 30_000);
  }

  /** A notifier for the Providers and Alerts of a configuration (secrets from its Secrets). */
  static fromConfig(config: Config, opts: Omit<NotifierOptions, "providers" | "alerts"> = {}): Notifier {
    return new Notifier({ ...resolveNotifications(config), ...opts });
  }

  /** Per provider (`namespace/name`). */
  stats(): Record<string, ProviderStats> {
    const out: Record<string, ProviderStats> = {};
    for (const [k, l] of this.lanes) out[k] = { ...l.stats, pending: l.queue.length + (l.busy ? 1 : 0) };
    return out;
  }

  /** Deliveries waiting or in flight. */
  get pending(): number {
    let n = 0;
    for (const l of this.lanes.values()) n += l.queue.length + (l.busy ? 1 : 0);
    return n;
  }

  /** Queues the event for every provider an alert routes it to. Never throws, never waits. */
  notify(input: NotifyInput): void {
    try {
      this.counters.received++;
      if (this.closed) return;
      const providers = new Map<string, ResolvedAlert>();
      for (const a of this.alerts) {
        const why = alertRejects(a, input);
        if (why === undefined && !providers.has(a.provider)) providers.set(a.provider, a);
      }
      if (providers.size === 0) {
        this.counters.filtered++;
        return;
      }
      const base = this.clean(input);
      if (this.isDuplicate(base)) {
        this.counters.deduplicated++;
        return;
      }
      for (const [key, alert] of providers) {
        const lane = this.lanes.get(key);
        if (!lane || lane.provider.suspended) continue;
        const event = alert.summary
          ? { ...base, metadata: { ...base.metadata, summary: this.mask(alert.summary) } }
          : base;
        this.enqueue(lane, { event, attempt: 0 });
      }
    } catch (e) {
      this.counters.invalid++;
      this.opts.log?.warn({ err: errorMessage(e) }, "notification event ignored");
    }
  }

  /** Resolves when nothing is waiting or in flight, or after `timeoutMs` (false then). */
  flush(timeoutMs = 10_000): Promise<boolean> {
    if (this.pending === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      t.unref();
      const done = () => {
        clearTimeout(t);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  /** Stops: waiting deliveries are dropped, requests in flight aborted (resolves once they ended). */
  close(): Promise<void> {
    if (this.closed) return this.flush(5000).then(() => undefined);
    this.closed = true;
    this.abort.abort();
    for (const l of this.lanes.values()) {
      if (l.timer) clearTimeout(l.timer);
      this.counters.dropped += l.queue.length;
      l.queue = [];
    }
    this.maybeIdle();
    return this.flush(5000).then(() => undefined);
  }

  private mask(s: string): string {
    const scrubbed = redactUrls(s);
    return this.opts.scrub ? this.opts.scrub(scrubbed) : scrubbed;
  }

  private clean(input: NotifyInput): NotificationEvent {
    const o = input.involvedObject;
    if (!o || typeof o.kind !== "string" || typeof o.name !== "string" || typeof input.message !== "string")
      throw new TypeError("an event needs involvedObject.kind, involvedObject.name and message");
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(input.metadata ?? {}))
      if (typeof v === "string") metadata[k] = this.mask(v);
    return {
      involvedObject: {
        ...(o.apiVersion ? { apiVersion: o.apiVersion } : {}),
        kind: o.kind,
        name: o.name,
        namespace: o.namespace,
        ...(o.uid ? { uid: o.uid } : {}),
      },
      severity: input.severity === "error" ? "error" : "info",
      timestamp: input.timestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      message: this.mask(input.message),
      reason: input.reason,
      ...(Object.keys(metadata).length ? { metadata } : {}),
      reportingController: input.reportingController ?? this.opts.controller ?? "sluice",
      ...(input.reportingInstance ? { reportingInstance: input.reportingInstance } : {}),
    };
  }

  private isDuplicate(ev: NotificationEvent): boolean {
    const window = this.opts.dedupeMs ?? 300_000;
    if (window <= 0) return false;
    const now = Date.now();
    const o = ev.involvedObject;
    const key = JSON.stringify([
      o.kind,
      o.namespace,
      o.name,
      ev.severity,
      ev.reason,
      ev.message,
      ev.metadata ?? {},
    ]);
    const last = this.recent.get(key);
    if (this.recent.size > 10_000) {
      for (const [k, t] of this.recent) if (now - t > window) this.recent.delete(k);
    }
    if (last !== undefined && now - last < window) return true;
    this.recent.set(key, now);
    return false;
  }

  private enqueue(lane: Lane, job: Job): void {
    const limit = this.opts.queueLimit ?? 1000;
    while (this.pending >= limit) {
      // Drop the oldest waiting delivery of the longest queue.
      let longest: Lane | undefined;
      for (const l of this.lanes.values())
        if (l.queue.length && (!longest || l.queue.length > longest.queue.length)) longest = l;
      if (!longest) break;
      longest.queue.shift();
      this.counters.dropped++;
    }
    if (this.pending >= limit) {
      this.counters.dropped++;
      return;
    }
    lane.queue.push(job);
    this.counters.queued++;
    this.pump(lane);
  }

  private pump(lane: Lane): void {
    if (lane.busy || lane.timer || this.closed) return;
    const job = lane.queue.shift();
    if (!job) {
      this.maybeIdle();
      return;
    }
    lane.busy = true;
    void this.attempt(lane, job);
  }

  private forge(p: ResolvedProvider): Forge {
    let f = this.forges.get(p.key);
    if (!f) {
      f = (this.opts.forge ?? forgeFor)(p);
      this.forges.set(p.key, f);
    }
    return f;
  }

  private async attempt(lane: Lane, job: Job): Promise<void> {
    const p = lane.provider;
    job.attempt++;
    let retryIn: number | undefined;
    try {
      await deliver(p, job.event, {
        fetch: this.opts.fetch ?? fetch,
        signal: this.abort.signal,
        forge: (x) => this.forge(x),
      });
      this.counters.delivered++;
      lane.stats.delivered++;
      lane.stats.lastDeliveredAt = new Date().toISOString();
    } catch (e) {
      const retryable = e instanceof DeliveryError ? e.retryable : false;
      const msg = this.mask(errorMessage(e));
      lane.stats.lastError = msg;
      if (retryable && job.attempt < this.attempts && !this.closed) {
        const exp = Math.min(this.maxMs, this.baseMs * 2 ** (job.attempt - 1));
        retryIn = Math.round(exp / 2 + (Math.random() * exp) / 2);
        this.counters.retries++;
        this.opts.log?.debug(
          { provider: p.key, attempt: job.attempt, retryInMs: retryIn, err: msg },
          "notification failed; retrying",
        );
      } else {
        this.counters.failed++;
        lane.stats.failed++;
        this.opts.log?.warn(
          { provider: p.key, attempts: job.attempt, err: msg },
          "notification not delivered",
        );
      }
    } finally {
      lane.busy = false;
    }
    if (retryIn !== undefined) {
      lane.queue.unshift(job);
      lane.timer = setTimeout(() => {
        lane.timer = undefined;
        this.pump(lane);
      }, retryIn);
      lane.timer.unref();
      return;
    }
    this.pump(lane);
  }

  private maybeIdle(): void {
    if (this.pending > 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }
}
