/**
 * Kubernetes objects → what the local target runs. Pure functions: which kinds mean something on
 * podman, the names and labels of pods (one podman pod per replica), the template hash that decides
 * whether a running pod is current, and the podman arguments for a pod and its containers.
 */
import { createHash } from "node:crypto";
import { hostname as osHostname } from "node:os";
import { type KubeObject, type ObjectRef, refOf, SluiceError, subject } from "../../core/index.js";
import { LABEL_ENV, LABEL_OWNER, LABEL_UNIT, ownerOf, type UnitId } from "../types.js";

export const LABEL_NAMESPACE = "sluice.dev/namespace";
export const LABEL_WORKLOAD = "sluice.dev/workload";
export const LABEL_HASH = "sluice.dev/template-hash";
export const LABEL_REPLICA = "sluice.dev/replica";
export const LABEL_CONTAINERS = "sluice.dev/containers";
export const LABEL_PORTS = "sluice.dev/ports";
export const LABEL_READINESS = "sluice.dev/readiness";
export const LABEL_GRACE = "sluice.dev/grace-seconds";
/** On containers only: the container's name in the pod spec. */
export const LABEL_CONTAINER = "sluice.dev/container";

/** Bumped when the translation changes in a way that must roll running pods. */
const TRANSLATION_VERSION = 1;

export type KindClass = "workload" | "config" | "service" | "namespace" | "volume" | "not-applicable";

const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet", "Pod", "DaemonSet", "ReplicaSet"]);

const NOT_APPLICABLE: Record<string, string> = {
  Ingress:
    "Ingress routing has no meaning on the local target; reach the Service at its 127.0.0.1 address instead",
  IngressClass: "ingress controllers do not run on the local target",
  NetworkPolicy: "the local target has no pod network policies",
  ServiceAccount: "the local target has no Kubernetes API for service accounts",
  Role: "RBAC has no meaning on the local target",
  RoleBinding: "RBAC has no meaning on the local target",
  ClusterRole: "RBAC has no meaning on the local target",
  ClusterRoleBinding: "RBAC has no meaning on the local target",
  PodDisruptionBudget: "the local target has no voluntary evictions to budget",
  HorizontalPodAutoscaler: "the local target does not autoscale; replicas come from the workload",
  CustomResourceDefinition: "the local target has no API server to extend",
  PriorityClass: "the local target has no scheduler",
  StorageClass: "the local target uses podman volumes",
  LimitRange: "the local target does not enforce resource policies",
  ResourceQuota: "the local target does not enforce resource policies",
  Job: "Jobs are not run by the local target yet",
  CronJob: "CronJobs are not run by the local target yet",
  Endpoints: "the local service proxy finds endpoints from pod labels itself",
  EndpointSlice: "the local service proxy finds endpoints from pod labels itself",
  MutatingWebhookConfiguration: "the local target has no admission webhooks",
  ValidatingWebhookConfiguration: "the local target has no admission webhooks",
  APIService: "the local target has no API server to extend",
  PersistentVolume: "the local target uses podman volumes for claims",
};

export function classify(o: KubeObject | ObjectRef): { cls: KindClass; reason?: string } {
  const kind = o.kind;
  const core = !("apiVersion" in o) || o.apiVersion === "v1";
  if (WORKLOAD_KINDS.has(kind) && (kind === "Pod" ? core : o.apiVersion.startsWith("apps/")))
    return { cls: "workload" };
  if ((kind === "ConfigMap" || kind === "Secret") && core) return { cls: "config" };
  if (kind === "Service" && core) {
    const spec = "metadata" in o ? ((o as KubeObject).spec as { type?: string } | undefined) : undefined;
    if (spec?.type === "ExternalName") {
      return {
        cls: "not-applicable",
        reason: "an ExternalName Service is a DNS alias, which the local target does not provide",
      };
    }
    return { cls: "service" };
  }
  if (kind === "Namespace" && core) return { cls: "namespace" };
  if (kind === "PersistentVolumeClaim" && core) return { cls: "volume" };
  const reason = NOT_APPLICABLE[kind] ?? `${kind} (${o.apiVersion}) is not a kind the local target can run`;
  return { cls: "not-applicable", reason: `not applicable on local: ${reason}` };
}

