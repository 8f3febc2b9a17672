/**
 * Pure functions from (rendered objects, rollout state) to the objects a target applies, and to
 * the local proxy's traffic policy. Both targets get the same shape:
 *
 * - the Deployment `web` becomes two slots, `web-blue` and `web-green`: its selector and template
 *   labels gain `rollouts.sluice.dev/slot`; a slot that is neither stable, candidate nor standby
 *   is scaled to 0 (kept, so switching back and forth never recreates objects);
 * - the Service `web` keeps its ports and selects the stable slot (blue/green on Kubernetes: this
 *   selector *is* the switch); while adopting, it keeps its own selector so the old pods serve on;
 * - blue/green adds a preview Service (`web-preview`) selecting the candidate slot (else stable);
 * - canary and A/B add `web-stable` and `web-canary` Services and, on Kubernetes, a Gateway API
 *   HTTPRoute (gateway.networking.k8s.io/v1) whose backendRefs carry the weights or the
 *   header/cookie matches; its parents are the `gatewayRefs`, else the Service itself (GAMMA).
 *
 * On the local target the split is made by the service proxy from `localTraffic(state)`, set
 * directly on the proxy (instant, no apply), so no HTTPRoute is sent there.
 */
import { createHash } from "node:crypto";
import type { RolloutSpec } from "../config/index.js";
import { type KubeObject, objectKey, SluiceError, subject } from "../core/index.js";
import type { TrafficPolicy, TrafficRule } from "../targets/local/index.js";
import type { RolloutObject, RolloutState, Slot, Strategy } from "./types.js";

export const LABEL_SLOT = "rollouts.sluice.dev/slot";
export const LABEL_ROLLOUT = "rollouts.sluice.dev/rollout";
export const ANNOTATION_HASH = "rollouts.sluice.dev/template-hash";
export const GATEWAY_API = "gateway.networking.k8s.io/v1";

export type TargetKind = "local" | "kubernetes";

export function strategyOf(spec: RolloutSpec): Strategy {
  if (spec.strategy.blueGreen) return "blueGreen";
  if (spec.strategy.canary) return "canary";
  return "abTest";
}

export function otherSlot(s: Slot): Slot {
  return s === "blue" ? "green" : "blue";
}

