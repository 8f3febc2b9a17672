/**
 * Two real agents (child processes, local podman target, each its own state directory) share a
 * handful of branch environments through Membership on a real kube-apiserver. One is killed
 * (SIGKILL, its whole process group) in the middle of an apply; the other takes its environments
 * over and converges them: every environment Ready, exactly one pod each, no run of one
 * environment overlapping a run of the other agent.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { openStore, type RunRecord } from "../src/store/index.js";
import { eventually, type Harness, harness } from "./support/agent.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

const run = promisify(execFile);
const NS = "sluice-agents";
const LEASE_MS = 4000;
const BRANCHES = ["env/a", "env/b", "env/c", "env/d", "env/e", "env/f"];
const ENVS = BRANCHES.map((b) => `sh-env-${b.slice(4)}`);

/** A web app that becomes ready only after 6 s, so an apply (which waits for health) is slow. */
const APP = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: localhost/sluice/busybox:latest
          command: ["sh", "-c", "sleep 6; mkdir -p /www && echo \${ENV} > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 18690, targetPort: 8080}]
`;

const CONFIG = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: "env/*", name: "sh-{{branch.slug}}"}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./web
  interval: 1h
  retryInterval: 2s
  prune: true
  timeout: 90s
`;

let cp: ControlPlane;
let h: Harness;
const children: ChildProcess[] = [];

async function podsOf(env: string): Promise<{ Name: string; Status: string }[]> {
  const { stdout } = await run("podman", [
    "pod",
    "ps",
    "--format",
    "json",
    "--filter",
    `label=sluice.dev/env=${env}`,
  ]);
  return JSON.parse(stdout || "[]");
}

function startReplica(id: string): { proc: ChildProcess; state: string; lines: string[] } {
  const state = join(h.dir, `state-${id}`);
  mkdirSync(join(state, "config"), { recursive: true });
  writeFileSync(join(state, "config", "sluice.yaml"), CONFIG.replaceAll("GIT_URL", h.server.repoUrl("app")));
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "support", "cluster-replica.ts"),
      state,
      id,
      cp.kubeconfigPath,
      NS,
      String(LEASE_MS),
    ],
    { stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  children.push(proc);
  const lines: string[] = [];
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => lines.push(...d.split("\n").filter(Boolean)));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => lines.push(`stderr: ${d}`));
  return { proc, state, lines };
}

function killGroup(p: ChildProcess): void {
  try {
    if (p.pid !== undefined) process.kill(-p.pid, "SIGKILL");
  } catch {
    // gone
  }
}

function runsOf(state: string): RunRecord[] {
  const s = openStore(state, { readOnly: true });
  try {
    return s.listRuns({ limit: 1000 });
  } finally {
    s.close();
  }
}

before(async () => {
  cp = await startControlPlane();
  const { KubeApi, kubeconfigConnection } = await import("../src/cluster/index.js");
  const api = new KubeApi(kubeconfigConnection(cp.kubeconfigPath));
  const r = await api.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } });
  api.close();
  assert.ok(r.status < 300, `namespace: ${r.status}`);
  h = await harness("app", { "web/app.yaml": APP });
  for (const b of BRANCHES) {
    await h.git("checkout", "-q", "-b", b, "origin/main");
    await h.git("push", "-q", "origin", b);
  }
});

after(async () => {
  for (const c of children) killGroup(c);
  for (const env of ENVS) {
    const pods = await podsOf(env).catch(() => []);
    for (const p of pods) await run("podman", ["pod", "rm", "-f", "-t", "0", p.Name]).catch(() => {});
  }
  await h?.server.stop();
  if (h) rmSync(h.dir, { recursive: true, force: true });
  await cp?.stop();
});

