/**
 * What must outlive a pod, kept in the cluster: one ConfigMap per environment,
 * `sluice-state-<env>` in the shard namespace, written by the environment's owner. It holds the
 * environment's record (branch, rule, TTL and expiry, purge hold), its units' status, and its last
 * runs and events — each run tagged with the replica that ran it. When an environment changes
 * owner, the new owner keeps the runs the old one recorded (a run the old owner left `running`
 * is shown `interrupted`), so history survives a pod's death; `restoreEnvironment` seeds a new
 * owner's local store (SQLite, a cache) with the record so TTLs and purge holds carry over.
 *
 * Inventories need nothing here: the Kubernetes target keeps them in ConfigMaps already.
 */
import type { EventEmitter } from "node:events";
import { errorMessage } from "../core/index.js";
import type { EnvironmentRecord, EventRecord, RunRecord, Store, UnitStatus } from "../store/index.js";
import { apiError, type KubeRequester } from "./kube.js";

export const STATE_PREFIX = "sluice-state-";
export const LABEL_STATE = "sluice.dev/state";
const MAX_BYTES = 256 * 1024;

export interface RunSummary extends Omit<RunRecord, "stages"> {
  /** The replica that ran it. */
  replica: string;
}

export interface EnvironmentSnapshot {
  env: string;
  /** The replica that wrote this snapshot, and when (ISO). */
  writtenBy: string;
  writtenAt: string;
  environment: EnvironmentRecord | null;
  units: UnitStatus[];
  /** Newest first. */
  runs: RunSummary[];
  /** Newest first. */
  events: EventRecord[];
}

/** `sluice-state-<env>` (environment names are already valid object names). */
export function stateConfigMapName(env: string): string {
  return `${STATE_PREFIX}${env}`.slice(0, 253);
}

