import { createTwoFilesPatch } from "diff";
import { stringify as toYaml } from "yaml";
import { type KubeObject, type ObjectRef, objectKey, refOf, SluiceError, subject } from "../../core/index.js";
import type { ChangeEntry, ChangeSet, Inventory } from "../../plan/index.js";
import { staleRefs } from "../../plan/index.js";
import {
  type ApplyOptions,
  type ApplyResult,
  type HealthReport,
  isWorse,
  LABEL_ENV,
  LABEL_OWNER,
  LABEL_UNIT,
  type ObjectHealth,
  ownerOf,
  type Target,
  type UnitId,
} from "../types.js";
import { apiError, KubeClient, type KubeResponse, type ResourceInfo, statusMessage } from "./client.js";
import { assess } from "./health.js";

export interface KubernetesTargetOptions {
  kubeconfig: string;
  context?: string;
  /** Server-side apply field manager; `sluice` by default. */
  fieldManager?: string;
  /** Where inventories live; `sluice-system` by default. */
  inventoryNamespace?: string;
}

export const ANNOTATION_WAVE = "sluice.dev/wave";
export const PRUNE_ANNOTATIONS = ["kustomize.toolkit.fluxcd.io/prune", "sluice.dev/prune"];

type Dict = Record<string, unknown>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kinds applied early, in this order, after CRDs and Namespaces (as Flux/Helm order them). */
const KIND_ORDER = [
  "ResourceQuota",
  "LimitRange",
  "PriorityClass",
  "ServiceAccount",
  "Secret",
  "ConfigMap",
  "StorageClass",
  "PersistentVolume",
  "PersistentVolumeClaim",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "Service",
  "DaemonSet",
  "Pod",
  "ReplicaSet",
  "Deployment",
  "StatefulSet",
  "Job",
  "CronJob",
  "Ingress",
];

function phase(kind: string): number {
  return kind === "CustomResourceDefinition" ? 0 : kind === "Namespace" ? 1 : 2;
}

function wave(o: KubeObject): number {
  const w = Number(o.metadata.annotations?.[ANNOTATION_WAVE] ?? 0);
  return Number.isFinite(w) ? w : 0;
}

function kindRank(kind: string): number {
  const i = KIND_ORDER.indexOf(kind);
  return i < 0 ? KIND_ORDER.length : i;
}

/** Apply order: CRDs, Namespaces, then by wave annotation, kind order, and input order. */
export function applyOrder(objects: readonly KubeObject[]): KubeObject[] {
  return objects
    .map((o, i) => ({ o, i }))
    .sort(
      (a, b) =>
        phase(a.o.kind) - phase(b.o.kind) ||
        wave(a.o) - wave(b.o) ||
        kindRank(a.o.kind) - kindRank(b.o.kind) ||
        a.i - b.i,
    )
    .map((x) => x.o);
}