test("killing the replica that is applying: the other converges its environments, nothing duplicated", async (t) => {
  const a = startReplica("agent-a");
  const b = startReplica("agent-b");
  const explain = () => ({ a: a.lines.slice(-5), b: b.lines.slice(-5) });
  // Wait until agent-a is in the middle of an apply: a run `running` and its pod created, not ready.
  let victim = "";
  await eventually(
    async () => {
      const running = runsOf(a.state).filter((r) => r.result === "running");
      for (const r of running) {
        const pods = await podsOf(r.env);
        if (pods.length > 0) {
          victim = r.env;
          return true;
        }
      }
      return false;
    },
    "agent-a to be applying",
    90_000,
    explain,
  );
  const aEnvs = [...new Set(runsOf(a.state).map((r) => r.env))];
  const killedAt = Date.now();
  killGroup(a.proc);
  t.diagnostic(`killed agent-a while applying ${victim}; it had started ${aEnvs.join(", ")}`);

  // agent-b owns everything once a's Lease expires, and converges every environment.
  await eventually(
    () => {
      const s = openStore(b.state, { readOnly: true });
      try {
        return ENVS.every((e) => s.getUnitStatus(e, "web")?.ready === "True");
      } finally {
        s.close();
      }
    },
    "agent-b to converge every environment",
    150_000,
    explain,
  );
  const bRuns = runsOf(b.state);
  const takeover = Math.min(
    ...bRuns.filter((r) => r.env === victim).map((r) => Date.parse(r.startedAt) - killedAt),
  );
  t.diagnostic(`agent-b started ${victim} ${takeover} ms after the kill (lease ${LEASE_MS} ms)`);

  // Nothing duplicated: exactly one pod per environment, running.
  for (const env of ENVS) {
    const pods = await podsOf(env);
    assert.equal(pods.length, 1, `${env}: ${JSON.stringify(pods)}`);
    assert.equal(pods[0]!.Status, "Running", `${env}: ${pods[0]!.Status}`);
  }
  // Never two agents on one environment: a's runs (the killed one ends at the kill) end before b's start.
  const aRuns = runsOf(a.state);
  for (const env of ENVS) {
    const aEnd = Math.max(
      0,
      ...aRuns.filter((r) => r.env === env).map((r) => (r.endedAt ? Date.parse(r.endedAt) : killedAt)),
    );
    const bStart = Math.min(
      Infinity,
      ...bRuns.filter((r) => r.env === env).map((r) => Date.parse(r.startedAt)),
    );
    if (aEnd > 0 && bStart < Infinity)
      assert.ok(aEnd <= bStart, `${env}: agent-a ran until ${aEnd}, agent-b started ${bStart}`);
  }
  assert.ok(aEnvs.includes(victim));
  assert.ok(bRuns.some((r) => r.env === victim && r.result === "succeeded"));

  // Run summaries survived agent-a: each environment's state ConfigMap, written by its owner.
  const { KubeApi, kubeconfigConnection, readEnvironmentState } = await import("../src/cluster/index.js");
  const api = new KubeApi(kubeconfigConnection(cp.kubeconfigPath));
  try {
    const snap = await eventually(
      async () => {
        const s = await readEnvironmentState(api, NS, victim);
        return s?.writtenBy === "agent-b" &&
          s.runs.some((r) => r.replica === "agent-b" && r.result === "succeeded")
          ? s
          : undefined;
      },
      `the state of ${victim} written by agent-b`,
      30_000,
    );
    const fromA = snap.runs.filter((r) => r.replica === "agent-a");
    t.diagnostic(`state of ${victim}: ${snap.runs.map((r) => `${r.replica}:${r.result}`).join(", ")}`);
    assert.ok(fromA.length > 0, "agent-a's runs are kept");
    assert.ok(
      fromA.every((r) => r.result !== "running"),
      "a run agent-a left running shows as interrupted",
    );
    assert.equal(snap.environment?.name, victim);
    for (const env of ENVS) assert.ok(await readEnvironmentState(api, NS, env), `state of ${env}`);
  } finally {
    api.close();
  }
});