function cmPath(namespace: string, name?: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps${name ? `/${encodeURIComponent(name)}` : ""}`;
}

function fromConfigMap(cm: { data?: Record<string, string> }): EnvironmentSnapshot | undefined {
  try {
    return JSON.parse(cm.data?.["snapshot.json"] ?? "") as EnvironmentSnapshot;
  } catch {
    return undefined;
  }
}

export async function readEnvironmentState(
  api: KubeRequester,
  namespace: string,
  env: string,
): Promise<EnvironmentSnapshot | undefined> {
  const res = await api.request("GET", cmPath(namespace, stateConfigMapName(env)));
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw apiError(res, `reading the state of ${env}`);
  return fromConfigMap(res.body);
}

export async function listEnvironmentStates(
  api: KubeRequester,
  namespace: string,
): Promise<EnvironmentSnapshot[]> {
  const res = await api.request(
    "GET",
    `${cmPath(namespace)}?labelSelector=${encodeURIComponent(`${LABEL_STATE}=environment`)}`,
  );
  if (res.status !== 200) throw apiError(res, `listing environment state in ${namespace}`);
  return ((res.body?.items ?? []) as { data?: Record<string, string> }[])
    .map(fromConfigMap)
    .filter((s): s is EnvironmentSnapshot => s !== undefined);
}

/**
 * Seeds `store` with the environment record of a snapshot when the store does not know the
 * environment (a replica that just took it over). Returns whether it did.
 */
export function restoreEnvironment(store: Store, snap: EnvironmentSnapshot): boolean {
  const e = snap.environment;
  if (!e || store.getEnvironment(e.name)) return false;
  store.upsertEnvironment({
    name: e.name,
    branch: e.branch,
    rule: e.rule,
    target: e.target,
    protected: e.protected,
    ttlSeconds: e.ttlSeconds,
    expiresAt: e.expiresAt,
    state: e.state,
    revision: e.revision,
    createdAt: e.createdAt,
    prNumber: e.prNumber,
    heldCommit: e.heldCommit,
  });
  return true;
}

export interface StateMirrorOptions {
  /** The Agent (its `change` events say which environment moved). */
  agent: EventEmitter;
  store: Store;
  api: KubeRequester;
  namespace: string;
  /** This replica's id (recorded on each run). */
  replica: string;
  /** Only environments this replica owns are written (default: all). */
  owns?: (env: string) => boolean;
  debounceMs?: number;
  maxRuns?: number;
  maxEvents?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Mirrors each owned environment's state into its ConfigMap, a moment after it changes. */
export class StateMirror {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly writing = new Map<string, Promise<void>>();
  private readonly onChange = (e: { env?: string | null }) => {
    if (e.env) this.schedule(e.env);
  };
  private stopped = false;

  constructor(private readonly opts: StateMirrorOptions) {}

  start(): void {
    this.opts.agent.on("change", this.onChange);
  }

  /** Stops listening and writes what is pending. */
  async stop(): Promise<void> {
    this.opts.agent.off("change", this.onChange);
    const pending = [...this.timers.keys()];
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled(pending.map((env) => this.flush(env)));
    await Promise.allSettled([...this.writing.values()]);
    this.stopped = true;
  }

  private schedule(env: string): void {
    if (this.stopped || this.timers.has(env)) return;
    const t = setTimeout(() => {
      this.timers.delete(env);
      void this.flush(env).catch((e) =>
        this.opts.log?.("writing environment state failed", { env, error: errorMessage(e) }),
      );
    }, this.opts.debounceMs ?? 1000);
    t.unref();
    this.timers.set(env, t);
  }

  /** Writes `env`'s snapshot now (one write at a time per environment). */
  async flush(env: string): Promise<void> {
    const prev = this.writing.get(env) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => this.write(env));
    this.writing.set(env, next);
    try {
      await next;
    } finally {
      if (this.writing.get(env) === next) this.writing.delete(env);
    }
  }

  private async write(env: string): Promise<void> {
    if (this.opts.owns && !this.opts.owns(env)) return;
    const { store, api, namespace, replica } = this.opts;
    const maxRuns = this.opts.maxRuns ?? 20;
    const old = await readEnvironmentState(api, namespace, env);
    const own: RunSummary[] = store
      .listRuns({ env, limit: maxRuns })
      .map(({ stages: _s, ...r }) => ({ ...r, replica }));
    // Runs other replicas recorded stay; one they left running was cut short by their end.
    const inherited = (old?.runs ?? [])
      .filter((r) => r.replica !== replica)
      .map((r) => (r.result === "running" ? { ...r, result: "interrupted" as RunRecord["result"] } : r));
    const runs = [...own, ...inherited].sort((a, b) => (a.startedAt < b.startedAt ? 1 : -1));
    const ownEvents = store.listEvents({ env, limit: this.opts.maxEvents ?? 50 }).reverse();
    const events = [
      ...ownEvents,
      ...(old?.events ?? []).filter((e) => !ownEvents.some((o) => o.at === e.at && o.message === e.message)),
    ]
      .sort((a, b) => (a.at < b.at ? 1 : -1))
      .slice(0, this.opts.maxEvents ?? 50);
    const snap: EnvironmentSnapshot = {
      env,
      writtenBy: replica,
      writtenAt: new Date().toISOString(),
      environment: store.getEnvironment(env) ?? old?.environment ?? null,
      units: store.listUnitStatus(env),
      runs: runs.slice(0, maxRuns),
      events,
    };
    let text = JSON.stringify(snap);
    while (text.length > MAX_BYTES && (snap.events.length > 0 || snap.runs.length > 1)) {
      if (snap.events.length > 0) snap.events.pop();
      else snap.runs.pop();
      text = JSON.stringify(snap);
    }
    const cm = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: stateConfigMapName(env),
        namespace,
        labels: { [LABEL_STATE]: "environment", "sluice.dev/env": env, "app.kubernetes.io/name": "sluice" },
      },
      data: { "snapshot.json": text },
    };
    const res = await api.request(
      "PATCH",
      `${cmPath(namespace, stateConfigMapName(env))}?fieldManager=sluice-state&force=true`,
      { body: cm, contentType: "application/apply-patch+yaml" },
    );
    if (res.status >= 300) throw apiError(res, `writing the state of ${env}`);
  }
}
