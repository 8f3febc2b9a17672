/**
 * Sharding across replicas on a real kube-apiserver: replicas with their own Membership and
 * in-cluster-style configuration (a service-account token of a ServiceAccount that may only touch
 * Leases, the CA file, KUBERNETES_SERVICE_HOST/PORT). A checker samples every ~20 ms that no
 * environment ever has two acting owners, and measures takeover and the share that moves.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, test } from "node:test";
import {
  inClusterConnection,
  KubeApi,
  type KubeRequester,
  type KubeResponse,
  kubeconfigConnection,
  Membership,
} from "../src/cluster/index.js";
import { sluice } from "./support/cli.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";

const NS = "sluice-shards";
const D = 5000;
const P = 250;
const R = 1000;
const ENVS = Array.from({ length: 300 }, (_, i) => `preview-${String(i).padStart(3, "0")}`);

let cp: ControlPlane;
let admin: KubeApi;
let saDir: string;

/** An API client whose connection can be cut (requests fail as if the network were gone). */
class Cuttable implements KubeRequester {
  cut = false;
  constructor(private readonly inner: KubeApi) {}
  async request(
    method: string,
    path: string,
    opts?: { body?: unknown; timeoutMs?: number },
  ): Promise<KubeResponse> {
    if (this.cut) throw new Error("connection cut");
    const r = await this.inner.request(method, path, opts);
    if (this.cut) throw new Error("connection cut");
    return r;
  }
  close(): void {
    this.inner.close();
  }
}

interface Replica {
  id: string;
  api: Cuttable;
  m: Membership;
}

function replica(id: string): Replica {
  const conn = inClusterConnection({
    env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: new URL(cp.server).port },
    serviceAccountDir: saDir,
  });
  const api = new Cuttable(new KubeApi(conn));
  const m = new Membership({
    api,
    namespace: conn.namespace,
    id,
    leaseDurationMs: D,
    renewIntervalMs: R,
    pollIntervalMs: P,
  });
  return { id, api, m };
}

async function must(res: Promise<KubeResponse>, what: string): Promise<KubeResponse> {
  const r = await res;
  if (r.status >= 300 && r.status !== 409)
    throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

before(async () => {
  cp = await startControlPlane();
  admin = new KubeApi(kubeconfigConnection(cp.kubeconfigPath));
  await must(admin.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } }), "namespace");
  await must(
    admin.request("POST", `/api/v1/namespaces/${NS}/serviceaccounts`, {
      body: { metadata: { name: "sluice" } },
    }),
    "service account",
  );
  await must(
    admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, {
      body: {
        metadata: { name: "sluice-leases" },
        rules: [
          {
            apiGroups: ["coordination.k8s.io"],
            resources: ["leases"],
            verbs: ["get", "list", "watch", "create", "update", "delete"],
          },
        ],
      },
    }),
    "role",
  );
  await must(
    admin.request("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, {
      body: {
        metadata: { name: "sluice-leases" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "sluice-leases" },
        subjects: [{ kind: "ServiceAccount", name: "sluice", namespace: NS }],
      },
    }),
    "rolebinding",
  );
  const tok = await must(
    admin.request("POST", `/api/v1/namespaces/${NS}/serviceaccounts/sluice/token`, {
      body: {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { expirationSeconds: 3600 },
      },
    }),
    "token",
  );
  saDir = mkdtempSync(join(tmpdir(), "sluice-sa-"));
  writeFileSync(join(saDir, "token"), tok.body.status.token);
  writeFileSync(join(saDir, "ca.crt"), cp.ca);
  writeFileSync(join(saDir, "namespace"), NS);
});

after(async () => {
  admin?.close();
  await cp?.stop();
  if (saDir) rmSync(saDir, { recursive: true, force: true });
});

