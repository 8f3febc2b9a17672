/**
 * stack-plan (issue 9): `plan` of a Stack of 30 OpenTofu units with 29 dependency edges (a binary
 * tree; each unit a `terraform_data` and a hashicorp/local `local_file`, reading its parent's
 * output). Set-up applies the stack once, so every plan reads real dependency outputs. Sluice:
 * `sluice stack plan --parallelism 1` as a process (graph, inputs and layered variables, outputs
 * of 29 dependencies, 30 `tofu plan -json`). Peer: the same 30 `tofu plan`s run directly, in
 * order, by a shell script (what a person would type by hand). Goal: overhead under 10%.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { timeProcess } from "../lib/proc.js";
import { cliBroken, ensureCli } from "../lib/sluice.js";
import type { Breakdown, Scenario } from "../lib/types.js";

const STACK = "bench";
const ENV = "bench";
const s = { cli: "", root: "", state: "", units: 0, script: "", tofuEnv: {} as NodeJS.ProcessEnv };

function unitName(i: number): string {
  return `u${String(i).padStart(2, "0")}`;
}

function writeStack(root: string, n: number): void {
  const units: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = unitName(i);
    const parent = i === 0 ? undefined : unitName(Math.floor((i - 1) / 2));
    mkdirSync(join(root, "units", name), { recursive: true });
    writeFileSync(
      join(root, "units", name, "main.tf"),
      `variable "parent" { type = string }
variable "out_dir" { type = string }
resource "terraform_data" "node" { input = var.parent }
resource "local_file" "node" {
  filename = "\${var.out_dir}/${name}.txt"
  content  = "${name} under \${var.parent}"
}
output "id" { value = "${name}-\${terraform_data.node.id}" }
`,
    );
    units.push(
      [
        `    - name: ${name}`,
        `      path: units/${name}`,
        parent
          ? `      dependencies: [{name: ${parent}, mockOutputs: {id: mock}}]\n      inputs: {parent: "\${dependency.${parent}.outputs.id}", out_dir: "\${OUT_DIR}"}`
          : `      inputs: {parent: root, out_dir: "\${OUT_DIR}"}`,
      ].join("\n"),
    );
  }
  writeFileSync(join(root, "replace.json"), JSON.stringify({ OUT_DIR: join(root, "out") }));
  writeFileSync(
    join(root, "stack.yaml"),
    `apiVersion: sluice.dev/v1alpha1\nkind: Stack\nmetadata: {name: ${STACK}}\nspec:\n  units:\n${units.join("\n")}\n`,
  );
}

function sluiceArgs(action: string, parallelism?: number): string[] {
  return [
    s.cli,
    "stack",
    action,
    "--dir",
    s.root,
    "--root",
    s.root,
    "--env",
    ENV,
    "--state-dir",
    s.state,
    ...(parallelism ? ["--parallelism", String(parallelism)] : []),
  ];
}

/** The peer: the same plans, in the same (topological) order, in the same working copies. */
function writePeerScript(): string {
  const lines = ["#!/bin/sh", "set -e"];
  for (let i = 0; i < s.units; i++) {
    const name = unitName(i);
    const base = join(s.state, "infra", ENV, STACK, name);
    lines.push(
      `cd ${base}/src/units/${name} && TF_DATA_DIR=${base}/data "$TOFU" plan -input=false -lock-timeout=60s >/dev/null`,
    );
  }
  const p = join(s.root, "peer.sh");
  writeFileSync(p, `${lines.join("\n")}\n`, { mode: 0o755 });
  return p;
}

function tofuMissing(): string | undefined {
  const bin = join(process.env.SLUICE_BIN ?? join(process.env.HOME ?? "", ".cache", "sluice", "bin"), "tofu");
  const rc = join(process.env.HOME ?? "", ".cache", "sluice", "tofu.rc");
  if (!existsSync(bin) || !existsSync(rc)) return `OpenTofu is not built (${bin}): run scripts/peers/tofu.sh`;
  return undefined;
}

