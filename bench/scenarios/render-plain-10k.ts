/**
 * render-plain-10k (issue 2): a plain directory (no kustomization) of 10,000 objects in 100
 * files, with `${VAR}` substitution, rendered in-process by `render()`. No peer; absolute
 * objects/s. Goal: 10,000 objects in under 1 s.
 */
import { join } from "node:path";
import { render } from "../../src/render/index.js";
import { baseVars, writePlain } from "../lib/gen.js";
import { explainPlain, plainBreakdown } from "../lib/render-cli.js";
import type { Scenario } from "../lib/types.js";

const ENV = "staging";
const state = { root: "", objects: 0 };
const vars = () => ({ TEAM_EMAIL: baseVars(ENV).TEAM_EMAIL });

const scenario: Scenario = {
  name: "render-plain-10k",
  description:
    "A generated plain directory of 10,000 objects (Deployments, Services, ConfigMaps with `${VAR}` placeholders) in 100 files under 10 folders, variables from a vars.yaml and one `vars` entry: `render()` in-process (warm, after a warm-up render). No peer.",
  goal: {
    text: "10,000 plain objects with substitution in under 1 s (issue 2)",
    met: (r) => (r.sluice?.medianMs ?? Number.POSITIVE_INFINITY) < 1000,
  },
  pairs: 10,
  async setup(ctx) {
    state.root = ctx.dir;
    state.objects = writePlain(
      join(ctx.dir, "plain"),
      ctx.quick ? 300 : 10_000,
      ctx.quick ? 3 : 100,
      4001,
      ENV,
    );
    const r = await render({ root: state.root, path: "plain", vars: vars() });
    if (r.objects.length !== state.objects)
      throw new Error(`render() returned ${r.objects.length} objects, expected ${state.objects}`);
    if (JSON.stringify(r.objects).includes("${")) throw new Error("render() left a ${…} placeholder");
  },
  sluice: {
    label: "render() in-process",
    rss: "in-process:maxRSS",
    async run() {
      const t0 = performance.now();
      const r = await render({ root: state.root, path: "plain", vars: vars() });
      const ms = performance.now() - t0;
      return { ms, rssKb: process.resourceUsage().maxRSS, objects: r.objects.length };
    },
  },
  async breakdown(ctx) {
    return await plainBreakdown(ctx, state.root, "plain", vars(), ctx.quick ? 1 : 4);
  },
  explain: (r) => explainPlain(r),
  async teardown() {},
};

export default scenario;