/** Samples ownership of every environment across `replicas` every ~20 ms. */
class Checker {
  samples = 0;
  envSamples = 0;
  overlaps: string[] = [];
  zeroSamples = 0;
  /** env → acting owner at the last sample ("" when none). */
  current = new Map<string, string>();
  /** env → when it last got a (different) acting owner. */
  changedAt = new Map<string, number>();
  gapStart = new Map<string, number>();
  maxGapMs = 0;
  private timer: NodeJS.Timeout;
  constructor(readonly replicas: Replica[]) {
    this.timer = setInterval(() => this.sample(), 20);
  }
  sample(): void {
    const t = performance.now();
    this.samples++;
    for (const e of ENVS) {
      this.envSamples++;
      const owners = this.replicas.filter((r) => r.m.owns(e)).map((r) => r.id);
      if (owners.length > 1) this.overlaps.push(`${e}: ${owners.join(",")}`);
      const now = owners[0] ?? "";
      if (!now) {
        this.zeroSamples++;
        if (!this.gapStart.has(e)) this.gapStart.set(e, t);
      } else {
        const g = this.gapStart.get(e);
        if (g !== undefined) {
          this.maxGapMs = Math.max(this.maxGapMs, t - g);
          this.gapStart.delete(e);
        }
      }
      if (now && now !== this.current.get(e)) this.changedAt.set(e, t);
      this.current.set(e, now);
    }
  }
  stable(): boolean {
    return ENVS.every((e) => this.replicas.filter((r) => r.m.owns(e)).length === 1);
  }
  snapshot(): Map<string, string> {
    return new Map(ENVS.map((e) => [e, this.replicas.find((r) => r.m.owns(e))?.id ?? ""]));
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

async function until(pred: () => boolean, what: string, ms: number): Promise<number> {
  const t0 = performance.now();
  while (!pred()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

function moved(a: Map<string, string>, b: Map<string, string>): string[] {
  return ENVS.filter((e) => a.get(e) !== b.get(e));
}

test("three replicas share 300 environments: never two owners; a dead one's move within the lease; a fourth takes a quarter", async (t) => {
  const replicas = [replica("sluice-a"), replica("sluice-b"), replica("sluice-c")];
  const checker = new Checker(replicas);
  try {
    await Promise.all(replicas.map((r) => r.m.start()));
    const startMs = await until(() => checker.stable(), "three replicas to own every environment", 4 * D);
    const three = checker.snapshot();
    const shares = ["sluice-a", "sluice-b", "sluice-c"].map(
      (id) => ENVS.filter((e) => three.get(e) === id).length,
    );
    t.diagnostic(
      `3 replicas: shares ${shares.join("/")}, every environment owned ${Math.round(startMs)} ms after start`,
    );
    for (const n of shares) assert.ok(n > 60 && n < 140, `uneven share ${n}`);

    // Kill b: its connection is cut, it stays in the checker (a partitioned replica must fence itself).
    const b = replicas[1]!;
    const bEnvs = ENVS.filter((e) => three.get(e) === "sluice-b");
    const killedAt = performance.now();
    b.api.cut = true;
    await until(() => !b.m.acting(), "the cut replica to fence itself", 2 * D);
    const fencedMs = performance.now() - killedAt;
    await until(
      () => bEnvs.every((e) => checker.current.get(e) && checker.current.get(e) !== "sluice-b"),
      "takeover",
      3 * D,
    );
    const takeoverMs = Math.max(...bEnvs.map((e) => checker.changedAt.get(e)! - killedAt));
    const afterKill = checker.snapshot();
    t.diagnostic(
      `killed sluice-b (${bEnvs.length} environments): it fenced itself after ${Math.round(fencedMs)} ms, ` +
        `the others owned all of them ${Math.round(takeoverMs)} ms after the kill (lease ${D} ms, poll ${P} ms, renew ${R} ms)`,
    );
    assert.ok(takeoverMs <= D + 2 * P + 1500, `takeover took ${takeoverMs} ms`);
    for (const e of ENVS)
      if (three.get(e) !== "sluice-b") assert.equal(afterKill.get(e), three.get(e), `${e} moved`);
    assert.ok(checker.stable());

    // b comes back (a new process with the same id): it warms up, then takes back its own.
    await b.m.stop({ release: false });
    b.api.close();
    const b2 = replica("sluice-b");
    replicas[1] = b2;
    await b2.m.start();
    await until(() => checker.stable() && b2.m.acting(), "sluice-b to rejoin", 4 * D);
    const rejoined = checker.snapshot();
    assert.deepEqual(moved(afterKill, rejoined).sort(), [...bEnvs].sort(), "exactly b's environments return");

    // A fourth replica.
    const d = replica("sluice-d");
    replicas.push(d);
    await d.m.start();
    await until(() => checker.stable() && d.m.acting(), "sluice-d to own its share", 4 * D);
    const four = checker.snapshot();
    const m = moved(rejoined, four);
    t.diagnostic(
      `a fourth replica took ${m.length} of 300 environments (${((m.length / 300) * 100).toFixed(1)}%)`,
    );
    for (const e of m) assert.equal(four.get(e), "sluice-d");
    assert.ok(m.length >= 50 && m.length <= 100, `moved ${m.length}`);

    // `sluice shards` (one look at the Leases) places environments as the replicas do.
    const named = ENVS.slice(0, 30);
    const cli = await sluice([
      "shards",
      "--kubeconfig",
      cp.kubeconfigPath,
      "--namespace",
      NS,
      "-o",
      "json",
      ...named,
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    const shown = JSON.parse(cli.stdout) as {
      members: { id: string; live: boolean }[];
      owners: Record<string, string>;
    };
    assert.deepEqual(
      shown.members
        .filter((x) => x.live)
        .map((x) => x.id)
        .sort(),
      ["sluice-a", "sluice-b", "sluice-c", "sluice-d"],
    );
    for (const e of named) assert.equal(shown.owners[e], four.get(e), e);

    // Graceful leave: d releases its Lease; the others take over without waiting for expiry.
    const dEnvs = ENVS.filter((e) => four.get(e) === "sluice-d");
    const leftAt = performance.now();
    await d.m.stop();
    await until(
      () => dEnvs.every((e) => checker.current.get(e) && checker.current.get(e) !== "sluice-d"),
      "handover",
      2 * D,
    );
    const handoverMs = Math.max(...dEnvs.map((e) => checker.changedAt.get(e)! - leftAt));
    t.diagnostic(
      `sluice-d left gracefully: its ${dEnvs.length} environments owned again after ${Math.round(handoverMs)} ms`,
    );
    assert.ok(handoverMs < D, `handover took ${handoverMs} ms`);

    checker.sample();
    t.diagnostic(
      `checker: ${checker.samples} samples, ${checker.envSamples} environment samples, ` +
        `${checker.overlaps.length} with two owners, ${checker.zeroSamples} with none (transitions; longest gap ${Math.round(checker.maxGapMs)} ms)`,
    );
    assert.deepEqual(checker.overlaps.slice(0, 5), []);
    assert.ok(checker.samples > 500, `only ${checker.samples} samples`);
  } finally {
    checker.stop();
    for (const r of replicas) {
      await r.m.stop({ release: false }).catch(() => {});
      r.api.close();
    }
  }
});
