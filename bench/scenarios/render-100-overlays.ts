/**
 * render-100-overlays (issue 13): 100 environment overlays over one base; every overlay is
 * rendered (one process per overlay, as many at a time as there are cores, at most 2): `sluice
 * render` per overlay vs `kubectl kustomize` per overlay. The time reported is the wall time for all.
 */
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { baseVars, writeBase, writeOverlay } from "../lib/gen.js";
import {
  checkOutputs,
  cliBreakdown,
  explainCli,
  kubectlKustomize,
  kubectlMissing,
  sluiceRender,
} from "../lib/render-cli.js";
import { cliBroken, ensureCli } from "../lib/sluice.js";
import type { Sample, Scenario } from "../lib/types.js";

const APPS = 10;
/** One render per core at a time, as a CI job rendering every environment would (this keeps the suite short). */
const PARALLEL = Math.max(1, Math.min(2, cpus().length));
const state = { cli: "", root: "", overlays: [] as { path: string; env: string }[] };
const perOverlay = APPS * 3 + 1;
const cliVars = (env: string) => ({ TEAM_EMAIL: baseVars(env).TEAM_EMAIL });

/** Renders every overlay, `PARALLEL` at a time; the sample is the wall time for all of them. */
async function all(one: (o: { path: string; env: string }) => Promise<{ ms: number; rssKb?: number }>) {
  let rssKb: number | undefined;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < state.overlays.length) {
      const r = await one(state.overlays[next++]!);
      if (r.rssKb !== undefined) rssKb = Math.max(rssKb ?? 0, r.rssKb);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return { ms: performance.now() - t0, rssKb, objects: perOverlay * state.overlays.length } satisfies Sample;
}

const scenario: Scenario = {
  name: "render-100-overlays",
  description: `A generated base of ${APPS} apps (${APPS * 3} objects with \`\${VAR}\` placeholders) and 100 environment overlays (namespace, prefix, labels, image tags, patches, a generated ConfigMap, a vars.yaml each): ${perOverlay} objects per overlay. All 100 rendered, ${PARALLEL} at a time (one per core): \`sluice render\` per overlay vs \`kubectl kustomize\` per overlay; wall time for all 100.`,
  pairs: 5,
  async available() {
    return kubectlMissing();
  },
  async setup(ctx) {
    state.cli = ensureCli(ctx.repo, ctx.log);
    const broken = cliBroken(state.cli, ctx.repo);
    if (broken) throw new Error(broken);
    state.root = ctx.dir;
    const n = ctx.quick ? 3 : 100;
    const apps = writeBase(ctx.dir, APPS, 2001);
    state.overlays = [];
    for (let i = 0; i < n; i++) {
      const env = `env-${String(i).padStart(3, "0")}`;
      const path = `envs/${env}`;
      writeOverlay(ctx.dir, path, env, apps, 3000 + i);
      state.overlays.push({ path, env });
    }
    const first = state.overlays[0]!;
    await checkOutputs(
      ctx,
      ctx.dir,
      first.path,
      state.cli,
      cliVars(first.env),
      baseVars(first.env),
      perOverlay,
    );
  },
  async warmup() {
    for (const o of state.overlays.slice(0, 3)) {
      await sluiceRender(state.cli, state.root, o.path, cliVars(o.env));
      await kubectlKustomize(state.root, o.path);
    }
  },
  sluice: {
    label: "sluice render, each overlay",
    rss: "child:/usr/bin/time",
    run: () => all((o) => sluiceRender(state.cli, state.root, o.path, cliVars(o.env))),
  },
  peer: {
    label: "kubectl kustomize, each overlay",
    rss: "child:/usr/bin/time",
    run: () => all((o) => kubectlKustomize(state.root, o.path)),
  },
  async breakdown(ctx, result) {
    const o = state.overlays[0]!;
    const perRun =
      result.sluice && state.overlays.length > 0
        ? (result.sluice.medianMs * PARALLEL) / state.overlays.length
        : undefined;
    const b = await cliBreakdown(
      ctx,
      state.cli,
      state.root,
      o.path,
      cliVars(o.env),
      perRun,
      ctx.quick ? 1 : 3,
    );
    b.method = `one overlay (${o.path}); ${b.method}; the last line compares with the measured median × ${PARALLEL} (renders at a time) ÷ ${state.overlays.length}`;
    return b;
  },
  explain: (r) => explainCli(r, state.overlays.length / PARALLEL),
  async teardown() {},
};

export default scenario;