/** `sluice-inv-<env>.<unit>`, made a valid object name. */
export function inventoryName(u: UnitId): string {
  const raw = `sluice-inv-${ownerOf(u)}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .slice(0, 253);
  return raw.replace(/[^a-z0-9]+$/, "");
}

/** Drops server-managed fields so a live object and a dry-run result can be compared and diffed. */
function comparable(o: Dict): Dict {
  const c = structuredClone(o);
  const md = (c.metadata ?? {}) as Dict;
  for (const k of [
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
  ]) {
    delete md[k];
  }
  const ann = md.annotations as Record<string, string> | undefined;
  if (ann) {
    delete ann["kubectl.kubernetes.io/last-applied-configuration"];
    if (Object.keys(ann).length === 0) delete md.annotations;
  }
  delete c.status;
  return c;
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, val) =>
    val && typeof val === "object" && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Dict).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : val,
  );
}

/** Secret values replaced: `***` before, `***` or `*** (changed)` after. Never a value. */
function maskPair(before: Dict | undefined, after: Dict): [Dict | undefined, Dict] {
  if (after.kind !== "Secret") return [before, after];
  const b = before ? structuredClone(before) : undefined;
  const a = structuredClone(after);
  for (const field of ["data", "stringData"]) {
    const bv = (b?.[field] ?? {}) as Record<string, unknown>;
    const av = (a[field] ?? {}) as Record<string, unknown>;
    for (const k of Object.keys(av))
      av[k] = k in bv && bv[k] === av[k] ? "***" : k in bv ? "*** (changed)" : "***";
    for (const k of Object.keys(bv)) bv[k] = "***";
  }
  return [b, a];
}

function diffOf(subj: string, before: Dict | undefined, after: Dict): string {
  const [b, a] = maskPair(before ? comparable(before) : undefined, comparable(after));
  return createTwoFilesPatch(
    `live/${subj}`,
    `desired/${subj}`,
    b ? toYaml(b) : "",
    toYaml(a),
    undefined,
    undefined,
    {
      context: 3,
    },
  );
}

/** Every secret value of a Secret (raw and decoded), to scrub from API error messages. */
function secretValues(o: KubeObject): string[] {
  if (o.kind !== "Secret") return [];
  const out: string[] = [];
  for (const field of ["data", "stringData"]) {
    for (const v of Object.values((o[field] ?? {}) as Record<string, unknown>)) {
      if (typeof v !== "string") continue;
      out.push(v);
      if (field === "data") out.push(Buffer.from(v, "base64").toString("utf8"));
    }
  }
  return out.filter((v) => v.length >= 3).sort((x, y) => y.length - x.length);
}

function scrub(message: string, o: KubeObject): string {
  let m = message;
  for (const v of secretValues(o)) m = m.split(v).join("***");
  return m;
}

function isImmutable(res: KubeResponse): boolean {
  return (
    res.status === 422 && /immutable|may not change once set|cannot be changed/i.test(statusMessage(res))
  );
}

function pruneDisabled(live: Dict): string | undefined {
  const ann = ((live.metadata as Dict)?.annotations ?? {}) as Record<string, string>;
  for (const a of PRUNE_ANNOTATIONS) if (ann[a] === "disabled") return `annotated ${a}: disabled`;
  return undefined;
}

interface Prepared {
  obj: KubeObject;
  info: ResourceInfo;
  /** The CRD that defines it is in this same apply: discovery must wait for it. */
  fromDesiredCrd: boolean;
}

interface Decision {
  entry: ChangeEntry;
  recreate: boolean;
}

export class KubernetesTarget implements Target {
  readonly kind = "kubernetes" as const;
  private readonly client: KubeClient;
  private readonly fieldManager: string;
  private readonly invNamespace: string;

  constructor(opts: KubernetesTargetOptions) {
    this.client = new KubeClient(opts.kubeconfig, opts.context);
    this.fieldManager = opts.fieldManager ?? "sluice";
    this.invNamespace = opts.inventoryNamespace ?? "sluice-system";
  }

  /** Fails early with a clear error when the API server cannot be reached or refuses us. */
  async connect(): Promise<void> {
    const res = await this.client.request("GET", "/version");
    if (res.status !== 200) throw apiError(res, `connecting to Kubernetes API ${this.client.server}`);
  }

  async close(): Promise<void> {
    this.client.close();
  }

  // ---- preparing objects ----

  private label(u: UnitId, o: KubeObject): KubeObject {
    const c = structuredClone(o);
    c.metadata.labels = {
      ...(c.metadata.labels ?? {}),
      [LABEL_ENV]: u.env,
      [LABEL_UNIT]: u.unit,
      [LABEL_OWNER]: ownerOf(u),
    };
    return c;
  }

  /** Resolves every object's resource (from discovery, or from a CRD in the same set), labels it, sets namespaces. */
  private async prepare(u: UnitId, desired: readonly KubeObject[]): Promise<Prepared[]> {
    const crds = new Map<string, ResourceInfo>();
    for (const o of desired) {
      if (o.kind !== "CustomResourceDefinition") continue;
      const spec = (o.spec ?? {}) as Dict;
      const names = (spec.names ?? {}) as Dict;
      for (const v of (spec.versions ?? []) as Dict[]) {
        crds.set(`${String(spec.group)}/${String(v.name)}|${String(names.kind)}`, {
          plural: String(names.plural),
          namespaced: spec.scope !== "Cluster",
        });
      }
    }
    const out: Prepared[] = [];
    const seen = new Set<string>();
    for (const o of applyOrder(desired)) {
      let info = await this.client.resource(o.apiVersion, o.kind);
      let fromDesiredCrd = false;
      if (!info) {
        info = crds.get(`${o.apiVersion}|${o.kind}`);
        fromDesiredCrd = info !== undefined;
      }
      if (!info) {
        throw new SluiceError(
          "ReconciliationFailed",
          `${subject(o)} apply failed: the cluster has no resource of kind ${o.kind} in ${o.apiVersion}`,
          {
            hint: "install its CustomResourceDefinition (in this unit or a dependency) or fix the apiVersion",
          },
        );
      }
      const obj = this.label(u, o);
      if (info.namespaced && !obj.metadata.namespace) obj.metadata.namespace = this.client.defaultNamespace;
      if (!info.namespaced) delete obj.metadata.namespace;
      const key = objectKey(obj);
      if (seen.has(key)) {
        throw new SluiceError("ReconciliationFailed", `${subject(obj)} appears twice in the desired objects`);
      }
      seen.add(key);
      out.push({ obj, info, fromDesiredCrd });
    }
    return out;
  }

  private async pathOf(p: Prepared): Promise<string> {
    if (p.fromDesiredCrd) {
      const info = await this.client.resource(p.obj.apiVersion, p.obj.kind, 30_000);
      if (!info) {
        throw new SluiceError(
          "ReconciliationFailed",
          `${subject(p.obj)} apply failed: kind ${p.obj.kind} not served by the API 30s after its CRD was applied`,
        );
      }
      p.info = info;
      p.fromDesiredCrd = false;
    }
    return this.client.path(p.obj.apiVersion, p.info, p.obj.metadata.namespace, p.obj.metadata.name);
  }

  private applyQuery(dryRun: boolean): string {
    return `?fieldManager=${encodeURIComponent(this.fieldManager)}&force=true${dryRun ? "&dryRun=All" : ""}`;
  }

  private fail(o: KubeObject, res: KubeResponse, verb = "apply"): SluiceError {
    const e = apiError(res, `${subject(o)} ${verb}`);
    return new SluiceError(e.code, scrub(e.message, o), { detail: { ...e.detail, subject: subject(o) } });
  }

  private async get(path: string, o: KubeObject | ObjectRef): Promise<Dict | undefined> {
    const res = await this.client.request("GET", path);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw apiError(res, `reading ${subject(o)}`);
    return res.body as Dict;
  }

  /** Dry-run the object and compare with the live one. */
  private async decide(
    p: Prepared,
    path: string,
    force: boolean,
    plan: boolean,
    names: Set<string>,
  ): Promise<Decision> {
    const o = p.obj;
    const ref = refOf(o);
    const subj = subject(o);
    const live = await this.get(path, o);
    const dry = await this.client.request("PATCH", path + this.applyQuery(true), {
      body: o,
      contentType: "application/apply-patch+yaml",
    });
    if (isImmutable(dry)) {
      const msg = scrub(statusMessage(dry), o);
      if (!force) {
        throw new SluiceError(
          "ReconciliationFailed",
          `${subj} apply failed: an immutable field changed: ${msg}`,
          {
            detail: { subject: subj },
            hint: "set force: true on the unit to delete and recreate the object",
          },
        );
      }
      return {
        entry: { subject: subj, ref, action: "configured", reason: "recreated: an immutable field changed" },
        recreate: true,
      };
    }
    if (
      dry.status === 404 &&
      plan &&
      o.metadata.namespace &&
      names.has(`Namespace/${o.metadata.namespace}`)
    ) {
      return {
        entry: { subject: subj, ref, action: "created", diff: diffOf(subj, undefined, o) },
        recreate: false,
      };
    }
    if (dry.status < 200 || dry.status >= 300) throw this.fail(o, dry);
    const after = dry.body as Dict;
    if (!live) {
      return {
        entry: { subject: subj, ref, action: "created", diff: diffOf(subj, undefined, after) },
        recreate: false,
      };
    }
    if (canonical(comparable(live)) === canonical(comparable(after))) {
      return { entry: { subject: subj, ref, action: "unchanged" }, recreate: false };
    }
    return {
      entry: { subject: subj, ref, action: "configured", diff: diffOf(subj, live, after) },
      recreate: false,
    };
  }

  private async waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline)
        throw new SluiceError("ReconciliationFailed", `timed out waiting for ${what}`);
      await sleep(150);
    }
  }

  private async applyOne(p: Prepared, path: string, d: Decision): Promise<void> {
    const o = p.obj;
    if (d.recreate) {
      const del = await this.client.request("DELETE", `${path}?propagationPolicy=Background`);
      if (del.status !== 200 && del.status !== 202 && del.status !== 404)
        throw this.fail(o, del, "delete for recreate");
      await this.waitFor(
        `${subject(o)} to be deleted before recreating it`,
        60_000,
        async () => !(await this.get(path, o)),
      );
    }
    const res = await this.client.request("PATCH", path + this.applyQuery(false), {
      body: o,
      contentType: "application/apply-patch+yaml",
    });
    if (res.status < 200 || res.status >= 300) throw this.fail(o, res);
    if (o.kind === "CustomResourceDefinition") {
      await this.waitFor(`CRD ${o.metadata.name} to be established`, 30_000, async () => {
        const live = await this.get(path, o);
        return assess(live).status === "Healthy";
      });
    } else if (o.kind === "Namespace") {
      await this.waitFor(`Namespace ${o.metadata.name} to be active`, 30_000, async () => {
        const live = await this.get(path, o);
        return (live?.status as Dict | undefined)?.phase === "Active";
      });
    }
  }

  // ---- inventory ----

  private invPath(u: UnitId, withName = true): string {
    const base = `/api/v1/namespaces/${this.invNamespace}/configmaps`;
    return withName ? `${base}/${inventoryName(u)}` : base;
  }

  async inventory(u: UnitId): Promise<Inventory | undefined> {
    const res = await this.client.request("GET", this.invPath(u));
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw apiError(res, `reading the inventory of ${ownerOf(u)}`);
    const raw = res.body?.data?.entries;
    try {
      const entries = JSON.parse(typeof raw === "string" ? raw : "[]") as ObjectRef[];
      return { entries };
    } catch (e) {
      throw new SluiceError(
        "ReconciliationFailed",
        `inventory ConfigMap ${this.invNamespace}/${inventoryName(u)} is corrupt`,
        {
          cause: e,
          hint: "delete it and re-apply the unit (prune will not run until it is rebuilt)",
        },
      );
    }
  }

  private async writeInventory(u: UnitId, inv: Inventory): Promise<void> {
    const nsPath = `/api/v1/namespaces/${this.invNamespace}`;
    const ns = await this.client.request("GET", nsPath);
    if (ns.status === 404) {
      const res = await this.client.request("PATCH", nsPath + this.applyQuery(false), {
        body: { apiVersion: "v1", kind: "Namespace", metadata: { name: this.invNamespace } },
        contentType: "application/apply-patch+yaml",
      });
      if (res.status >= 300) throw apiError(res, `creating namespace ${this.invNamespace} for inventories`);
    }
    const cm = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: inventoryName(u),
        namespace: this.invNamespace,
        labels: {
          [LABEL_ENV]: u.env,
          [LABEL_UNIT]: u.unit,
          [LABEL_OWNER]: ownerOf(u),
          "sluice.dev/inventory": "true",
        },
      },
      data: { entries: JSON.stringify(inv.entries) },
    };
    const res = await this.client.request("PATCH", this.invPath(u) + this.applyQuery(false), {
      body: cm,
      contentType: "application/apply-patch+yaml",
    });
    if (res.status >= 300) throw apiError(res, `writing the inventory of ${ownerOf(u)}`);
  }

  // ---- the contract ----

  async plan(u: UnitId, desired: KubeObject[]): Promise<ChangeSet> {
    const prepared = await this.prepare(u, desired);
    const names = new Set(prepared.map((p) => subject(p.obj)));
    const entries: ChangeEntry[] = [];
    for (const p of prepared) {
      if (p.fromDesiredCrd && !(await this.client.resource(p.obj.apiVersion, p.obj.kind))) {
        entries.push({
          subject: subject(p.obj),
          ref: refOf(p.obj),
          action: "created",
          diff: diffOf(subject(p.obj), undefined, p.obj),
        });
        continue;
      }
      const path = await this.pathOf(p);
      entries.push((await this.decide(p, path, true, true, names)).entry);
    }
    const prev = await this.inventory(u);
    for (const ref of staleRefs(
      prev,
      prepared.map((p) => refOf(p.obj)),
    ).reverse()) {
      entries.push({
        subject: subject(ref),
        ref,
        action: "deleted",
        reason: "no longer desired (with prune)",
      });
    }
    return { entries };
  }

  async apply(u: UnitId, desired: KubeObject[], opts: ApplyOptions): Promise<ApplyResult> {
    const prepared = await this.prepare(u, desired);
    const desiredRefs = prepared.map((p) => refOf(p.obj));
    const prev = await this.inventory(u);
    const stale = staleRefs(prev, desiredRefs);
    // Record what we are about to create before creating it, so an interrupted apply leaves nothing untracked.
    const union: Inventory = { entries: [...desiredRefs, ...stale] };
    if (!prev || canonical(prev.entries) !== canonical(union.entries)) await this.writeInventory(u, union);

    const entries: ChangeEntry[] = [];
    const names = new Set(prepared.map((p) => subject(p.obj)));
    for (const p of prepared) {
      const path = await this.pathOf(p);
      const d = await this.decide(p, path, opts.force === true, false, names);
      if (d.entry.action !== "unchanged") await this.applyOne(p, path, d);
      entries.push(d.entry);
    }

    let kept = stale;
    if (opts.prune) {
      const pruned = await this.deleteRefs(u, stale);
      entries.push(...pruned);
      kept = [];
    }
    const inventory: Inventory = { entries: [...desiredRefs, ...kept] };
    if (canonical(inventory.entries) !== canonical(union.entries)) await this.writeInventory(u, inventory);

    const result: ApplyResult = { changeSet: { entries }, inventory };
    if (opts.wait) result.health = await this.waitHealthy(u, desiredRefs, opts.timeoutMs);
    return result;
  }

  private async waitHealthy(u: UnitId, refs: ObjectRef[], timeoutMs: number): Promise<HealthReport> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const report = await this.health(u, refs);
      if (report.status === "Healthy") return report;
      const bad = report.objects.filter((o) => o.status !== "Healthy");
      const why = bad.map((o) => `${o.subject}: ${o.status}: ${o.message}`).join("; ");
      if (report.status === "Degraded" || Date.now() > deadline) {
        throw new SluiceError(
          "HealthCheckFailed",
          `${ownerOf(u)} is not healthy${report.status === "Degraded" ? "" : ` after ${timeoutMs}ms`}: ${why}`,
          { detail: { health: report } },
        );
      }
      await sleep(500);
    }
  }

  /** Deletes refs in reverse apply order; never objects another owner claims or prune-disabled ones. */
  private async deleteRefs(u: UnitId, refs: ObjectRef[]): Promise<ChangeEntry[]> {
    const asObjects = refs.map(
      (r) => ({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name } }) as KubeObject,
    );
    const order = applyOrder(asObjects)
      .map((o) => refs[asObjects.indexOf(o)]!)
      .reverse();
    const out: ChangeEntry[] = [];
    for (const ref of order) {
      const subj = subject(ref);
      const info = await this.client.resource(ref.apiVersion, ref.kind);
      if (!info) continue; // its type is gone, so is it
      const path = this.client.path(ref.apiVersion, info, ref.namespace, ref.name);
      const live = await this.get(path, ref);
      if (!live) continue;
      const labels = ((live.metadata as Dict).labels ?? {}) as Record<string, string>;
      if (labels[LABEL_OWNER] !== ownerOf(u)) {
        out.push({
          subject: subj,
          ref,
          action: "skipped",
          reason: `not owned by ${ownerOf(u)} (label ${LABEL_OWNER})`,
        });
        continue;
      }
      const disabled = pruneDisabled(live);
      if (disabled) {
        out.push({ subject: subj, ref, action: "skipped", reason: disabled });
        continue;
      }
      const res = await this.client.request("DELETE", `${path}?propagationPolicy=Background`);
      if (res.status === 404) continue;
      if (res.status !== 200 && res.status !== 202) {
        const e = apiError(res, `${subj} delete`);
        throw new SluiceError("PruneFailed", e.message, { detail: e.detail });
      }
      out.push({ subject: subj, ref, action: "deleted" });
    }
    return out;
  }

  async health(_u: UnitId, refs: ObjectRef[]): Promise<HealthReport> {
    const objects: ObjectHealth[] = [];
    let worst: HealthReport["status"] = "Healthy";
    for (const ref of refs) {
      const info = await this.client.resource(ref.apiVersion, ref.kind);
      const live = info
        ? await this.get(this.client.path(ref.apiVersion, info, ref.namespace, ref.name), ref)
        : undefined;
      const a = assess(live);
      objects.push({ subject: subject(ref), status: a.status, message: a.message });
      if (isWorse(a.status, worst)) worst = a.status;
    }
    return { status: worst, objects };
  }

  async destroy(u: UnitId): Promise<ChangeSet> {
    const inv = await this.inventory(u);
    if (!inv) return { entries: [] };
    const entries = await this.deleteRefs(u, inv.entries);
    const res = await this.client.request("DELETE", this.invPath(u));
    if (res.status !== 200 && res.status !== 404)
      throw apiError(res, `deleting the inventory of ${ownerOf(u)}`);
    return { entries };
  }
}
