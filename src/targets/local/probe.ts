/**
 * Readiness, checked by Sluice itself (podman 4.3 ignores readiness probes): httpGet and tcpSocket
 * against the pod's port published on 127.0.0.1, exec through `podman exec`. A pod without a
 * readiness probe is ready once its containers run and, when it declares TCP ports, the first of
 * them accepts a connection (so the service proxy never sends traffic to a process still starting).
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { ObservedContainer, ObservedPod, Podman } from "./podman.js";
import { LABEL_CONTAINER, LABEL_PORTS, LABEL_READINESS, type ReadinessSpec } from "./translate.js";

export interface ProbeState {
  ready: boolean;
  successes: number;
  failures: number;
  lastCheck: number;
  /** Why the pod is not ready (a sentence), when it is not. */
  reason?: string;
}

/** If a pod without probes never accepts on its declared port, call it ready after this long. */
const IMPLICIT_TCP_GRACE_MS = 10_000;

export function hostPortOf(pod: ObservedPod, containerPort: number, protocol = "TCP"): number | undefined {
  for (const c of pod.containers) {
    for (const p of c.ports) {
      if (p.containerPort === containerPort && p.protocol === protocol) return p.hostPort;
    }
  }
  return undefined;
}

/** `name:port/PROTO,…` from the pod's label. */
export function declaredPorts(pod: ObservedPod): { name: string; containerPort: number; protocol: string }[] {
  const raw = pod.labels[LABEL_PORTS] ?? "";
  return raw
    .split(",")
    .filter(Boolean)
    .map((s) => {
      const m = /^([^:]*):(\d+)\/(\w+)$/.exec(s);
      return m
        ? { name: m[1] ?? "", containerPort: Number(m[2]), protocol: (m[3] ?? "TCP").toUpperCase() }
        : undefined;
    })
    .filter((x): x is { name: string; containerPort: number; protocol: string } => !!x);
}

export function readinessSpecs(pod: ObservedPod): ReadinessSpec[] {
  const raw = pod.labels[LABEL_READINESS];
  if (!raw) return [];
  try {
    const v = JSON.parse(raw) as ReadinessSpec[];
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

export function containersRunning(pod: ObservedPod, expected: string[]): boolean {
  if (expected.length === 0) return false;
  return expected.every((n) => containerNamed(pod, n)?.state === "running");
}

export function containerNamed(pod: ObservedPod, name: string): ObservedContainer | undefined {
  return pod.containers.find((c) => c.labels[LABEL_CONTAINER] === name);
}

/** One readiness check of a pod; updates and returns `state`. */
export async function probePod(
  podman: Podman,
  pod: ObservedPod,
  expected: string[],
  state: ProbeState | undefined,
  now = Date.now(),
): Promise<ProbeState> {
  const st: ProbeState = state ?? { ready: false, successes: 0, failures: 0, lastCheck: 0 };
  st.lastCheck = now;
  if (!containersRunning(pod, expected)) {
    st.ready = false;
    st.successes = 0;
    st.reason = "its containers are not all running";
    return st;
  }
  const specs = readinessSpecs(pod);
  const started = Math.max(...pod.containers.map((c) => c.startedAt * 1000), 0);
  if (specs.length === 0) {
    const first = declaredPorts(pod).find((p) => p.protocol === "TCP");
    if (!first) return pass(st, 1);
    const hp = hostPortOf(pod, first.containerPort);
    const ok = hp !== undefined && (await tcpCheck(hp, 1000));
    if (ok || now - started > IMPLICIT_TCP_GRACE_MS) return pass(st, 1);
    return fail(st, Number.POSITIVE_INFINITY, `port ${first.containerPort} does not accept connections yet`);
  }
  let allOk = true;
  let reason = "";
  let successThreshold = 1;
  let failureThreshold = 3;
  for (const s of specs) {
    successThreshold = Math.max(successThreshold, s.successThreshold);
    failureThreshold = Math.min(failureThreshold, s.failureThreshold);
    if (now - started < s.initialDelaySeconds * 1000) {
      allOk = false;
      reason = `readiness probe of ${s.container} waits ${s.initialDelaySeconds}s after start`;
      continue;
    }
    const r = await runProbe(podman, pod, s);
    if (!r.ok) {
      allOk = false;
      reason = `readiness probe of ${s.container} failed: ${r.why}`;
    }
  }
  // Before the pod was first ready, a failure keeps it unready at once; after, failureThreshold applies.
  return allOk ? pass(st, successThreshold) : fail(st, st.ready ? failureThreshold : 1, reason);
}

function pass(st: ProbeState, threshold: number): ProbeState {
  st.successes++;
  st.failures = 0;
  if (st.successes >= threshold) {
    st.ready = true;
    delete st.reason;
  }
  return st;
}

function fail(st: ProbeState, threshold: number, reason: string): ProbeState {
  st.failures++;
  st.successes = 0;
  if (st.failures >= threshold || !st.ready) {
    st.ready = false;
    st.reason = reason;
  }
  return st;
}

export async function runProbe(
  podman: Podman,
  pod: ObservedPod,
  s: ReadinessSpec,
): Promise<{ ok: boolean; why: string }> {
  const timeoutMs = Math.max(200, s.timeoutSeconds * 1000);
  if (s.type === "exec") {
    const ctr = containerNamed(pod, s.container);
    if (!ctr) return { ok: false, why: `container ${s.container} is missing` };
    try {
      await podman.run(["exec", ctr.id, ...(s.command ?? [])], { timeoutMs });
      return { ok: true, why: "" };
    } catch {
      return { ok: false, why: `command ${JSON.stringify(s.command ?? [])} failed` };
    }
  }
  if (s.port === undefined) return { ok: false, why: "its port is not a declared container port" };
  const hp = hostPortOf(pod, s.port);
  if (hp === undefined) return { ok: false, why: `port ${s.port} is not published` };
  if (s.type === "tcp") {
    return (await tcpCheck(hp, timeoutMs))
      ? { ok: true, why: "" }
      : { ok: false, why: `port ${s.port} refused the connection` };
  }
  const status = await httpCheck(s.scheme === "https", hp, s.path ?? "/", s.headers ?? [], timeoutMs);
  if (status >= 200 && status < 400) return { ok: true, why: "" };
  return {
    ok: false,
    why:
      status === 0
        ? `GET ${s.path} on port ${s.port} got no answer`
        : `GET ${s.path} on port ${s.port} answered ${status}`,
  };
}

export function tcpCheck(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

function httpCheck(
  tls: boolean,
  port: number,
  path: string,
  headers: [string, string][],
  timeoutMs: number,
): Promise<number> {
  return new Promise((resolve) => {
    const mod = tls ? https : http;
    const req = mod.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "GET",
        headers: Object.fromEntries(headers),
        timeout: timeoutMs,
        agent: false,
        rejectUnauthorized: false,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
    req.end();
  });
}
