import { createHash } from "node:crypto";
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
import {
  apiError,
  KubeClient,
  type KubeClientOptions,
  type KubeResponse,
  type ResourceInfo,
  statusMessage,
} from "./client.js";
import { ownedFieldsEqual } from "./compare.js";
import { assess } from "./health.js";

export interface KubernetesTargetOptions {
  /** Path of the kubeconfig (also named in errors when `kubeconfigData` is given). */
  kubeconfig: string;
  /**
   * The kubeconfig's YAML itself, e.g. from the Secret of Flux's `kubeConfig.secretRef` (see
   * `kubeconfigFromSecret`): a remote cluster. `kubeconfig` then only names it in messages.
   */
  kubeconfigData?: string;
  context?: string;
  /** Server-side apply field manager; `sluice` by default. */
  fieldManager?: string;
  /** Where inventories live; `sluice-system` by default. */
  inventoryNamespace?: string;
  /** Requests in flight at once while applying, listing and reading health; 8 by default. */
  concurrency?: number;
  /**
   * Act as this service account (`namespace/name`, Flux's `serviceAccountName`): every request
   * about the unit's objects (read, dry-run, apply, prune, health) carries `Impersonate-User:
   * system:serviceaccount:<namespace>:<name>`, so the cluster's RBAC decides what the unit may
   * change. The inventory ConfigMap is Sluice's own bookkeeping: read and written as the
   * kubeconfig's user (as Flux keeps its inventory in the Kustomization's status).
   */
  serviceAccount?: string;
}

export const ANNOTATION_WAVE = "sluice.dev/wave";
export const PRUNE_ANNOTATIONS = ["kustomize.toolkit.fluxcd.io/prune", "sluice.dev/prune"];
/** On the desired or the live object: never written (nor created); drift is reported, not corrected. */
export const RECONCILE_ANNOTATIONS = ["kustomize.toolkit.fluxcd.io/reconcile", "sluice.dev/reconcile"];

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

/** Objects of one step may be applied concurrently; steps run one after the other. */
function stepOf(o: KubeObject): string {
  return `${phase(o.kind)}|${wave(o)}|${kindRank(o.kind)}`;
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

const ok = (res: KubeResponse) => res.status >= 200 && res.status < 300;

function annotated(o: Dict | undefined, keys: readonly string[]): string | undefined {
  const ann = ((o?.metadata as Dict | undefined)?.annotations ?? {}) as Record<string, unknown>;
  for (const a of keys) if (ann[a] === "disabled") return `${a}: disabled`;
  return undefined;
}

function pruneDisabled(live: Dict): string | undefined {
  const a = annotated(live, PRUNE_ANNOTATIONS);
  return a ? `annotated ${a}` : undefined;
}

/** The desired object without the reconcile-disabled annotations (never applied, so never compared). */
function withoutReconcileAnnotations(o: KubeObject): KubeObject {
  const ann = o.metadata.annotations;
  if (!ann || !RECONCILE_ANNOTATIONS.some((a) => a in ann)) return o;
  const c = structuredClone(o);
  for (const a of RECONCILE_ANNOTATIONS) delete c.metadata.annotations?.[a];
  if (c.metadata.annotations && Object.keys(c.metadata.annotations).length === 0)
    delete c.metadata.annotations;
  return c;
}

/** One field another manager holds, from a 409 of a server-side apply. */
export interface FieldConflict {
  field: string;
  manager: string;
  /** `Apply` (someone else declares this field) or `Update` (an imperative edit: kubectl edit/patch/scale). */
  operation: string;
}

function conflictsOf(res: KubeResponse, live: Dict | undefined): FieldConflict[] {
  const causes = (res.body?.details?.causes ?? []) as Array<{
    reason?: string;
    message?: string;
    field?: string;
  }>;
  const entries = ((live?.metadata as Dict | undefined)?.managedFields ?? []) as Dict[];
  const out: FieldConflict[] = [];
  for (const c of causes) {
    if (c.reason !== "FieldManagerConflict") continue;
    const manager = /conflict with "((?:[^"\\]|\\.)*)"/.exec(c.message ?? "")?.[1] ?? "unknown";
    const ops = new Set(entries.filter((e) => e.manager === manager).map((e) => String(e.operation)));
    // Without the live object: the API names the version of Update managers ("… using v1").
    const operation = ops.has("Apply")
      ? "Apply"
      : ops.size > 0
        ? [...ops][0]!
        : / using /.test(c.message ?? "")
          ? "Update"
          : "Apply";
    out.push({ field: c.field ?? "?", manager, operation });
  }
  return out;
}