const scenario: Scenario = {
  name: "stack-plan",
  description:
    "A Stack of 30 OpenTofu units with 29 dependency edges (a binary tree; terraform_data + hashicorp/local local_file per unit, each reading its parent's output), applied once in set-up. `sluice stack plan --parallelism 1` as a process vs the same 30 `tofu plan`s run in order by a shell script in the same working copies.",
  goal: {
    text: "overhead of `sluice stack plan` over the same `tofu plan`s run by hand under 10% (issue 9)",
    met: (r) => (r.peers[0]?.ratioMedian ?? Number.POSITIVE_INFINITY) < 1.1,
  },
  pairs: 5,
  async available() {
    return tofuMissing();
  },
  async setup(ctx) {
    s.cli = ensureCli(ctx.repo, ctx.log);
    if (!existsSync(join(dirname(s.cli), "stack.js"))) {
      ctx.log(`${s.cli} has no \`stack\` command yet: rebuilding dist/ with \`npx tsc -p tsconfig.json\``);
      try {
        execFileSync("npx", ["tsc", "-p", "tsconfig.json"], {
          cwd: ctx.repo,
          stdio: ["ignore", "pipe", "pipe"],
        });
      } catch {
        // tsc emits even when other modules have type errors
      }
    }
    const broken = cliBroken(s.cli, ctx.repo);
    if (broken) throw new Error(broken);
    s.root = join(ctx.dir, "repo");
    s.state = join(ctx.dir, "state");
    s.units = ctx.quick ? 3 : 30;
    writeStack(s.root, s.units);
    const tofu = join(
      process.env.SLUICE_BIN ?? join(process.env.HOME ?? "", ".cache", "sluice", "bin"),
      "tofu",
    );
    s.tofuEnv = {
      ...process.env,
      TOFU: tofu,
      TF_CLI_CONFIG_FILE: join(process.env.HOME ?? "", ".cache", "sluice", "tofu.rc"),
      TF_IN_AUTOMATION: "1",
    };
    ctx.log(`applying the ${s.units}-unit stack once (init + apply per unit)`);
    await timeProcess(process.execPath, sluiceArgs("apply"), { timeoutMs: 600_000 });
    s.script = writePeerScript();
    // Both sides see no changes now; a plan with changes would exit 2.
    await timeProcess(process.execPath, sluiceArgs("plan", 1), { timeoutMs: 600_000 });
    await timeProcess("sh", [s.script], { env: s.tofuEnv, timeoutMs: 600_000 });
  },
  sluice: {
    label: "sluice stack plan --parallelism 1",
    rss: "child:/usr/bin/time",
    async run() {
      const r = await timeProcess(process.execPath, sluiceArgs("plan", 1), { timeoutMs: 600_000 });
      return { ms: r.ms, rssKb: r.rssKb, objects: s.units };
    },
  },
  peer: {
    label: "tofu plan ×N in order (shell script)",
    rss: "child:/usr/bin/time",
    async run() {
      const r = await timeProcess("sh", [s.script], { env: s.tofuEnv, timeoutMs: 600_000 });
      return { ms: r.ms, rssKb: r.rssKb, objects: s.units };
    },
  },
  async breakdown(ctx, result): Promise<Breakdown> {
    const json = await timeProcess(process.execPath, [...sluiceArgs("plan", 1), "--json"], {
      capture: "pipe",
      timeoutMs: 600_000,
    });
    const units = (JSON.parse(json.stdout) as { units: { durationMs: number }[] }).units;
    const inUnits = units.reduce((a, u) => a + u.durationMs, 0);
    const help = await timeProcess(process.execPath, [s.cli, "stack", "plan", "--help"], {
      timeoutMs: 60_000,
    });
    const parallel = await timeProcess(process.execPath, sluiceArgs("plan"), { timeoutMs: 600_000 });
    const peer = result.peers[0]?.medianMs ?? 0;
    const total = result.sluice?.medianMs ?? json.ms;
    ctx.note(
      `with the default parallelism (the number of cores) the same plan took ${Math.round(parallel.ms)} ms`,
    );
    return {
      method:
        "one extra `sluice stack plan --json` run: the units' own durations (copy, inputs, tofu plan) summed; node start-up from `stack plan --help`; the peer's median as the OpenTofu work",
      phases: [
        { name: "node start-up + CLI load", ms: help.ms, group: "per-process" },
        { name: `tofu plan ×${s.units} (peer median)`, ms: peer, group: "peer-work" },
        {
          name: "per-unit work beyond tofu (copy, inputs, outputs, lock)",
          ms: Math.max(0, inUnits - peer),
          group: "per-object",
          note: `units' durations sum to ${Math.round(inUnits)} ms`,
        },
        {
          name: "rest (graph, config load, scheduling)",
          ms: Math.max(0, total - help.ms - inUnits),
          group: "rest",
        },
        { name: "same plan, default parallelism", ms: parallel.ms, group: "extra" },
      ],
    };
  },
  explain(r) {
    const sl = r.sluice?.medianMs;
    const p = r.peers[0];
    if (!sl || !p) return undefined;
    const over = (p.ratioMedian - 1) * 100;
    return `Sluice planned ${r.sluice?.objects ?? "the"} units in ${Math.round(sl)} ms against ${Math.round(p.medianMs)} ms for the bare tofu plans: ${over >= 0 ? `${over.toFixed(1)}% overhead` : `${(-over).toFixed(1)}% faster`} (median of per-pair ratios), about ${Math.round((sl - p.medianMs) / (r.sluice?.objects ?? 1))} ms per unit.`;
  },
  async teardown() {},
};

export default scenario;
