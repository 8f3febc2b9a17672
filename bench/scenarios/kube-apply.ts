/**
 * kube-apply (issue 5 / 13): 1,000 objects applied to a real kube-apiserver + etcd into a fresh
 * namespace each run — Sluice's Kubernetes target (one LIST per resource type, then one
 * server-side apply per object, several at a time; nothing to read or dry-run in a namespace it
 * has just created) vs `kubectl apply --server-side`.
 */
import { join } from "node:path";
import { type KubeBench, kubeObjects, startKubeBench } from "../lib/kube.js";
import type { Scenario } from "../lib/types.js";

const s: { kb?: KubeBench; dir: string; n: number; count: number } = { dir: "", n: 0, count: 1000 };

const scenario: Scenario = {
  name: "kube-apply",
  description:
    "1,000 objects (Namespace, ConfigMaps, Services, Deployments) applied to a real kube-apiserver + etcd on 127.0.0.1, into a new namespace each run: Sluice's Kubernetes target (one LIST per resource type, then one server-side apply per object, 8 in flight; no GET or dry-run in the namespace it just created) vs `kubectl apply --server-side -f`.",
  goal: {
    text: "no slower than `kubectl apply --server-side` on the same 1,000 objects (issue 5)",
    met: (r) => (r.peers[0]?.ratioMedian ?? Number.POSITIVE_INFINITY) <= 1,
  },
  pairs: 5,
  async setup(ctx) {
    s.dir = ctx.dir;
    s.count = ctx.quick ? 30 : 1000;
    s.kb = await startKubeBench();
  },
  async warmup() {
    await s.kb!.sluice(kubeObjects("warm-s", s.count), "warm");
    await s.kb!.kubectl(kubeObjects("warm-k", s.count), join(s.dir, "warm.yaml"));
  },
  sluice: {
    label: "Kubernetes target apply (SSA)",
    rss: "in-process:maxRSS",
    async run() {
      s.n++;
      const r = await s.kb!.sluice(kubeObjects(`s-${s.n}`, s.count), `u${s.n}`);
      if (r.changed !== s.count) throw new Error(`expected ${s.count} created, got ${r.changed}`);
      return { ms: r.ms, rssKb: process.resourceUsage().maxRSS, objects: s.count };
    },
  },
  peer: {
    label: "kubectl apply --server-side",
    rss: "none",
    async run() {
      const r = await s.kb!.kubectl(kubeObjects(`k-${s.n}`, s.count), join(s.dir, `k-${s.n}.yaml`));
      return { ms: r.ms, objects: s.count };
    },
  },
  async teardown() {
    await s.kb?.stop();
    s.kb = undefined;
    s.n = 0;
  },
};

export default scenario;