function stableStringify(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
    .join(",")}}`;
}

export function sameObjects(a: KubeObject[], b: KubeObject[]): boolean {
  return stableStringify(a) === stableStringify(b);
}

/** The version of a Deployment: a hash of its pod template. */
export function templateHash(d: KubeObject): string {
  const t = (d.spec as { template?: unknown } | undefined)?.template ?? {};
  return createHash("sha256").update(stableStringify(t)).digest("hex").slice(0, 10);
}

export function nsOf(o: { metadata: { namespace?: string } } | { namespace: string | undefined }): string {
  const ns = "metadata" in o ? o.metadata.namespace : o.namespace;
  return ns || "default";
}

function find(objects: KubeObject[], kind: string, ns: string, name: string): KubeObject | undefined {
  return objects.find(
    (o) =>
      o.kind === kind &&
      o.metadata.name === name &&
      nsOf(o) === ns &&
      (kind === "Deployment" ? o.apiVersion === "apps/v1" : o.apiVersion === "v1"),
  );
}

export function workloadOf(objects: KubeObject[], r: RolloutObject): KubeObject | undefined {
  return find(objects, "Deployment", nsOf(r), r.spec.workloadRef.name);
}

export function serviceOf(objects: KubeObject[], r: RolloutObject): KubeObject | undefined {
  return find(objects, "Service", nsOf(r), r.spec.service.name);
}

interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  nodePort?: number;
  appProtocol?: string;
}

function portsOf(svc: KubeObject): ServicePort[] {
  return ((svc.spec as { ports?: ServicePort[] } | undefined)?.ports ?? []).map((p) => ({ ...p }));
}

function selectorOf(svc: KubeObject): Record<string, string> {
  return { ...((svc.spec as { selector?: Record<string, string> } | undefined)?.selector ?? {}) };
}

/** The Service port number the rollout shifts (given by number or by port name). */
export function rolloutPort(spec: RolloutSpec, svc: KubeObject): number | undefined {
  const want = spec.service.port;
  const ports = portsOf(svc);
  const p =
    typeof want === "number" || /^\d+$/.test(want)
      ? ports.find((x) => Number(x.port) === Number(want))
      : ports.find((x) => x.name === want);
  return p ? Number(p.port) : undefined;
}

/**
 * Checks a Rollout against the rendered objects before anything changes; returns its Deployment
 * and Service. Errors are BuildFailed (a manifest problem), naming the Rollout.
 */
export function checkRollout(
  r: RolloutObject,
  objects: KubeObject[],
  smokeTests: { name: string; namespace: string | undefined }[],
): { deployment: KubeObject; service: KubeObject } {
  const who = `Rollout/${nsOf(r)}/${r.name}`;
  const bad = (what: string, hint?: string) =>
    new SluiceError("BuildFailed", `${who}: ${what}`, hint ? { hint } : {});
  const deployment = workloadOf(objects, r);
  if (!deployment)
    throw bad(
      `spec.workloadRef: Deployment ${nsOf(r)}/${r.spec.workloadRef.name} is not rendered with it`,
      "a Rollout sits next to its Deployment and Service, in the same unit and namespace",
    );
  const service = serviceOf(objects, r);
  if (!service) throw bad(`spec.service: Service ${nsOf(r)}/${r.spec.service.name} is not rendered with it`);
  if (rolloutPort(r.spec, service) === undefined)
    throw bad(`spec.service.port: Service ${r.spec.service.name} has no port ${r.spec.service.port}`);
  const sel = selectorOf(service);
  const tmplLabels =
    (deployment.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)
      ?.template?.metadata?.labels ?? {};
  if (Object.keys(sel).length === 0 || !Object.entries(sel).every(([k, v]) => tmplLabels[k] === v))
    throw bad(
      `Service ${r.spec.service.name} does not select the pods of Deployment ${r.spec.workloadRef.name}`,
      "the Service's selector must match the Deployment's template labels",
    );
  if (r.spec.smokeTest && !smokeTests.some((s) => s.name === r.spec.smokeTest && nsOf(s) === nsOf(r)))
    throw bad(`spec.smokeTest: SmokeTest ${r.spec.smokeTest} is not rendered with it`);
  const names = serviceNames(r.spec);
  for (const n of [names.preview, names.stable, names.canary]) {
    if (n && find(objects, "Service", nsOf(r), n))
      throw bad(`the Service ${n} it creates is already defined in the manifests`, "rename or remove it");
  }
  return { deployment, service };
}

/** Names of the Services a rollout uses. */
export function serviceNames(spec: RolloutSpec): {
  main: string;
  preview?: string;
  stable?: string;
  canary?: string;
} {
  const main = spec.service.name;
  if (spec.strategy.blueGreen)
    return { main, preview: spec.strategy.blueGreen.previewService ?? `${main}-preview` };
  return { main, stable: `${main}-stable`, canary: `${main}-canary` };
}

/** The Service a candidate is checked through (preview, or canary). */
export function candidateServiceName(spec: RolloutSpec): string {
  const n = serviceNames(spec);
  return (n.preview ?? n.canary)!;
}

export function slotName(deployment: string, slot: Slot): string {
  return `${deployment}-${slot}`;
}

function withLabels(
  labels: Record<string, string> | undefined,
  extra: Record<string, string>,
): Record<string, string> {
  return { ...(labels ?? {}), ...extra };
}

/** The slot's Deployment: the recorded version under the slot's name and labels. */
export function slotDeployment(st: RolloutState, slot: Slot): KubeObject | undefined {
  const rec = st.slots[slot];
  if (!rec) return undefined;
  const d = structuredClone(rec.deployment);
  const spec = (d.spec ?? {}) as {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> };
    template?: { metadata?: { labels?: Record<string, string> } };
  };
  const active = slot === st.stable.slot || slot === st.candidate?.slot || slot === st.standby?.slot;
  d.metadata = {
    ...d.metadata,
    name: slotName(d.metadata.name, slot),
    labels: withLabels(d.metadata.labels, { [LABEL_ROLLOUT]: st.name, [LABEL_SLOT]: slot }),
    annotations: withLabels(d.metadata.annotations, { [ANNOTATION_HASH]: rec.hash }),
  };
  spec.selector = { ...(spec.selector ?? {}) };
  spec.selector.matchLabels = withLabels(spec.selector.matchLabels, { [LABEL_SLOT]: slot });
  spec.template = { ...(spec.template ?? {}) };
  spec.template.metadata = { ...(spec.template.metadata ?? {}) };
  spec.template.metadata.labels = withLabels(spec.template.metadata.labels, { [LABEL_SLOT]: slot });
  if (!active) spec.replicas = 0;
  d.spec = spec;
  return d;
}

/** A copy of the rollout's Service selecting one slot, as a plain ClusterIP Service. */
function slotService(st: RolloutState, name: string, slot: Slot): KubeObject {
  const svc = structuredClone(st.service);
  const spec = { ...((svc.spec ?? {}) as Record<string, unknown>) };
  for (const k of [
    "clusterIP",
    "clusterIPs",
    "externalIPs",
    "externalName",
    "externalTrafficPolicy",
    "healthCheckNodePort",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "loadBalancerClass",
    "allocateLoadBalancerNodePorts",
  ])
    delete spec[k];
  spec.type = "ClusterIP";
  spec.ports = portsOf(st.service).map(({ nodePort: _n, ...p }) => p);
  spec.selector = { ...selectorOf(st.service), [LABEL_SLOT]: slot };
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name,
      ...(svc.metadata.namespace ? { namespace: svc.metadata.namespace } : {}),
      labels: withLabels(svc.metadata.labels, { [LABEL_ROLLOUT]: st.name, [LABEL_SLOT]: slot }),
    },
    spec,
  };
}

/** The rollout's Service: selects the stable slot (its own selector while adopting). */
function mainService(st: RolloutState): KubeObject {
  const svc = structuredClone(st.service);
  if (!st.adopting) {
    svc.spec = {
      ...(svc.spec as object),
      selector: { ...selectorOf(st.service), [LABEL_SLOT]: st.stable.slot },
    };
  }
  svc.metadata = { ...svc.metadata, labels: withLabels(svc.metadata.labels, { [LABEL_ROLLOUT]: st.name }) };
  return svc;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The Gateway API route of a canary or A/B rollout (Kubernetes). */
export function httpRoute(st: RolloutState): KubeObject | undefined {
  const spec = st.spec;
  if (spec.strategy.blueGreen) return undefined;
  const names = serviceNames(spec);
  const port = rolloutPort(spec, st.service)!;
  const parentRefs = spec.gatewayRefs?.length
    ? spec.gatewayRefs.map((g) => ({
        group: "gateway.networking.k8s.io",
        kind: "Gateway",
        name: g.name,
        ...(g.namespace ? { namespace: g.namespace } : {}),
        ...(g.sectionName ? { sectionName: g.sectionName } : {}),
      }))
    : [{ group: "", kind: "Service", name: names.main, port }];
  const c = st.candidate;
  const stableRef = (weight?: number) => ({
    group: "",
    kind: "Service",
    name: names.stable!,
    port,
    ...(weight === undefined ? {} : { weight }),
  });
  const canaryRef = (weight?: number) => ({
    group: "",
    kind: "Service",
    name: names.canary!,
    port,
    ...(weight === undefined ? {} : { weight }),
  });
  let rules: unknown[];
  if (spec.strategy.abTest && c?.verified) {
    const matches = spec.strategy.abTest.match.map((m) =>
      m.header
        ? { headers: [{ type: "Exact", name: m.header.name, value: m.header.value }] }
        : {
            headers: [
              {
                type: "RegularExpression",
                name: "Cookie",
                value: `(^|;\\s*)${escapeRegex(m.cookie!.name)}=${escapeRegex(m.cookie!.value)}(;|$)`,
              },
            ],
          },
    );
    rules = [{ matches, backendRefs: [canaryRef(1)] }, { backendRefs: [stableRef(1)] }];
  } else {
    const w = spec.strategy.canary && c ? c.weight : 0;
    rules = [{ backendRefs: [stableRef(100 - w), canaryRef(w)] }];
  }
  return {
    apiVersion: GATEWAY_API,
    kind: "HTTPRoute",
    metadata: {
      name: st.name,
      ...(st.service.metadata.namespace ? { namespace: st.service.metadata.namespace } : {}),
      labels: { [LABEL_ROLLOUT]: st.name },
    },
    spec: { parentRefs, rules },
  };
}

/** The objects that carry a rollout's traffic decisions: its Services and (Kubernetes) HTTPRoute. */
export function trafficObjects(st: RolloutState, kind: TargetKind): KubeObject[] {
  const names = serviceNames(st.spec);
  const next = st.candidate?.slot ?? st.stable.slot;
  const out = [mainService(st)];
  if (names.preview) out.push(slotService(st, names.preview, next));
  if (names.stable) out.push(slotService(st, names.stable, st.stable.slot));
  if (names.canary) out.push(slotService(st, names.canary, next));
  if (kind === "kubernetes") {
    const route = httpRoute(st);
    if (route) out.push(route);
  }
  return out;
}

/** ConfigMaps (by name) a Deployment's pod template reads. */
export function configMapsOf(d: KubeObject): string[] {
  const ps = ((d.spec as { template?: { spec?: Record<string, unknown> } } | undefined)?.template?.spec ??
    {}) as {
    containers?: {
      env?: { valueFrom?: { configMapKeyRef?: { name?: string } } }[];
      envFrom?: { configMapRef?: { name?: string } }[];
    }[];
    initContainers?: unknown[];
    volumes?: {
      configMap?: { name?: string };
      projected?: { sources?: { configMap?: { name?: string } }[] };
    }[];
  };
  const out = new Set<string>();
  const containers = [...(ps.containers ?? []), ...((ps.initContainers ?? []) as typeof ps.containers & [])];
  for (const c of containers ?? []) {
    for (const e of c.env ?? [])
      if (e.valueFrom?.configMapKeyRef?.name) out.add(e.valueFrom.configMapKeyRef.name);
    for (const e of c.envFrom ?? []) if (e.configMapRef?.name) out.add(e.configMapRef.name);
  }
  for (const v of ps.volumes ?? []) {
    if (v.configMap?.name) out.add(v.configMap.name);
    for (const s of v.projected?.sources ?? []) if (s.configMap?.name) out.add(s.configMap.name);
  }
  return [...out].sort();
}

/** The rendered ConfigMaps a Deployment reads (to record with its slot). */
export function renderedConfigMaps(objects: KubeObject[], d: KubeObject): KubeObject[] {
  const ns = nsOf(d);
  return configMapsOf(d)
    .map((n) => find(objects, "ConfigMap", ns, n))
    .filter((o): o is KubeObject => !!o)
    .map((o) => structuredClone(o));
}

/**
 * The whole desired set of a unit: the rendered objects with each rollout's Deployment and
 * Service replaced by its slots, Services (and HTTPRoute on Kubernetes), plus recorded ConfigMaps
 * a running slot still reads but the render dropped.
 */
export function rolloutObjects(
  rendered: KubeObject[],
  states: RolloutState[],
  kind: TargetKind,
): KubeObject[] {
  const replaced = new Set<string>();
  const added: KubeObject[] = [];
  for (const st of states) {
    const ns = nsOf(st);
    const deployName = (st.slots[st.stable.slot] ?? Object.values(st.slots)[0])!.deployment.metadata.name;
    const original = find(rendered, "Deployment", ns, deployName);
    // While adopting, the Deployment's own pods serve on until the stable slot is ready.
    if (original && !st.adopting?.keepOriginal) replaced.add(objectKey(original));
    const svc = find(rendered, "Service", ns, st.spec.service.name);
    if (svc) replaced.add(objectKey(svc));
    for (const slot of ["blue", "green"] as const) {
      const d = slotDeployment(st, slot);
      if (d) added.push(d);
    }
    added.push(...trafficObjects(st, kind));
  }
  const out = rendered.filter((o) => !replaced.has(objectKey(o)));
  const have = new Set(out.map((o) => objectKey(o)));
  for (const o of added) {
    if (have.has(objectKey(o)))
      throw new SluiceError(
        "BuildFailed",
        `${subject(o)}, which a Rollout creates, is also in the manifests`,
        {
          hint: "rename or remove it",
        },
      );
    have.add(objectKey(o));
    out.push(o);
  }
  // ConfigMaps a running slot reads that the render no longer has (generator names change per version).
  for (const st of states) {
    for (const slot of [st.stable.slot, st.candidate?.slot, st.standby?.slot]) {
      const rec = slot ? st.slots[slot] : undefined;
      for (const cm of rec?.configMaps ?? []) {
        if (have.has(objectKey(cm))) continue;
        have.add(objectKey(cm));
        out.push(structuredClone(cm));
      }
    }
  }
  return out;
}

/**
 * The Kubernetes objects of one rollout in its current state: its slot Deployments, Services and
 * HTTPRoute (canary, A/B), with the rest of the rendered objects passed through.
 */
export function kubernetesObjects(
  rollout: RolloutObject,
  rendered: KubeObject[],
  state: RolloutState,
): KubeObject[] {
  if (state.name !== rollout.name || nsOf(state) !== nsOf(rollout))
    throw new SluiceError("Internal", `state of Rollout ${state.name} given for Rollout ${rollout.name}`);
  return rolloutObjects(rendered, [state], "kubernetes");
}

/** The local proxy's policy for the rollout's Service in this state. */
export function localTraffic(st: RolloutState): TrafficPolicy {
  const base = selectorOf(st.service);
  const http = st.spec.service.protocol !== "TCP";
  // Only the rollout's port is spoken HTTP on; the Service's other ports split per connection.
  const mode = http
    ? { protocol: "http" as const, httpPort: rolloutPort(st.spec, st.service)! }
    : { protocol: "tcp" as const };
  const of = (slot: Slot) => ({ ...base, [LABEL_SLOT]: slot });
  if (st.adopting) return { ...mode, rules: [{ backends: [{ selector: base, weight: 1 }] }] };
  const stable = { selector: of(st.stable.slot), weight: 100 };
  const c = st.candidate;
  if (c && st.spec.strategy.canary && c.weight > 0)
    return {
      ...mode,
      rules: [
        {
          backends: [
            { selector: of(st.stable.slot), weight: 100 - c.weight },
            { selector: of(c.slot), weight: c.weight },
          ],
        },
      ],
    };
  if (c && st.spec.strategy.abTest && c.verified) {
    const rule: TrafficRule = {
      matches: st.spec.strategy.abTest.match.map((m) =>
        m.header ? { headers: [{ ...m.header }] } : { cookies: [{ ...m.cookie! }] },
      ),
      backends: [{ selector: of(c.slot), weight: 100 }],
    };
    return { ...mode, rules: [rule, { backends: [stable] }] };
  }
  return { ...mode, rules: [{ backends: [stable] }] };
}
