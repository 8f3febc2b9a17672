/**
 * Membership and shard ownership across replicas.
 *
 * Each replica holds a member Lease (`sluice-member-<id>`) in one namespace and renews it every
 * `renewIntervalMs`; every `pollIntervalMs` it lists the member Leases. Environments are assigned
 * to the live members by rendezvous hashing (ring.ts). `owns(env)` says whether this replica may
 * act on an environment *now*.
 *
 * ## Why no environment ever has two acting owners
 *
 * Let D be the lease duration and δ the safety fraction (0.2). All durations below are measured
 * by each replica on its own monotonic clock; no two clocks are compared.
 *
 * 1. **Self-fencing.** A renewal sent at r and acknowledged keeps the replica valid until
 *    r + D(1−δ). A renewal acknowledged after the validity ended starts a new *tenure*. A replica
 *    whose renewals fail stops acting by itself when the validity ends.
 * 2. **Fresh views.** A view is one LIST of the member Leases (a consistent read), sent at l; it
 *    may be acted on until l + D(1−δ).
 * 3. **Expiry by observation.** An observer records, for each Lease resourceVersion, the response
 *    time o of the first LIST that showed it. A member is expired in a LIST sent at l when its
 *    resourceVersion is the one first seen at o and l − o ≥ D (a Lease that disappeared counts as
 *    unchanged). Within a tenure, writes are less than D(1−δ) apart (1.), so a LIST sent D after
 *    the observation of a write would show a newer one: a member judged expired has fenced itself.
 *    A Lease whose holder is cleared (released) leaves at once: the replica stopped acting before
 *    it released.
 * 4. **Warm-up.** A replica acts only from D after its tenure started (the acknowledgement of its
 *    first write). Any other replica acting then holds a view sent less than D(1−δ) ago, so after
 *    that write: it sees the newcomer, and by 3. does not think it expired.
 * 5. Two replicas X and Z both acting on E would each be E's owner in their views; by rendezvous
 *    hashing the one with the higher score — say X — is then missing from Z's view, contradicting
 *    4. So at every moment each environment has at most one acting owner, and exactly one once
 *    views agree (after a join: the newcomer's warm-up; after a death: D + 2 polls at most after
 *    its last renewal).
 *
 * What this does not cover: work already started when ownership is lost keeps running until it
 * ends (the Agent checks `owns` before it starts a unit, see README.md); a joining replica's
 * warm-up (D) is the grace such work has after the old owner sees the newcomer.
 */
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { errorMessage } from "../core/index.js";
import type { KubeRequester } from "./kube.js";
import {
  ANNOTATION_ENVIRONMENTS,
  deleteLease,
  holderOf,
  type LeaseObject,
  listMemberLeases,
  memberLeaseName,
  microTime,
  newMemberLease,
  replicaOf,
  writeLease,
} from "./leases.js";
import { ownerOf } from "./ring.js";

export interface MembershipOptions {
  /** An API client (`new KubeApi(defaultConnection())`). Not closed by the membership. */
  api: KubeRequester;
  /** Where the member Leases live (e.g. `sluice-system`). */
  namespace: string;
  /** This replica's id (the pod name in a cluster); unique among replicas. */
  id: string;
  /** D: how long a silent member is still counted (default 15 s). */
  leaseDurationMs?: number;
  /** Default D/5. */
  renewIntervalMs?: number;
  /** Default D/10, at most 1 s. */
  pollIntervalMs?: number;
  /** Warm-up after a tenure starts; default D (never less). */
  warmupMs?: number;
  /** Monotonic milliseconds (tests may inject). */
  now?: () => number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /**
   * Called when this replica stops acting on purpose (stop()) before its Lease is released:
   * resolve once work in progress has ended (e.g. `agent.stop()`).
   */
  beforeRelease?: () => Promise<void>;
}

export interface MemberInfo {
  id: string;
  lease: string;
  /** Live in this replica's view. */
  live: boolean;
  /** Milliseconds since this replica last saw the Lease change. */
  silentMs: number;
  /** What the member published (`sluice.dev/environments`). */
  environments?: number;
  renewTime?: string;
}

export interface MembershipStatus {
  id: string;
  acting: boolean;
  /** Why not acting (warming up, lease not renewed, view stale, stopped), when not. */
  reason?: string;
  members: string[];
  tenureStartedMs?: number;
  warmupLeftMs: number;
}

export const SAFETY_FRACTION = 0.2;

interface Observed {
  rv: string;
  /** Response time of the LIST that first showed this resourceVersion. */
  seenAt: number;
  lease: LeaseObject;
  gone: boolean;
}

export class Membership extends EventEmitter {
  readonly id: string;
  readonly namespace: string;
  readonly leaseDurationMs: number;
  readonly renewIntervalMs: number;
  readonly pollIntervalMs: number;
  readonly warmupMs: number;
  private readonly api: KubeRequester;
  private readonly now: () => number;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private readonly leaseName: string;