export function nsOf(o: KubeObject | ObjectRef): string {
  const ns = "metadata" in o ? (o as KubeObject).metadata.namespace : (o as ObjectRef).namespace;
  return ns || "default";
}

/** Podman names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; we keep to lowercase DNS-ish names. */
export function sanitize(s: string): string {
  const out = s
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "");
  return out || "x";
}

export function prefixOf(env: string, namespace: string): string {
  return sanitize(`${env}-${namespace}`);
}

export function stableStringify(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
    .join(",")}}`;
}

export function sha(v: unknown, len = 64): string {
  return createHash("sha256")
    .update(typeof v === "string" ? v : stableStringify(v))
    .digest("hex")
    .slice(0, len);
}

// ---------------------------------------------------------------- Kubernetes shapes (the parts we read)

export interface K8sProbe {
  httpGet?: {
    path?: string;
    port: number | string;
    scheme?: string;
    httpHeaders?: { name: string; value: string }[];
  };
  tcpSocket?: { port: number | string };
  exec?: { command?: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

interface K8sEnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    fieldRef?: { fieldPath: string };
  };
}

interface K8sContainer {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: K8sEnvVar[];
  envFrom?: {
    prefix?: string;
    configMapRef?: { name: string; optional?: boolean };
    secretRef?: { name: string; optional?: boolean };
  }[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
  readinessProbe?: K8sProbe;
  imagePullPolicy?: string;
  securityContext?: { runAsUser?: number; runAsGroup?: number; readOnlyRootFilesystem?: boolean };
}

interface K8sVolume {
  name: string;
  configMap?: {
    name: string;
    items?: { key: string; path: string }[];
    defaultMode?: number;
    optional?: boolean;
  };
  secret?: {
    secretName: string;
    items?: { key: string; path: string }[];
    defaultMode?: number;
    optional?: boolean;
  };
  emptyDir?: Record<string, unknown>;
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
  [k: string]: unknown;
}

export interface K8sPodSpec {
  containers: K8sContainer[];
  initContainers?: K8sContainer[];
  volumes?: K8sVolume[];
  restartPolicy?: string;
  terminationGracePeriodSeconds?: number;
  hostname?: string;
  [k: string]: unknown;
}

export interface PodTemplate {
  metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: K8sPodSpec;
}

// ---------------------------------------------------------------- config data (ConfigMap / Secret)

export interface ConfigData {
  kind: "ConfigMap" | "Secret";
  /** Decoded values. Secret values must never be logged. */
  data: Map<string, Buffer>;
  hash: string;
}

export function configDataOf(o: KubeObject): ConfigData {
  const data = new Map<string, Buffer>();
  const put = (src: unknown, b64: boolean) => {
    if (!src || typeof src !== "object") return;
    for (const [k, v] of Object.entries(src as Record<string, unknown>)) {
      if (typeof v !== "string") continue;
      data.set(k, b64 ? Buffer.from(v, "base64") : Buffer.from(v, "utf8"));
    }
  };
  if (o.kind === "Secret") {
    put(o.data, true);
    put(o.stringData, false);
  } else {
    put(o.data, false);
    put(o.binaryData, true);
  }
  const entries = [...data.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => [k, sha(v.toString("base64"))]);
  return { kind: o.kind as "ConfigMap" | "Secret", data, hash: sha({ kind: o.kind, entries }) };
}

/** Looks a ConfigMap or Secret up by namespace/name (the unit's own first, then others applied here). */
export type ConfigLookup = (
  kind: "ConfigMap" | "Secret",
  namespace: string,
  name: string,
) => ConfigData | undefined;

// ---------------------------------------------------------------- workloads

export type Strategy = "RollingUpdate" | "Recreate" | "Ordered";

export interface WorkloadPlan {
  ref: ObjectRef;
  subject: string;
  kind: string;
  namespace: string;
  name: string;
  replicas: number;
  strategy: Strategy;
  template: PodTemplate;
  /** Hash of the pod template and the config it reads: equal hash ⇒ the running pod is current. */
  hash: string;
  /** Named volumes per claim template (StatefulSet). */
  claimTemplates: string[];
  /** Container ports to publish on 127.0.0.1 (declared ports plus probe ports), deduplicated. */
  ports: { containerPort: number; protocol: string; name?: string }[];
  graceSeconds: number;
}

export function planWorkload(o: KubeObject, lookup: ConfigLookup): WorkloadPlan {
  const ns = nsOf(o);
  const spec = (o.spec ?? {}) as Record<string, unknown>;
  let template: PodTemplate;
  let replicas = 1;
  let strategy: Strategy = "RollingUpdate";
  let claimTemplates: string[] = [];
  if (o.kind === "Pod") {
    template = {
      metadata: { labels: o.metadata.labels, annotations: o.metadata.annotations },
      spec: spec as unknown as K8sPodSpec,
    };
    strategy = "Recreate";
  } else {
    const t = spec.template as PodTemplate | undefined;
    if (!t || typeof t !== "object" || !t.spec) {
      throw invalid(o, "has no spec.template.spec");
    }
    template = { metadata: t.metadata ?? {}, spec: t.spec };
    if (o.kind !== "DaemonSet") {
      const r = spec.replicas;
      replicas = r === undefined || r === null ? 1 : Number(r);
      if (!Number.isInteger(replicas) || replicas < 0 || replicas > 100)
        throw invalid(o, `has replicas ${String(r)}; 0 to 100 are supported locally`);
    }
    if (o.kind === "Deployment" && (spec.strategy as { type?: string } | undefined)?.type === "Recreate")
      strategy = "Recreate";
    if (o.kind === "StatefulSet") {
      strategy = "Ordered";
      claimTemplates = ((spec.volumeClaimTemplates as { metadata?: { name?: string } }[] | undefined) ?? [])
        .map((c) => c.metadata?.name ?? "")
        .filter(Boolean);
    }
  }
  const ps = template.spec;
  if (!Array.isArray(ps.containers) || ps.containers.length === 0) throw invalid(o, "has no containers");
  const names = new Set<string>();
  for (const c of [...(ps.initContainers ?? []), ...ps.containers]) {
    if (!c.name || !c.image) throw invalid(o, `has a container without a name or image`);
    if (names.has(c.name)) throw invalid(o, `has two containers named ${c.name}`);
    names.add(c.name);
  }
  for (const v of ps.volumes ?? []) {
    if (
      !v.configMap &&
      !v.secret &&
      !v.emptyDir &&
      !v.persistentVolumeClaim &&
      !claimTemplates.includes(v.name)
    ) {
      const kind = Object.keys(v).find((k) => k !== "name") ?? "unknown";
      throw invalid(
        o,
        `uses a ${kind} volume (${v.name}), which the local target does not support (configMap, secret, emptyDir and persistentVolumeClaim are)`,
      );
    }
  }
  const configs = referencedConfigs(ps).map((r) => {
    const d = lookup(r.kind, ns, r.name);
    if (!d && !r.optional) {
      throw new SluiceError(
        "ConfigInvalid",
        `${subject(o)} uses ${r.kind}/${ns}/${r.name}, which is not defined`,
        {
          detail: { subject: subject(o) },
          hint: `add the ${r.kind} to the same unit, or mark the reference optional`,
        },
      );
    }
    return [r.kind, r.name, d?.hash ?? "absent"];
  });
  const ports = publishedPorts(ps.containers);
  const graceSeconds = Math.max(0, Math.min(Number(ps.terminationGracePeriodSeconds ?? 5), 30));
  const hash = sha({ v: TRANSLATION_VERSION, kind: o.kind, template, configs, claimTemplates }, 10);
  return {
    ref: refOf(o),
    subject: subject(o),
    kind: o.kind,
    namespace: ns,
    name: o.metadata.name,
    replicas,
    strategy,
    template,
    hash,
    claimTemplates,
    ports,
    graceSeconds,
  };
}

function invalid(o: KubeObject, what: string): SluiceError {
  return new SluiceError("ConfigInvalid", `${subject(o)} ${what}`, { detail: { subject: subject(o) } });
}

function referencedConfigs(
  ps: K8sPodSpec,
): { kind: "ConfigMap" | "Secret"; name: string; optional: boolean }[] {
  const out = new Map<string, { kind: "ConfigMap" | "Secret"; name: string; optional: boolean }>();
  const add = (kind: "ConfigMap" | "Secret", name: string | undefined, optional: boolean | undefined) => {
    if (!name) return;
    const k = `${kind}/${name}`;
    const prev = out.get(k);
    out.set(k, { kind, name, optional: (prev?.optional ?? true) && !!optional });
  };
  for (const c of [...(ps.initContainers ?? []), ...ps.containers]) {
    for (const e of c.env ?? []) {
      add("ConfigMap", e.valueFrom?.configMapKeyRef?.name, e.valueFrom?.configMapKeyRef?.optional);
      add("Secret", e.valueFrom?.secretKeyRef?.name, e.valueFrom?.secretKeyRef?.optional);
    }
    for (const e of c.envFrom ?? []) {
      add("ConfigMap", e.configMapRef?.name, e.configMapRef?.optional);
      add("Secret", e.secretRef?.name, e.secretRef?.optional);
    }
  }
  for (const v of ps.volumes ?? []) {
    add("ConfigMap", v.configMap?.name, v.configMap?.optional);
    add("Secret", v.secret?.secretName, v.secret?.optional);
  }
  return [...out.values()].sort((a, b) => `${a.kind}/${a.name}`.localeCompare(`${b.kind}/${b.name}`));
}

function publishedPorts(
  containers: K8sContainer[],
): { containerPort: number; protocol: string; name?: string }[] {
  const out = new Map<string, { containerPort: number; protocol: string; name?: string }>();
  for (const c of containers) {
    for (const p of c.ports ?? []) {
      const protocol = (p.protocol ?? "TCP").toUpperCase();
      if (protocol !== "TCP" && protocol !== "UDP") continue;
      const entry: { containerPort: number; protocol: string; name?: string } = {
        containerPort: Number(p.containerPort),
        protocol,
      };
      if (p.name) entry.name = p.name;
      out.set(`${entry.containerPort}/${protocol}`, entry);
    }
  }
  for (const c of containers) {
    const probe = c.readinessProbe;
    const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
    if (typeof port === "number" && !out.has(`${port}/TCP`))
      out.set(`${port}/TCP`, { containerPort: port, protocol: "TCP" });
  }
  return [...out.values()];
}

/** Resolves a port given by number or by container-port name. */
export function resolvePort(
  port: number | string | undefined,
  ports: { containerPort: number; name?: string }[],
): number | undefined {
  if (port === undefined) return undefined;
  if (typeof port === "number") return port;
  if (/^\d+$/.test(port)) return Number(port);
  return ports.find((p) => p.name === port)?.containerPort;
}

// ---------------------------------------------------------------- readiness (stored on the pod as a label)

export interface ReadinessSpec {
  container: string;
  type: "http" | "tcp" | "exec";
  port?: number;
  path?: string;
  scheme?: string;
  headers?: [string, string][];
  command?: string[];
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

export function readinessOf(plan: WorkloadPlan): ReadinessSpec[] {
  const out: ReadinessSpec[] = [];
  for (const c of plan.template.spec.containers) {
    const p = c.readinessProbe;
    if (!p) continue;
    const common = {
      container: c.name,
      initialDelaySeconds: p.initialDelaySeconds ?? 0,
      periodSeconds: p.periodSeconds ?? 10,
      timeoutSeconds: p.timeoutSeconds ?? 1,
      successThreshold: p.successThreshold ?? 1,
      failureThreshold: p.failureThreshold ?? 3,
    };
    if (p.httpGet) {
      const spec: ReadinessSpec = {
        ...common,
        type: "http",
        path: p.httpGet.path ?? "/",
        scheme: (p.httpGet.scheme ?? "HTTP").toLowerCase(),
      };
      const port = resolvePort(p.httpGet.port, plan.ports);
      if (port !== undefined) spec.port = port;
      if (p.httpGet.httpHeaders?.length) spec.headers = p.httpGet.httpHeaders.map((h) => [h.name, h.value]);
      out.push(spec);
    } else if (p.tcpSocket) {
      const spec: ReadinessSpec = { ...common, type: "tcp" };
      const port = resolvePort(p.tcpSocket.port, plan.ports);
      if (port !== undefined) spec.port = port;
      out.push(spec);
    } else if (p.exec?.command?.length) {
      out.push({ ...common, type: "exec", command: p.exec.command });
    }
  }
  return out;
}

// ---------------------------------------------------------------- pod names, labels, podman arguments

export function podNameOf(unit: UnitId, plan: WorkloadPlan, index: number): string {
  const base = `${prefixOf(unit.env, plan.namespace)}-${sanitize(plan.name)}`;
  return plan.kind === "Pod" ? base : `${base}-${plan.hash}-${index}`;
}

export function hostnameOf(plan: WorkloadPlan, index: number): string {
  const h =
    plan.template.spec.hostname ??
    (plan.kind === "Pod"
      ? plan.name
      : plan.kind === "StatefulSet"
        ? `${plan.name}-${index}`
        : `${plan.name}-${plan.hash}-${index}`);
  return (
    sanitize(h)
      .slice(0, 63)
      .replace(/[^a-z0-9]+$/, "") || "pod"
  );
}

export function ownerLabels(unit: UnitId): Record<string, string> {
  return { [LABEL_ENV]: unit.env, [LABEL_UNIT]: unit.unit, [LABEL_OWNER]: ownerOf(unit) };
}

export function podLabels(unit: UnitId, plan: WorkloadPlan, index: number): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(plan.template.metadata.labels ?? {})) {
    if (!k.startsWith("sluice.dev/")) labels[k] = String(v);
  }
  Object.assign(labels, ownerLabels(unit), {
    [LABEL_NAMESPACE]: plan.namespace,
    [LABEL_WORKLOAD]: plan.subject,
    [LABEL_HASH]: plan.hash,
    [LABEL_REPLICA]: String(index),
    [LABEL_CONTAINERS]: plan.template.spec.containers.map((c) => c.name).join(","),
    [LABEL_PORTS]: plan.ports.map((p) => `${p.name ?? ""}:${p.containerPort}/${p.protocol}`).join(","),
    [LABEL_GRACE]: String(plan.graceSeconds),
  });
  const readiness = readinessOf(plan);
  if (readiness.length) labels[LABEL_READINESS] = JSON.stringify(readiness);
  return labels;
}

export function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
}

export interface ContainerCommand {
  name: string;
  args: string[];
  /** `KEY=value` lines for `--env-file` (may hold secret values: written 0600, deleted after use). */
  envFile: string;
}

export interface PodFiles {
  /** Writes a file for a configMap/secret volume; returns the host path of the volume directory. */
  volumeDir(volume: string): string;
  writeFile(volume: string, relPath: string, content: Buffer, mode: number): void;
}

/** The `podman create` arguments of every container of one replica (init containers first). */
export function containerCommands(
  unit: UnitId,
  plan: WorkloadPlan,
  index: number,
  podName: string,
  lookup: ConfigLookup,
  files: PodFiles,
  labels: Record<string, string>,
): ContainerCommand[] {
  const ps = plan.template.spec;
  const volumes = new Map<string, { source: string; ro: boolean; kind: string }>();
  for (const v of ps.volumes ?? []) {
    if (v.configMap || v.secret) {
      const kind = v.configMap ? "ConfigMap" : "Secret";
      const name = v.configMap?.name ?? v.secret?.secretName ?? "";
      const d = lookup(kind, plan.namespace, name);
      const dir = files.volumeDir(v.name);
      const items = v.configMap?.items ?? v.secret?.items;
      const mode = v.configMap?.defaultMode ?? v.secret?.defaultMode ?? 0o644;
      if (d) {
        if (items?.length) {
          for (const it of items) {
            const content = d.data.get(it.key);
            if (content) files.writeFile(v.name, it.path, content, mode);
          }
        } else {
          for (const [k, content] of d.data) files.writeFile(v.name, k, content, mode);
        }
      }
      volumes.set(v.name, { source: dir, ro: true, kind: "bind" });
    } else if (v.emptyDir) {
      volumes.set(v.name, { source: files.volumeDir(v.name), ro: false, kind: "bind" });
    } else if (v.persistentVolumeClaim) {
      volumes.set(v.name, {
        source: `${prefixOf(unit.env, plan.namespace)}-${sanitize(v.persistentVolumeClaim.claimName)}`,
        ro: !!v.persistentVolumeClaim.readOnly,
        kind: "volume",
      });
    }
  }
  for (const t of plan.claimTemplates) {
    if (!volumes.has(t)) {
      volumes.set(t, {
        source: `${prefixOf(unit.env, plan.namespace)}-${sanitize(t)}-${sanitize(plan.name)}-${index}`,
        ro: false,
        kind: "volume",
      });
    }
  }
  const k8sPodName = hostnameOf(plan, index);
  const restart = ps.restartPolicy === "Never" ? "no" : "on-failure:3";
  const out: ContainerCommand[] = [];
  const all = [
    ...(ps.initContainers ?? []).map((c) => ({ c, init: true })),
    ...ps.containers.map((c) => ({ c, init: false })),
  ];
  for (const { c, init } of all) {
    const env = resolveEnv(plan, c, lookup, k8sPodName, labels);
    const args = [
      "create",
      "--pod",
      podName,
      "--name",
      `${podName}-${sanitize(c.name)}`,
      ...labelArgs(labels),
    ];
    args.push("--label", `${LABEL_CONTAINER}=${c.name}`);
    args.push("--init", "--stop-timeout", String(plan.graceSeconds));
    if (init) args.push("--init-ctr", "always");
    else args.push("--restart", restart);
    const image = c.image ?? "";
    // `localhost/…` (no port) names images built on this machine: never pulled (podman would try http://localhost:80).
    const localOnly = /^localhost\//.test(image);
    args.push("--pull", c.imagePullPolicy === "Never" || localOnly ? "never" : "missing");
    if (/^(localhost|127\.0\.0\.1):\d+\//.test(image)) args.push("--tls-verify=false");
    if (c.workingDir) args.push("--workdir", c.workingDir);
    const sc = c.securityContext;
    if (sc?.runAsUser !== undefined)
      args.push(
        "--user",
        sc.runAsGroup !== undefined ? `${sc.runAsUser}:${sc.runAsGroup}` : String(sc.runAsUser),
      );
    if (sc?.readOnlyRootFilesystem) args.push("--read-only");
    const lines: string[] = [];
    for (const [k, v] of env.vars) {
      if (v.includes("\n")) {
        if (env.secret.has(k)) {
          throw new SluiceError(
            "ConfigInvalid",
            `${plan.subject}: container ${c.name} takes ${k} from a Secret value with a line break, which podman env files cannot hold`,
            {
              hint: "mount the Secret as a volume instead",
            },
          );
        }
        args.push("--env", `${k}=${v}`);
      } else lines.push(`${k}=${v}`);
    }
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.get(m.name);
      if (!v)
        throw new SluiceError(
          "ConfigInvalid",
          `${plan.subject}: container ${c.name} mounts volume ${m.name}, which the pod does not define`,
        );
      const ro = v.ro || m.readOnly;
      if (v.kind === "bind") {
        const src = m.subPath ? `${v.source}/${safeRel(m.subPath)}` : v.source;
        args.push("--volume", `${src}:${m.mountPath}${ro ? ":ro" : ""}`);
      } else {
        if (m.subPath)
          throw new SluiceError(
            "ConfigInvalid",
            `${plan.subject}: subPath on a volume claim is not supported locally`,
          );
        args.push("--volume", `${v.source}:${m.mountPath}${ro ? ":ro" : ""}`);
      }
    }
    if (c.command?.length)
      args.push("--entrypoint", JSON.stringify(c.command.map((s) => expandVars(s, env.vars))));
    args.push(image);
    for (const a of c.args ?? []) args.push(expandVars(a, env.vars));
    out.push({ name: c.name, args, envFile: lines.length ? `${lines.join("\n")}\n` : "" });
  }
  return out;
}

/** `podman pod create` arguments; `hostPorts` maps `containerPort/PROTO` to the allocated host port. */
export function podCreateArgs(
  plan: WorkloadPlan,
  index: number,
  podName: string,
  labels: Record<string, string>,
  hostPorts: Map<string, number>,
): string[] {
  const args = [
    "pod",
    "create",
    "--name",
    podName,
    "--hostname",
    hostnameOf(plan, index),
    "--infra-name",
    `${podName}-infra`,
    ...labelArgs(labels),
  ];
  for (const p of plan.ports) {
    const hp = hostPorts.get(`${p.containerPort}/${p.protocol}`);
    if (hp) args.push("--publish", `127.0.0.1:${hp}:${p.containerPort}/${p.protocol.toLowerCase()}`);
  }
  return args;
}

export function safeRel(p: string): string {
  const parts = p.split("/").filter((x) => x && x !== "." && x !== "..");
  return parts.join("/");
}

function resolveEnv(
  plan: WorkloadPlan,
  c: K8sContainer,
  lookup: ConfigLookup,
  podName: string,
  labels: Record<string, string>,
): { vars: Map<string, string>; secret: Set<string> } {
  const vars = new Map<string, string>();
  const secret = new Set<string>();
  for (const ef of c.envFrom ?? []) {
    const kind = ef.configMapRef ? "ConfigMap" : "Secret";
    const name = ef.configMapRef?.name ?? ef.secretRef?.name ?? "";
    const d = lookup(kind, plan.namespace, name);
    if (!d) continue;
    for (const [k, v] of d.data) {
      const key = `${ef.prefix ?? ""}${k}`;
      if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) continue;
      vars.set(key, v.toString("utf8"));
      if (kind === "Secret") secret.add(key);
      else secret.delete(key);
    }
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) {
      vars.set(e.name, expandVars(String(e.value), vars));
      secret.delete(e.name);
      continue;
    }
    const vf = e.valueFrom;
    if (!vf) {
      vars.set(e.name, "");
      continue;
    }
    const ref = vf.configMapKeyRef ?? vf.secretKeyRef;
    if (ref) {
      const kind = vf.configMapKeyRef ? "ConfigMap" : "Secret";
      const v = lookup(kind, plan.namespace, ref.name)?.data.get(ref.key);
      if (v === undefined) {
        if (ref.optional) continue;
        throw new SluiceError(
          "ConfigInvalid",
          `${plan.subject}: container ${c.name} reads key ${ref.key} of ${kind}/${plan.namespace}/${ref.name}, which has no such key`,
          {
            hint: "add the key, or mark the reference optional",
          },
        );
      }
      vars.set(e.name, v.toString("utf8"));
      if (kind === "Secret") secret.add(e.name);
      else secret.delete(e.name);
      continue;
    }
    if (vf.fieldRef) {
      vars.set(e.name, fieldValue(vf.fieldRef.fieldPath, plan, podName, labels));
      secret.delete(e.name);
    }
  }
  return { vars, secret };
}

function fieldValue(
  path: string,
  plan: WorkloadPlan,
  podName: string,
  labels: Record<string, string>,
): string {
  if (path === "metadata.name") return podName;
  if (path === "metadata.namespace") return plan.namespace;
  if (path === "spec.nodeName") return osHostname();
  if (path === "status.hostIP" || path === "status.podIP") return "127.0.0.1";
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m?.[2]) return (m[1] === "labels" ? labels[m[2]] : plan.template.metadata.annotations?.[m[2]]) ?? "";
  return "";
}

/** Kubernetes' `$(VAR)` expansion; `$$(VAR)` stays literal as `$(VAR)`. */
export function expandVars(s: string, vars: Map<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => {
    if (all === "$$") return "$";
    return name !== undefined && vars.has(name) ? (vars.get(name) as string) : all;
  });
}
