/**
 * render-overlay (issue 2): one kustomize overlay of 1,000 objects. Sluice: the CLI as a process
 * (`sluice render`: kustomize, then ${VAR} substitution, then YAML out) against `kubectl
 * kustomize` alone, and against kustomize piped through a substitution script (parity: both
 * then do the same work). Goal: overhead over kubectl kustomize under 15%.
 */
import { baseVars, writeBase, writeOverlay } from "../lib/gen.js";
import {
  checkOutputs,
  cliBreakdown,
  explainCli,
  kubectlKustomize,
  kubectlMissing,
  kustomizeEnvsubst,
  sluiceRender,
} from "../lib/render-cli.js";
import { cliBroken, ensureCli } from "../lib/sluice.js";
import type { Scenario } from "../lib/types.js";

const OVERLAY = "envs/production";
const ENV = "production";
const state = { cli: "", root: "", repo: "", apps: 0 };
// TEAM_EMAIL comes from --var; the rest from the overlay's vars.yaml (layered variables).
const cliVars = () => ({ TEAM_EMAIL: baseVars(ENV).TEAM_EMAIL });

const scenario: Scenario = {
  name: "render-overlay",
  description:
    "A generated kustomize base of 333 apps (Deployment, Service, ConfigMap each, with `${VAR}` placeholders) and one overlay (namespace, name prefix, labels, annotations, image tags, a JSON 6902 patch on every Deployment, a strategic-merge patch, a ConfigMap generator): 1,000 objects. `sluice render` as a process vs `kubectl kustomize`, and vs `kubectl kustomize | node envsubst.mjs` (the same substitution done by a script).",
  goal: {
    text: "overhead of `sluice render` over `kubectl kustomize` under 15% (issue 2)",
    met: (r) => (r.peers[0]?.ratioMedian ?? Number.POSITIVE_INFINITY) < 1.15,
  },
  pairs: 5,
  async available() {
    return kubectlMissing();
  },
  async setup(ctx) {
    state.cli = ensureCli(ctx.repo, ctx.log);
    const broken = cliBroken(state.cli, ctx.repo);
    if (broken) throw new Error(broken);
    state.root = ctx.dir;
    state.repo = ctx.repo;
    state.apps = ctx.quick ? 20 : 333;
    const apps = writeBase(ctx.dir, state.apps, 1001);
    writeOverlay(ctx.dir, OVERLAY, ENV, apps, 1002);
    await checkOutputs(ctx, ctx.dir, OVERLAY, state.cli, cliVars(), baseVars(ENV), state.apps * 3 + 1);
  },
  sluice: {
    label: "sluice render",
    rss: "child:/usr/bin/time",
    async run() {
      const r = await sluiceRender(state.cli, state.root, OVERLAY, cliVars());
      return { ms: r.ms, rssKb: r.rssKb, objects: state.apps * 3 + 1 };
    },
  },
  peer: {
    label: "kubectl kustomize",
    rss: "child:/usr/bin/time",
    async run() {
      const r = await kubectlKustomize(state.root, OVERLAY);
      return { ms: r.ms, rssKb: r.rssKb, objects: state.apps * 3 + 1 };
    },
  },
  extraPeers: [
    {
      label: "kubectl kustomize | envsubst.mjs",
      rss: "child:/usr/bin/time",
      async run() {
        const r = await kustomizeEnvsubst(state.repo, state.root, OVERLAY, baseVars(ENV));
        return { ms: r.ms, rssKb: r.rssKb, objects: state.apps * 3 + 1 };
      },
    },
  ],
  async breakdown(ctx, result) {
    return await cliBreakdown(
      ctx,
      state.cli,
      state.root,
      OVERLAY,
      cliVars(),
      result.sluice?.medianMs,
      ctx.quick ? 1 : 3,
    );
  },
  explain: (r) => explainCli(r),
  async teardown() {},
};

export default scenario;
