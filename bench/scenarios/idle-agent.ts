/**
 * idle-agent (issue 4): the footprint of `sluice serve` watching 100 environments × 10 units once
 * everything has converged: resident memory and CPU over an idle window, read from /proc for the
 * agent's own process. 100 branches map to 100 environments; each of the 10 Kustomizations renders
 * a ConfigMap (so the numbers are the agent's, not containers'). Sources are listed every minute
 * (Flux's default interval), units re-applied every 10 minutes.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../src/demo/index.js";
import { type GitServer, startGitServer } from "../../src/source/index.js";
import { createLocalTarget } from "../../src/targets/local/index.js";
import { ensureCli } from "../lib/sluice.js";
import type { Scenario } from "../lib/types.js";

const run = promisify(execFile);
const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "b",
  GIT_AUTHOR_EMAIL: "b@x",
  GIT_COMMITTER_NAME: "b",
  GIT_COMMITTER_EMAIL: "b@x",
};
const s: {
  server?: GitServer;
  agent?: ChildProcess;
  state: string;
  url: string;
  token: string;
  envs: number;
  units: number;
  windowMs: number;
} = {
  windowMs: 10_000,
  state: "",
  url: "",
  token: "",
  envs: 0,
  units: 0,
};

function procStat(pid: number): { cpuTicks: number; rssKb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return { cpuTicks, rssKb: Number(rss?.[1] ?? 0) };
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

const scenario: Scenario = {
  name: "idle-agent",
  description:
    "`sluice serve` (its own process) watching 100 environments (100 branches) × 10 units (Kustomizations rendering a ConfigMap each, local target), measured after all 1,000 units are Ready: CPU over an idle window (share of one core) and resident memory, from /proc. No peer run here (Flux needs a cluster and five controllers).",
  goal: {
    text: "idle agent with 100 environments × 10 units under 200 MB RSS and under 2% of one core (issue 4)",
    met: (r) =>
      (r.sluice?.peakRssKb ?? Number.POSITIVE_INFINITY) < 200 * 1024 &&
      (r.sluice?.medianMs ?? Number.POSITIVE_INFINITY) < 2,
  },
  pairs: 5,
  async setup(ctx) {
    s.envs = ctx.quick ? 3 : 100;
    s.windowMs = ctx.quick ? 2_000 : 10_000;
    s.units = ctx.quick ? 2 : 10;
    const cli = ensureCli(ctx.repo, ctx.log);
    s.server = await startGitServer({ root: join(ctx.dir, "git") });
    const files: Record<string, string> = {};
    for (let u = 0; u < s.units; u++) {
      files[`u${u}/cm.yaml`] =
        `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u${u}-\${ENV}\ndata: {unit: "u${u}", env: "\${ENV}"}\n`;
    }
    await s.server.createRepo("app", files, "main");
    const work = join(ctx.dir, "work");
    await run("git", ["clone", "-q", s.server.repoUrl("app"), work], { env: gitEnv });
    const refspecs = Array.from(
      { length: s.envs },
      (_, i) => `HEAD:refs/heads/env-${String(i).padStart(3, "0")}`,
    );
    await run("git", ["push", "-q", "origin", ...refspecs], { cwd: work, env: gitEnv });
    s.state = join(ctx.dir, "state");
    mkdirSync(join(s.state, "config"), { recursive: true });
    let cfg = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: ${s.server.repoUrl("app")}, interval: 1m, ref: {branch: main}}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec: {sourceRef: {name: app}, rules: [{branch: "env-*", name: "idle-{{branch}}"}]}
`;
    for (let u = 0; u < s.units; u++) {
      cfg += `---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: u${u}}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./u${u}, interval: 10m, prune: true}
`;
    }
    writeFileSync(join(s.state, "config", "sluice.yaml"), cfg);
    const port = await freePort();
    s.url = `http://127.0.0.1:${port}`;
    s.agent = spawn(
      process.execPath,
      [
        cli,
        "serve",
        "--config",
        join(s.state, "config"),
        "--state-dir",
        s.state,
        "--listen",
        `127.0.0.1:${port}`,
      ],
      {
        stdio: ["ignore", "ignore", openSync(join(ctx.dir, "agent.log"), "w")],
        env: { ...process.env, SLUICE_LOG_LEVEL: "warn" },
      },
    );
    const total = s.envs * s.units;
    const deadline = Date.now() + 15 * 60_000;
    let ready = 0;
    let lastLog = 0;
    for (;;) {
      try {
        if (!s.token) s.token = readFileSync(join(s.state, "operator-token"), "utf8").trim();
        const r = await fetch(`${s.url}/api/v1/units`, { headers: { Authorization: `Bearer ${s.token}` } });
        const body = (await r.json()) as { units: { ready: string }[] };
        ready = body.units.filter((u) => u.ready === "True").length;
      } catch {
        // not up yet
      }
      if (ready >= total) break;
      if (Date.now() > deadline || s.agent.exitCode !== null) {
        const log = readFileSync(join(ctx.dir, "agent.log"), "utf8").split("\n").slice(-5).join("\n");
        throw new Error(`only ${ready} of ${total} units became Ready; agent log:\n${log}`);
      }
      if (Date.now() - lastLog > 10_000) {
        ctx.log(`${ready}/${total} units Ready`);
        lastLog = Date.now();
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    ctx.log(`all ${total} units Ready`);
    ctx.note(`${s.envs} environments × ${s.units} units converged before measuring`);
  },
  async warmup() {},
  sluice: {
    // "ms" carries the CPU share in percent of one core, so the report's median is that share.
    label: "idle `sluice serve`: CPU % of one core over the window (shown as ms) and RSS",
    rss: "proc:VmRSS",
    async run() {
      const pid = s.agent!.pid!;
      const windowMs = s.windowMs;
      const a = procStat(pid);
      await new Promise((r) => setTimeout(r, windowMs));
      const b = procStat(pid);
      const pct = (((b.cpuTicks - a.cpuTicks) * TICK_MS) / windowMs) * 100;
      return { ms: pct, rssKb: b.rssKb };
    },
  },
  async teardown() {
    if (s.agent?.pid) {
      s.agent.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 2000));
      s.agent.kill("SIGKILL");
    }
    if (s.state) {
      const local = await createLocalTarget({ stateDir: join(s.state, "local") });
      for (let e = 0; e < s.envs; e++) {
        for (let u = 0; u < s.units; u++)
          await local
            .destroy({ env: `idle-env-${String(e).padStart(3, "0")}`, unit: `u${u}` })
            .catch(() => {});
      }
      await local.close();
    }
    await s.server?.stop();
    s.server = undefined;
    s.agent = undefined;
    s.token = "";
  },
};

export default scenario;