  private running = false;
  private stopping = false;
  private lease: LeaseObject | undefined;
  private tenureStart: number | undefined;
  private validUntil = Number.NEGATIVE_INFINITY;
  private viewValidUntil = Number.NEGATIVE_INFINITY;
  private observed = new Map<string, Observed>();
  private live: string[] = [];
  private liveSet = new Set<string>();
  private owners = new Map<string, string | undefined>();
  private signature = "";
  private timers: NodeJS.Timeout[] = [];
  private renewing: Promise<void> | undefined;
  private polling: Promise<void> | undefined;
  private published: number | undefined;

  constructor(private readonly opts: MembershipOptions) {
    super();
    this.id = opts.id;
    this.namespace = opts.namespace;
    this.api = opts.api;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewIntervalMs = opts.renewIntervalMs ?? Math.round(this.leaseDurationMs / 5);
    this.pollIntervalMs = opts.pollIntervalMs ?? Math.min(1000, Math.round(this.leaseDurationMs / 10));
    this.warmupMs = Math.max(opts.warmupMs ?? this.leaseDurationMs, this.leaseDurationMs);
    if (this.renewIntervalMs * 2 > this.leaseDurationMs * (1 - SAFETY_FRACTION))
      throw new Error("renewIntervalMs must leave room for at least two renewals per lease");
    this.now = opts.now ?? (() => performance.now());
    this.log = opts.log ?? (() => {});
    this.leaseName = memberLeaseName(opts.id);
  }

  /** Creates (or takes over) this replica's Lease and starts renewing and watching. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.renew();
    await this.poll();
    this.loop("renew", this.renewIntervalMs, () => this.renew());
    this.loop("poll", this.pollIntervalMs, () => this.poll());
  }

  private loop(what: string, every: number, fn: () => Promise<void>): void {
    const tick = async () => {
      if (!this.running) return;
      try {
        await fn();
      } catch (e) {
        this.log(`membership ${what} failed`, { error: errorMessage(e) });
      }
      this.evaluate();
      if (this.running) this.timers.push(setTimeout(tick, every).unref());
    };
    this.timers.push(setTimeout(tick, every).unref());
  }

  /** May this replica act on `env` at this moment? */
  owns(env: string): boolean {
    return this.acting() && this.ownerOf(env) === this.id;
  }

  /** The owner of `env` in this replica's current view (acting or not). */
  ownerOf(env: string): string | undefined {
    if (!this.owners.has(env)) this.owners.set(env, ownerOf(env, this.live));
    return this.owners.get(env);
  }

  /** Live members in this replica's view, sorted. */
  members(): string[] {
    return [...this.live];
  }

  /** Whether this replica may act at all now (and if not, why). */
  acting(): boolean {
    return this.whyNot() === undefined;
  }

  private whyNot(): string | undefined {
    const t = this.now();
    if (!this.running || this.stopping) return "stopped";
    if (t >= this.validUntil || this.tenureStart === undefined) return "own lease not renewed";
    if (t >= this.viewValidUntil) return "membership view is stale";
    if (!this.liveSet.has(this.id)) return "not yet in the membership view";
    if (t < this.tenureStart + this.warmupMs) return "warming up";
    return undefined;
  }

  status(): MembershipStatus {
    const reason = this.whyNot();
    const t = this.now();
    return {
      id: this.id,
      acting: reason === undefined,
      ...(reason ? { reason } : {}),
      members: this.members(),
      ...(this.tenureStart !== undefined ? { tenureStartedMs: Math.round(t - this.tenureStart) } : {}),
      warmupLeftMs:
        this.tenureStart === undefined
          ? this.warmupMs
          : Math.max(0, Math.round(this.tenureStart + this.warmupMs - t)),
    };
  }

