/**
 * kube-noop (issue 5 / 13): re-applying 1,000 unchanged objects — the steady state of every
 * reconcile. Sluice lists the unit's live objects (one LIST per resource type, by the
 * `sluice.dev/owner` label), sees from their managed fields that its applied fields already
 * equal the desired ones, and sends nothing else: no write, no dry-run (resourceVersions stay).
 * kubectl re-applies every object. Requests are counted from the API server's own
 * `apiserver_request_total` around each Sluice run (outside the timing).
 */
import { join } from "node:path";
import type { KubeObject } from "../../src/core/index.js";
import { apiRequestCounts, countDelta, writeCount } from "../../test/support/kube-requests.js";
import { type KubeBench, kubeObjects, startKubeBench } from "../lib/kube.js";
import type { Scenario } from "../lib/types.js";

const RESOURCES = ["namespaces", "configmaps", "services", "deployments"];
const s: {
  kb?: KubeBench;
  dir: string;
  sObjs: KubeObject[];
  kObjs: KubeObject[];
  writes: number;
  dryRuns: number;
  requests: string[];
} = {
  dir: "",
  sObjs: [],
  kObjs: [],
  writes: 0,
  dryRuns: 0,
  requests: [],
};

const scenario: Scenario = {
  name: "kube-noop",
  description:
    "A no-op reconcile of 1,000 objects already applied to a real kube-apiserver + etcd: Sluice's Kubernetes target (one LIST per resource type by the owner label; unchanged objects recognised locally from the fields Sluice's field manager owns: no write, no dry-run) vs `kubectl apply --server-side -f` of the same unchanged file.",
  goal: {
    text: "no-op reconcile of 1,000 objects under 2 s, sending no write request (issue 5)",
    met: (r) => (r.sluice?.medianMs ?? Number.POSITIVE_INFINITY) < 2000 && s.writes === 0,
  },
  pairs: 5,
  async setup(ctx) {
    s.dir = ctx.dir;
    s.writes = 0;
    s.dryRuns = 0;
    s.requests = [];
    const count = ctx.quick ? 30 : 1000;
    s.kb = await startKubeBench();
    s.sObjs = kubeObjects("noop-s", count);
    s.kObjs = kubeObjects("noop-k", count);
    await s.kb.sluice(s.sObjs, "noop");
    await s.kb.kubectl(s.kObjs, join(s.dir, "k.yaml"));
  },
  sluice: {
    label: "Kubernetes target no-op reconcile",
    rss: "in-process:maxRSS",
    async run() {
      const before = await apiRequestCounts(s.kb!.cp, RESOURCES);
      const r = await s.kb!.sluice(s.sObjs, "noop");
      const delta = countDelta(before, await apiRequestCounts(s.kb!.cp, RESOURCES));
      if (r.changed !== 0) throw new Error(`a no-op reconcile changed ${r.changed} objects`);
      s.writes += writeCount(delta);
      s.dryRuns += Object.entries(delta)
        .filter(([k]) => k.endsWith("dry-run"))
        .reduce((n, [, v]) => n + v, 0);
      s.requests.push(
        Object.entries(delta)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ") || "none",
      );
      return { ms: r.ms, rssKb: process.resourceUsage().maxRSS, objects: s.sObjs.length };
    },
  },
  peer: {
    label: "kubectl apply --server-side (unchanged)",
    rss: "none",
    async run() {
      const r = await s.kb!.kubectl(s.kObjs, join(s.dir, "k.yaml"));
      return { ms: r.ms, objects: s.kObjs.length };
    },
  },
  explain() {
    const runs = s.requests.length;
    return `Requests to the API server per Sluice no-op run (apiserver_request_total, ${RESOURCES.join("/")}): ${[...new Set(s.requests)].join(" | ")}; over ${runs} runs ${s.writes} write and ${s.dryRuns} dry-run requests.`;
  },
  async teardown() {
    await s.kb?.stop();
    s.kb = undefined;
  },
};

export default scenario;
