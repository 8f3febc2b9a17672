/**
 * The work queue: bounded concurrency, one run per key at a time, coalescing. Enqueueing a key
 * that is already waiting merges the triggers; enqueueing a key that is running marks it dirty so
 * it runs once more right after (a push during a reconcile is never lost, and never runs twice
 * concurrently). Failed keys are retried with exponential backoff and jitter (half fixed, half random).
 */
export interface QueueOptions {
  concurrency: number;
  /** Runs one key; throwing schedules a retry. */
  worker: (key: string, triggers: string[]) => Promise<void>;
  /** Base and cap of the retry backoff. */
  backoff?: { baseMs: number; maxMs: number };
  /** Called with errors thrown by the worker. */
  onError?: (key: string, error: unknown, retryInMs: number) => void;
  random?: () => number;
}

export class WorkQueue {
  private readonly waiting = new Map<string, string[]>();
  private readonly running = new Set<string>();
  private readonly dirty = new Map<string, string[]>();
  private readonly failures = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly opts: QueueOptions) {}

  /** Number of keys waiting (not running). */
  get depth(): number {
    return this.waiting.size;
  }

  get active(): number {
    return this.running.size;
  }

  isBusy(key: string): boolean {
    return this.running.has(key) || this.waiting.has(key);
  }

  enqueue(key: string, trigger: string): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirty.set(key, [...(this.dirty.get(key) ?? []), trigger]);
      return;
    }
    const t = this.retryTimers.get(key);
    if (t) {
      clearTimeout(t);
      this.retryTimers.delete(key);
    }
    this.waiting.set(key, [...(this.waiting.get(key) ?? []), trigger]);
    this.pump();
  }

  /** Forgets a failing key's backoff (e.g. after a manual reconcile succeeded elsewhere). */
  resetBackoff(key: string): void {
    this.failures.delete(key);
  }

  /** Resolves when nothing is waiting or running (retries scheduled later do not count). */
  idle(): Promise<void> {
    if (this.waiting.size === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking work; resolves when running work has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.waiting.clear();
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    await this.idle();
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.opts.concurrency) {
      const next = this.waiting.keys().next();
      if (next.done) break;
      const key = next.value;
      const triggers = this.waiting.get(key)!;
      this.waiting.delete(key);
      this.running.add(key);
      void this.run(key, triggers);
    }
    if (this.waiting.size === 0 && this.running.size === 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }

  private async run(key: string, triggers: string[]): Promise<void> {
    try {
      await this.opts.worker(key, triggers);
      this.failures.delete(key);
    } catch (e) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const { baseMs, maxMs } = this.opts.backoff ?? { baseMs: 1000, maxMs: 5 * 60_000 };
      const cap = Math.min(maxMs, baseMs * 2 ** (n - 1));
      const delay = Math.round(cap / 2 + (this.opts.random ?? Math.random)() * (cap / 2));
      this.opts.onError?.(key, e, delay);
      if (!this.stopped && !this.dirty.has(key)) {
        const t = setTimeout(() => {
          this.retryTimers.delete(key);
          this.enqueue(key, "retry");
        }, delay);
        t.unref();
        this.retryTimers.set(key, t);
      }
    } finally {
      this.running.delete(key);
      const again = this.dirty.get(key);
      if (again) {
        this.dirty.delete(key);
        this.enqueue(key, again.join(","));
      }
      this.pump();
    }
  }
}