  /** Every member Lease this replica knows of, live or not. */
  memberInfo(): MemberInfo[] {
    const t = this.now();
    return [...this.observed.values()]
      .filter((o) => !o.gone)
      .map((o) => {
        const id = replicaOf(o.lease);
        const n = Number(o.lease.metadata.annotations?.[ANNOTATION_ENVIRONMENTS]);
        return {
          id,
          lease: o.lease.metadata.name,
          live: this.liveSet.has(id),
          silentMs: Math.round(t - o.seenAt),
          ...(Number.isFinite(n) ? { environments: n } : {}),
          ...(o.lease.spec.renewTime ? { renewTime: o.lease.spec.renewTime } : {}),
        };
      })
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Publishes how many environments this replica owns (shown by `sluice shards`). */
  publish(environments: number): void {
    this.published = environments;
  }

  /**
   * Calls `fn` whenever the assignment or this replica's ability to act changes (call the
   * Agent's `reshard()` from it). Returns an unsubscribe function.
   */
  onChange(fn: (m: Membership) => void): () => void {
    const h = () => fn(this);
    this.on("change", h);
    return () => this.off("change", h);
  }

  /**
   * Stops acting at once; then, with `release` (the default), waits for `beforeRelease` and
   * clears the Lease's holder so the others take over without waiting for it to expire.
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.stopping = true;
    this.evaluate();
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    await Promise.allSettled([this.renewing, this.polling]);
    try {
      if (opts.release !== false) {
        await this.opts.beforeRelease?.();
        await this.release();
      }
    } finally {
      this.running = false;
      this.stopping = false;
    }
  }

  private async release(): Promise<void> {
    if (!this.lease?.metadata.resourceVersion) return;
    const l = structuredClone(this.lease);
    l.spec.holderIdentity = "";
    l.spec.renewTime = microTime(new Date());
    const res = await writeLease(this.api, l, false, 5000).catch(() => undefined);
    if (res && res.status >= 300) this.log("releasing the member Lease failed", { status: res.status });
  }

  // ---- renewing ----

  private renew(): Promise<void> {
    if (!this.renewing) this.renewing = this.doRenew().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  private async doRenew(): Promise<void> {
    if (this.stopping) return;
    const sent = this.now();
    const timeoutMs = Math.max(500, Math.floor((this.leaseDurationMs * (1 - SAFETY_FRACTION)) / 2));
    const wall = new Date();
    let body: LeaseObject;
    let create = false;
    if (this.lease) {
      body = structuredClone(this.lease);
      body.spec.renewTime = microTime(wall);
      body.spec.holderIdentity = this.id;
    } else {
      // First write of this process, or after a conflict: read what is there, then take it over.
      const got = await this.api.request(
        "GET",
        `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases/${this.leaseName}`,
        { timeoutMs },
      );
      body = newMemberLease(this.namespace, this.id, this.leaseDurationMs, wall);
      if (got.status === 200) {
        const cur = got.body as LeaseObject;
        body.metadata.resourceVersion = cur.metadata.resourceVersion;
        body.spec.leaseTransitions = (cur.spec.leaseTransitions ?? 0) + 1;
      } else if (got.status === 404) {
        create = true;
      } else {
        throw new Error(`reading member Lease ${this.leaseName}: HTTP ${got.status}`);
      }
    }
    if (this.published !== undefined) {
      body.metadata.annotations = {
        ...(body.metadata.annotations ?? {}),
        [ANNOTATION_ENVIRONMENTS]: String(this.published),
      };
    }
    const res = await writeLease(this.api, body, create, timeoutMs);
    const acked = this.now();
    if (res.status === 200 || res.status === 201) {
      this.lease = res.body as LeaseObject;
      const continuous = this.tenureStart !== undefined && acked < this.validUntil;
      if (!continuous) {
        this.tenureStart = acked;
        this.log("membership tenure started", { id: this.id });
      }
      this.validUntil = sent + this.leaseDurationMs * (1 - SAFETY_FRACTION);
      return;
    }
    if (res.status === 409 || res.status === 404) {
      // Someone else wrote or deleted our Lease: fence at once and start a new tenure.
      this.lease = undefined;
      this.tenureStart = undefined;
      this.validUntil = Number.NEGATIVE_INFINITY;
      this.evaluate();
      this.log("member Lease changed under us: fenced, taking it back", { status: res.status });
      return;
    }
    throw new Error(`renewing member Lease ${this.leaseName}: HTTP ${res.status}`);
  }

  // ---- watching ----

  private poll(): Promise<void> {
    if (!this.polling) this.polling = this.doPoll().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async doPoll(): Promise<void> {
    const sent = this.now();
    const leases = await listMemberLeases(
      this.api,
      this.namespace,
      Math.max(500, Math.floor(this.leaseDurationMs * (1 - SAFETY_FRACTION))),
    );
    const answered = this.now();
    const present = new Set<string>();
    for (const l of leases) {
      const name = l.metadata.name;
      present.add(name);
      const rv = l.metadata.resourceVersion ?? "";
      const prev = this.observed.get(name);
      if (!prev || prev.rv !== rv || prev.gone)
        this.observed.set(name, { rv, seenAt: answered, lease: l, gone: false });
    }
    for (const [name, o] of this.observed) if (!present.has(name)) o.gone = true;
    const live: string[] = [];
    const expired: Observed[] = [];
    for (const [name, o] of this.observed) {
      const silentFor = sent - o.seenAt;
      if (silentFor >= this.leaseDurationMs) {
        if (o.gone) this.observed.delete(name);
        else expired.push(o);
        continue;
      }
      const holder = o.gone ? replicaOf(o.lease) : holderOf(o.lease);
      if (holder) live.push(holder);
    }
    live.sort();
    this.viewValidUntil = sent + this.leaseDurationMs * (1 - SAFETY_FRACTION);
    if (live.join("\n") !== this.live.join("\n")) {
      this.live = live;
      this.liveSet = new Set(live);
      this.owners.clear();
    }
    // Leases silent for 3 D: their holder fenced itself long ago; delete them (only if unchanged).
    for (const o of expired) {
      if (answered - o.seenAt < 3 * this.leaseDurationMs || o.lease.metadata.name === this.leaseName)
        continue;
      await deleteLease(
        this.api,
        this.namespace,
        o.lease.metadata.name,
        o.lease.metadata.resourceVersion,
        5000,
      ).catch(() => undefined);
    }
  }

  /** Emits `change` when the member set or this replica's ability to act changed. */
  private evaluate(): void {
    const sig = `${this.acting()}|${this.live.join(",")}`;
    if (sig === this.signature) return;
    this.signature = sig;
    this.emit("change", this);
  }
}
