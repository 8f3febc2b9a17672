/**
 * kube-noop (issue 5 / 13): re-applying 1,000 unchanged objects — the steady state of every
 * reconcile. Sluice classifies by dry-run and applies nothing (resourceVersions stay); kubectl
 * re-applies every object.
 */
import { join } from "node:path";
import type { KubeObject } from "../../src/core/index.js";
import { type KubeBench, kubeObjects, startKubeBench } from "../lib/kube.js";
import type { Scenario } from "../lib/types.js";

const s: { kb?: KubeBench; dir: string; sObjs: KubeObject[]; kObjs: KubeObject[] } = {
  dir: "",
  sObjs: [],
  kObjs: [],
};

const scenario: Scenario = {
  name: "kube-noop",
  description:
    "A no-op reconcile of 1,000 objects already applied to a real kube-apiserver + etcd: Sluice's Kubernetes target (dry-run per object, nothing applied) vs `kubectl apply --server-side -f` of the same unchanged file.",
  pairs: 5,
  async setup(ctx) {
    s.dir = ctx.dir;
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
      const r = await s.kb!.sluice(s.sObjs, "noop");
      if (r.changed !== 0) throw new Error(`a no-op reconcile changed ${r.changed} objects`);
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
  async teardown() {
    await s.kb?.stop();
    s.kb = undefined;
  },
};

export default scenario;