/** Runs `fn` over `items`, `n` at a time; stops starting new ones at the first failure and rethrows it. */
async function pool<T>(
  n: number,
  items: readonly T[],
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { e: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (e) {
        failure ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failure) throw failure.e;
}

interface Prepared {
  obj: KubeObject;
  info: ResourceInfo;
  /** The CRD that defines it is in this same apply: discovery must wait for it. */
  fromDesiredCrd: boolean;
}

/** The live object as read (from the owner-labelled LIST, or a GET), missing, or not read at all. */
type Live = Dict | "missing" | "unread";

interface Decision {
  entry: ChangeEntry;
  /** Write it: server-side apply (with `force=true` to take over fields), after deleting it when `recreate`. */
  write?: { force: boolean; recreate: boolean };
  live?: Dict;
}

interface Run {
  force: boolean;
  plan: boolean;
  /** Subjects of the desired objects (a Namespace created by this very apply). */
  names: Set<string>;
}

export class KubernetesTarget implements Target {
  readonly kind = "kubernetes" as const;
  /** For the unit's objects (impersonating the service account, if any). */
  private readonly client: KubeClient;
  /** For the inventory: the kubeconfig's own user. */
  private readonly admin: KubeClient;
  private readonly fieldManager: string;
  private readonly invNamespace: string;
  private readonly concurrency: number;
  /**
   * What the API server answered last for an object: the desired object's hash and the live
   * resourceVersion at which applying it was known to change nothing. A live object still at that
   * resourceVersion needs no dry-run (for values the local check cannot decide, like quantities).
   */
  private readonly known = new Map<string, { hash: string; rv: string }>();

  constructor(opts: KubernetesTargetOptions) {
    const base: KubeClientOptions =
      opts.kubeconfigData === undefined ? {} : { kubeconfigData: opts.kubeconfigData };
    this.admin = new KubeClient(opts.kubeconfig, opts.context, base);
    this.client = opts.serviceAccount
      ? new KubeClient(opts.kubeconfig, opts.context, {
          ...base,
          impersonate: serviceAccountUser(opts.serviceAccount),
        })
      : this.admin;
    this.fieldManager = opts.fieldManager ?? "sluice";
    this.invNamespace = opts.inventoryNamespace ?? "sluice-system";
    this.concurrency = Math.max(1, opts.concurrency ?? 8);
  }

  /** Fails early with a clear error when the API server cannot be reached or refuses us. */
  async connect(): Promise<void> {
    const res = await this.admin.request("GET", "/version");
    if (res.status !== 200) throw apiError(res, `connecting to Kubernetes API ${this.client.server}`);
  }

  async close(): Promise<void> {
    this.client.close();
    if (this.admin !== this.client) this.admin.close();
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

  // ---- reading ----

  private async get(path: string, o: KubeObject | ObjectRef): Promise<Dict | undefined> {
    const res = await this.client.request("GET", path);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw apiError(res, `${subject(o)} read`);
    return res.body as Dict;
  }

  /** Every object of one resource (in one namespace) matching `selector`, page by page. */
  private async list(
    apiVersion: string,
    kind: string,
    info: ResourceInfo,
    namespace: string | undefined,
    selector: string,
  ): Promise<Dict[] | undefined> {
    const base = this.client.path(apiVersion, info, namespace);
    const out: Dict[] = [];
    let cont = "";
    for (let page = 0; page < 10_000; page++) {
      const q = `?labelSelector=${encodeURIComponent(selector)}&limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`;
      const res = await this.client.request("GET", base + q);
      if (res.status === 404) return out; // the resource (or namespace) does not exist: nothing there
      // Allowed to read objects one by one but not to list them (an impersonated service
      // account's Role): the objects are then read one by one.
      if (res.status === 403) return undefined;
      if (res.status !== 200) throw apiError(res, `listing ${kind} in ${namespace ?? "the cluster"}`);
      for (const item of (res.body?.items ?? []) as Dict[]) {
        // List items carry no apiVersion/kind.
        item.apiVersion = apiVersion;
        item.kind = kind;
        out.push(item);
      }
      cont = res.body?.metadata?.continue ?? "";
      if (!cont) return out;
    }
    return out;
  }

  /**
   * The unit's live objects, by objectKey: one LIST per resource and namespace, selected by the
   * `sluice.dev/owner` label (an object without it is read on its own when needed).
   */
  private async listOwned(
    u: UnitId,
    refs: ReadonlyArray<{
      apiVersion: string;
      kind: string;
      namespace?: string | undefined;
      info: ResourceInfo;
    }>,
  ): Promise<Map<string, Dict>> {
    const groups = new Map<string, (typeof refs)[number]>();
    for (const r of refs) {
      const ns = r.info.namespaced ? r.namespace : undefined;
      groups.set(`${r.apiVersion}|${r.kind}|${ns ?? ""}`, { ...r, namespace: ns });
    }
    const out = new Map<string, Dict>();
    const selector = `${LABEL_OWNER}=${ownerOf(u)}`;
    await pool(this.concurrency, [...groups.values()], async (g) => {
      for (const item of (await this.list(g.apiVersion, g.kind, g.info, g.namespace, selector)) ?? []) {
        out.set(objectKey(item as unknown as KubeObject), item);
      }
    });
    return out;
  }

  // ---- writing ----

  private fail(o: KubeObject, res: KubeResponse, verb = "apply"): SluiceError {
    const e = apiError(res, `${subject(o)} ${verb}`);
    return new SluiceError(e.code, scrub(e.message, o), { detail: { ...e.detail, subject: subject(o) } });
  }

  private patch(
    path: string,
    body: KubeObject,
    dryRun: boolean,
    force: boolean,
    client = this.client,
  ): Promise<KubeResponse> {
    const q = `?fieldManager=${encodeURIComponent(this.fieldManager)}${force ? "&force=true" : ""}${dryRun ? "&dryRun=All" : ""}`;
    return client.request("PATCH", path + q, { body, contentType: "application/apply-patch+yaml" });
  }

  /**
   * Server-side apply (or its dry-run) with Sluice's conflict policy. Fields another manager took
   * by an imperative edit (operation `Update`: kubectl edit/patch/scale) are drift, taken back.
   * Fields another manager *applies* are a real conflict: an error naming each field and manager,
   * unless the unit says `force` — or, when only planning (`report`), returned with the result of
   * taking them over.
   */
  private async ssa(
    o: KubeObject,
    path: string,
    opts: { dryRun: boolean; force: boolean; live?: Dict | undefined; report?: boolean },
  ): Promise<{ res: KubeResponse; forced: boolean; conflicts?: string }> {
    const res = await this.patch(path, o, opts.dryRun, opts.force);
    if (res.status !== 409 || opts.force) return { res, forced: opts.force };
    const live = opts.live ?? (await this.get(path, o));
    const conflicts = conflictsOf(res, live);
    if (conflicts.length === 0) return { res, forced: false };
    const declared = conflicts.filter((c) => c.operation === "Apply");
    if (declared.length > 0) {
      const list = conflicts
        .map(
          (c) =>
            `${c.field} (field manager "${c.manager}", ${c.operation === "Apply" ? "server-side apply" : "edit"})`,
        )
        .join(", ");
      if (opts.report) {
        return {
          res: await this.patch(path, o, opts.dryRun, true),
          forced: true,
          conflicts: `owned by another field manager: ${list}; applying needs force: true`,
        };
      }
      throw new SluiceError(
        "Conflict",
        `${subject(o)} apply failed: ${conflicts.length === 1 ? "a field is" : `${conflicts.length} fields are`} owned by another field manager: ${list}`,
        {
          detail: { subject: subject(o), conflicts },
          hint: "set force: true on the unit to take these fields over, or stop the other manager from applying them",
        },
      );
    }
    return { res: await this.patch(path, o, opts.dryRun, true), forced: true };
  }

  private hashOf(o: KubeObject): string {
    return createHash("sha256").update(canonical(o)).digest("base64url");
  }

  private remember(o: KubeObject, live: Dict | undefined): void {
    const rv = (live?.metadata as Dict | undefined)?.resourceVersion;
    if (typeof rv !== "string") return;
    if (this.known.size > 200_000) this.known.clear();
    this.known.set(objectKey(o), { hash: this.hashOf(o), rv });
  }

  private knownUnchanged(o: KubeObject, live: Dict): boolean {
    const k = this.known.get(objectKey(o));
    return k !== undefined && k.rv === (live.metadata as Dict).resourceVersion && k.hash === this.hashOf(o);
  }

  private immutableError(o: KubeObject, res: KubeResponse): SluiceError {
    return new SluiceError(
      "ReconciliationFailed",
      `${subject(o)} apply failed: an immutable field changed: ${scrub(statusMessage(res), o)}`,
      {
        detail: { subject: subject(o) },
        hint: "set force: true on the unit to delete and recreate the object",
      },
    );
  }

  /**
   * What applying `p` would do: decided locally from the live object's managed fields when they
   * already equal the desired object (no request at all), otherwise by a server-side dry-run.
   */
  private async decide(p: Prepared, path: string, live: Live, run: Run): Promise<Decision> {
    const o = p.obj;
    const ref = refOf(o);
    const subj = subject(o);
    const disabled =
      annotated(o, RECONCILE_ANNOTATIONS) ??
      (typeof live === "object" ? annotated(live, RECONCILE_ANNOTATIONS) : undefined);

    if (live === "unread" || live === "missing") {
      if (disabled)
        return {
          entry: {
            subject: subj,
            ref,
            action: "skipped",
            reason: `not created: reconcile disabled (${disabled})`,
          },
        };
      if (!run.plan)
        return {
          entry: { subject: subj, ref, action: "created" },
          write: { force: run.force, recreate: false },
        };
      const { res } = await this.ssa(o, path, { dryRun: true, force: run.force, report: run.plan });
      if (res.status === 404 && o.metadata.namespace && run.names.has(`Namespace/${o.metadata.namespace}`)) {
        return { entry: { subject: subj, ref, action: "created", diff: diffOf(subj, undefined, o) } };
      }
      if (!ok(res)) throw this.fail(o, res);
      return {
        entry: { subject: subj, ref, action: "created", diff: diffOf(subj, undefined, res.body as Dict) },
      };
    }

    const want = disabled ? withoutReconcileAnnotations(o) : o;
    if (ownedFieldsEqual(want, live, this.fieldManager).equal || this.knownUnchanged(want, live)) {
      return { entry: { subject: subj, ref, action: "unchanged" } };
    }
    // Reconcile disabled: nothing is written, so who owns what does not matter for the drift view.
    const {
      res: dry,
      forced,
      conflicts,
    } = await this.ssa(want, path, {
      dryRun: true,
      force: run.force || disabled !== undefined,
      live,
      report: run.plan,
    });
    if (isImmutable(dry)) {
      if (disabled)
        return {
          entry: {
            subject: subj,
            ref,
            action: "skipped",
            reason: `drifted (an immutable field differs); reconcile disabled (${disabled})`,
          },
        };
      if (run.plan) {
        return {
          entry: {
            subject: subj,
            ref,
            action: "configured",
            reason: "an immutable field changed: recreated with force: true, an error without",
          },
        };
      }
      if (!run.force) throw this.immutableError(o, dry);
      return {
        entry: { subject: subj, ref, action: "configured", reason: "recreated: an immutable field changed" },
        write: { force: true, recreate: true },
        live,
      };
    }
    if (!ok(dry)) throw this.fail(o, dry);
    const after = dry.body as Dict;
    if (canonical(comparable(live)) === canonical(comparable(after))) {
      this.remember(want, live);
      return { entry: { subject: subj, ref, action: "unchanged" } };
    }
    const diff = diffOf(subj, live, after);
    if (disabled)
      return {
        entry: {
          subject: subj,
          ref,
          action: "skipped",
          reason: `drifted; reconcile disabled (${disabled})`,
          diff,
        },
      };
    return {
      entry: { subject: subj, ref, action: "configured", diff, ...(conflicts ? { reason: conflicts } : {}) },
      write: { force: forced, recreate: false },
      live,
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

  private async recreate(o: KubeObject, path: string): Promise<void> {
    const del = await this.client.request("DELETE", `${path}?propagationPolicy=Background`);
    if (del.status !== 200 && del.status !== 202 && del.status !== 404)
      throw this.fail(o, del, "delete for recreate");
    await this.waitFor(
      `${subject(o)} to be deleted before recreating it`,
      60_000,
      async () => !(await this.get(path, o)),
    );
  }

  /** Writes one object as decided; returns its entry (`created` or `configured` by the API's answer). */
  private async write(p: Prepared, path: string, d: Decision, run: Run): Promise<ChangeEntry> {
    const o = p.obj;
    const w = d.write!;
    let entry = d.entry;
    if (w.recreate) await this.recreate(o, path);
    let { res } = await this.ssa(o, path, { dryRun: false, force: w.force, live: d.live });
    if (isImmutable(res)) {
      // Only for objects written without a dry-run first (found without Sluice's labels).
      if (!run.force) throw this.immutableError(o, res);
      await this.recreate(o, path);
      ({ res } = await this.ssa(o, path, { dryRun: false, force: true }));
      entry = { ...entry, action: "configured", reason: "recreated: an immutable field changed" };
    }
    if (!ok(res)) throw this.fail(o, res);
    const applied = res.body as Dict;
    this.remember(o, applied);
    if (entry.action === "created") {
      entry =
        res.status === 201
          ? { ...entry, diff: diffOf(entry.subject, undefined, applied) }
          : {
              ...entry,
              action: "configured",
              reason: "existed without Sluice's labels; now applied by Sluice",
            };
    }
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
    return entry;
  }

  /**
   * Decides (and unless planning, writes) every prepared object, step by step (CRDs, Namespaces,
   * waves and kinds); objects of one step concurrently. Entries come back in apply order.
   */
  private async reconcileObjects(u: UnitId, prepared: Prepared[], run: Run): Promise<ChangeEntry[]> {
    const listed = await this.listOwned(
      u,
      prepared.filter((p) => !p.fromDesiredCrd).map((p) => ({ ...refOf(p.obj), info: p.info })),
    );
    const entries: ChangeEntry[] = new Array(prepared.length);
    /** Namespaces this apply created: nothing of ours can be in them yet, so nothing is read there. */
    const fresh = new Set<string>();
    let i = 0;
    while (i < prepared.length) {
      const step = stepOf(prepared[i]!.obj);
      let j = i;
      while (j < prepared.length && stepOf(prepared[j]!.obj) === step) j++;
      const start = i;
      await pool(this.concurrency, prepared.slice(i, j), async (p, k) => {
        if (run.plan && p.fromDesiredCrd && !(await this.client.resource(p.obj.apiVersion, p.obj.kind))) {
          // Its CRD is only planned: the kind is not served, nothing of it can exist.
          const subj = subject(p.obj);
          entries[start + k] = {
            subject: subj,
            ref: refOf(p.obj),
            action: "created",
            diff: diffOf(subj, undefined, p.obj),
          };
          return;
        }
        const path = await this.pathOf(p);
        let live: Live | undefined = listed.get(objectKey(p.obj));
        if (!live) {
          const ns = p.obj.metadata.namespace;
          if (!run.plan && (p.fromDesiredCrd || (ns && p.info.namespaced && fresh.has(ns)))) live = "unread";
          else live = (await this.get(path, p.obj)) ?? "missing";
        }
        const d = await this.decide(p, path, live, run);
        const entry = d.write && !run.plan ? await this.write(p, path, d, run) : d.entry;
        if (p.obj.kind === "Namespace" && entry.action === "created" && !run.plan)
          fresh.add(p.obj.metadata.name);
        entries[start + k] = entry;
      });
      i = j;
    }
    return entries;
  }

  // ---- inventory ----

  private invPath(u: UnitId, withName = true): string {
    const base = `/api/v1/namespaces/${this.invNamespace}/configmaps`;
    return withName ? `${base}/${inventoryName(u)}` : base;
  }

  async inventory(u: UnitId): Promise<Inventory | undefined> {
    const res = await this.admin.request("GET", this.invPath(u));
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
    const ns = await this.admin.request("GET", nsPath);
    if (ns.status === 404) {
      const res = await this.patch(
        nsPath,
        { apiVersion: "v1", kind: "Namespace", metadata: { name: this.invNamespace } },
        false,
        true,
        this.admin,
      );
      if (res.status >= 300) throw apiError(res, `creating namespace ${this.invNamespace} for inventories`);
    }
    const cm: KubeObject = {
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
    const res = await this.patch(this.invPath(u), cm, false, true, this.admin);
    if (res.status >= 300) throw apiError(res, `writing the inventory of ${ownerOf(u)}`);
  }

  // ---- the contract ----

  async plan(u: UnitId, desired: KubeObject[]): Promise<ChangeSet> {
    const prepared = await this.prepare(u, desired);
    const names = new Set(prepared.map((p) => subject(p.obj)));
    const entries = await this.reconcileObjects(u, prepared, { force: false, plan: true, names });
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

    const names = new Set(prepared.map((p) => subject(p.obj)));
    const entries = await this.reconcileObjects(u, prepared, {
      force: opts.force === true,
      plan: false,
      names,
    });

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

  /** Health of `refs`: read in bulk (one LIST per resource and namespace), objects not found there one by one. */
  async health(u: UnitId, refs: ObjectRef[]): Promise<HealthReport> {
    const resolved: Array<{ ref: ObjectRef; info: ResourceInfo | undefined }> = [];
    for (const ref of refs)
      resolved.push({ ref, info: await this.client.resource(ref.apiVersion, ref.kind) });
    const listed = await this.listOwned(
      u,
      resolved.flatMap((r) => (r.info ? [{ ...r.ref, info: r.info }] : [])),
    );
    const objects: ObjectHealth[] = new Array(resolved.length);
    await pool(this.concurrency, resolved, async ({ ref, info }, i) => {
      let live = listed.get(objectKey(ref));
      if (!live && info)
        live = await this.get(this.client.path(ref.apiVersion, info, ref.namespace, ref.name), ref);
      const a = assess(live);
      objects[i] = { subject: subject(ref), status: a.status, message: a.message };
    });
    let worst: HealthReport["status"] = "Healthy";
    for (const o of objects) if (isWorse(o.status, worst)) worst = o.status;
    return { status: worst, objects };
  }

  async destroy(u: UnitId): Promise<ChangeSet> {
    const inv = await this.inventory(u);
    if (!inv) return { entries: [] };
    const entries = await this.deleteRefs(u, inv.entries);
    const res = await this.admin.request("DELETE", this.invPath(u));
    if (res.status !== 200 && res.status !== 404)
      throw apiError(res, `deleting the inventory of ${ownerOf(u)}`);
    return { entries };
  }
}

/** `namespace/name` (or `system:serviceaccount:namespace:name`) → the user to impersonate. */
export function serviceAccountUser(sa: string): string {
  if (sa.startsWith("system:serviceaccount:")) return sa;
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(sa);
  if (!m) {
    throw new SluiceError("ConfigInvalid", `service account "${sa}" is not namespace/name`, {
      hint: "use the unit's namespace and serviceAccountName, e.g. apps/deployer",
    });
  }
  return `system:serviceaccount:${m[1]}:${m[3]}`;
}

/**
 * The kubeconfig held by a Secret, as Flux's `kubeConfig.secretRef` names it: key `key`, else
 * `value`, else `value.yaml`. Read with the credentials of `via` (the cluster Sluice runs
 * against); the YAML goes to `createKubernetesTarget({ kubeconfigData })`. Never logged.
 */
export async function kubeconfigFromSecret(
  via: { kubeconfig: string; context?: string },
  ref: { namespace: string; name: string; key?: string },
): Promise<string> {
  const client = new KubeClient(via.kubeconfig, via.context);
  try {
    const what = `Secret ${ref.namespace}/${ref.name}`;
    const res = await client.request(
      "GET",
      `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/secrets/${encodeURIComponent(ref.name)}`,
    );
    if (res.status === 404) {
      throw new SluiceError("NotFound", `kubeConfig.secretRef: ${what} not found`, {
        hint: "create the Secret with the remote cluster's kubeconfig under the key `value`",
      });
    }
    if (res.status !== 200) throw apiError(res, `kubeConfig.secretRef: reading ${what}`);
    const data = (res.body?.data ?? {}) as Record<string, string>;
    const key = ref.key ?? ["value", "value.yaml"].find((k) => k in data);
    if (!key || !(key in data)) {
      throw new SluiceError(
        "ConfigInvalid",
        `kubeConfig.secretRef: ${what} has no key ${ref.key ?? "value or value.yaml"} (keys: ${Object.keys(data).join(", ") || "none"})`,
      );
    }
    return Buffer.from(data[key]!, "base64").toString("utf8");
  } finally {
    client.close();
  }
}
