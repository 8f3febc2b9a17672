/**
 * image-policy (issue 6): ImagePolicy selection over 10,000 tags in-process: a semver range with
 * pre-releases, alphabetical, and numerical behind a filterTags pattern with extraction. No peer
 * (Flux's controller is not a standalone tool); absolute times. Goal: each policy under 50 ms —
 * judged on the sum of the three, which is stricter.
 */

import type { ImagePolicySpec } from "../../src/config/index.js";
import { selectLatest } from "../../src/images/index.js";
import { Rng } from "../lib/rng.js";
import type { Breakdown, Phase, Scenario } from "../lib/types.js";

const ref = { name: "app" };
const POLICIES: { name: string; spec: ImagePolicySpec }[] = [
  {
    name: "semver >=1.0.0-0 <3",
    spec: { imageRepositoryRef: ref, policy: { semver: { range: ">=1.0.0-0 <3" } } },
  },
  { name: "alphabetical asc", spec: { imageRepositoryRef: ref, policy: { alphabetical: { order: "asc" } } } },
  {
    name: "numerical asc, filterTags ^main-<sha>-(?P<ts>…) → $ts",
    spec: {
      imageRepositoryRef: ref,
      policy: { numerical: { order: "asc" } },
      filterTags: { pattern: "^main-[a-fA-F0-9]+-(?P<ts>[1-9][0-9]*)$", extract: "$ts" },
    },
  },
];

const state = { tags: [] as string[], expected: [] as string[] };

/** A registry's worth of tags: releases, pre-releases, v-prefixed, main-<sha>-<ts>, sha-only, latest. */
function generateTags(n: number, seed: number): string[] {
  const rng = new Rng(seed);
  const hex = (len: number) => Array.from({ length: len }, () => "0123456789abcdef"[rng.int(0, 15)]).join("");
  const tags = new Set<string>(["latest"]);
  while (tags.size < n) {
    const k = rng.int(0, 9);
    const v = `${rng.int(0, 4)}.${rng.int(0, 30)}.${rng.int(0, 60)}`;
    if (k <= 2) tags.add(v);
    else if (k === 3) tags.add(`v${v}`);
    else if (k === 4) tags.add(`${v}-${rng.pick(["rc", "beta", "alpha"])}.${rng.int(0, 9)}`);
    else if (k <= 7) tags.add(`main-${hex(7)}-${1_600_000_000 + rng.int(0, 90_000_000)}`);
    else tags.add(hex(10));
  }
  return [...tags];
}

function selectAll(): { ms: number; each: number[]; picked: string[] } {
  const each: number[] = [];
  const picked: string[] = [];
  for (const p of POLICIES) {
    const t0 = performance.now();
    picked.push(selectLatest(p.spec, state.tags).tag);
    each.push(performance.now() - t0);
  }
  return { ms: each.reduce((a, b) => a + b, 0), each, picked };
}

const scenario: Scenario = {
  name: "image-policy",
  description:
    "10,000 generated registry tags (releases, v-prefixed, pre-releases, main-<sha>-<timestamp>, bare commit ids, latest), and three ImagePolicies selected in-process with `selectLatest()` one after the other: semver `>=1.0.0-0 <3` (Masterminds rules, pre-releases in), alphabetical asc, numerical asc over a filterTags pattern with `$ts` extraction. No peer; absolute times.",
  goal: {
    text: "each policy over 10,000 tags under 50 ms (issue 6); judged on the three together",
    met: (r) => (r.sluice?.medianMs ?? Number.POSITIVE_INFINITY) < 50,
  },
  pairs: 10,
  async setup(ctx) {
    state.tags = generateTags(ctx.quick ? 1000 : 10_000, 6001);
    const first = selectAll();
    state.expected = first.picked;
    ctx.note(`selected: ${POLICIES.map((p, i) => `${p.name} → ${first.picked[i]}`).join("; ")}`);
  },
  sluice: {
    label: "selectLatest() × 3 policies, in-process",
    rss: "in-process:maxRSS",
    async run() {
      const r = selectAll();
      if (r.picked.join() !== state.expected.join())
        throw new Error(`selection changed: ${r.picked.join(", ")}`);
      return { ms: r.ms, rssKb: process.resourceUsage().maxRSS, objects: state.tags.length };
    },
  },
  async breakdown(ctx): Promise<Breakdown> {
    const runs = ctx.quick ? 1 : 9;
    const samples: number[][] = POLICIES.map(() => []);
    for (let i = 0; i < runs; i++) {
      const r = selectAll();
      for (const [k, ms] of r.each.entries()) samples[k]!.push(ms);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const phases: Phase[] = POLICIES.map((p, k) => ({
      name: p.name,
      ms: median(samples[k]!),
      note: `over ${state.tags.length} tags`,
      group: "per-object",
    }));
    return {
      method: `each policy timed alone, median of ${runs} runs (compile + parse + select)`,
      phases,
    };
  },
  explain(r) {
    const b = r.breakdown;
    if (!b || !r.sluice) return undefined;
    const slowest = [...b.phases].sort((a, c) => c.ms - a.ms)[0]!;
    return `The slowest policy is ${slowest.name} at ${slowest.ms.toFixed(1)} ms for ${r.sluice.objects} tags (${((slowest.ms * 1000) / (r.sluice.objects ?? 1)).toFixed(2)} µs per tag); the three together take ${r.sluice.medianMs.toFixed(1)} ms.`;
  },
  async teardown() {
    state.tags = [];
  },
};

export default scenario;
