/** Shared pieces of the render scenarios: the two CLIs as processes, checks, and the breakdown. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseAllDocuments } from "yaml";
import { countObjects, type ProcResult, timeProcess } from "./proc.js";
import { summariseProfileDir } from "./profile.js";
import type { PhaseRequest, PhaseTimes } from "./render-phases.js";
import { fmtMs } from "./report.js";
import { median } from "./stats.js";
import type { Breakdown, Context, Phase, ScenarioResult } from "./types.js";

export function kubectlMissing(): string | undefined {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 20_000 });
    return undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "kubectl is not installed (it is the peer)";
    return undefined;
  }
}

const varArgs = (vars: Record<string, string>) =>
  Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}=${v}`]);

/** `node dist/cli/main.js render PATH --root ROOT --var K=V …` */
export function sluiceRender(
  cli: string,
  root: string,
  path: string,
  vars: Record<string, string>,
  capture?: "pipe" | "file",
): Promise<ProcResult> {
  return timeProcess(process.execPath, [cli, "render", path, "--root", root, ...varArgs(vars)], {
    cwd: root,
    capture,
  });
}

/** `kubectl kustomize PATH` */
export function kubectlKustomize(root: string, path: string, capture?: "pipe" | "file"): Promise<ProcResult> {
  return timeProcess("kubectl", ["kustomize", path], { cwd: root, capture });
}

/** `kubectl kustomize PATH | node bench/peers/envsubst.mjs K=V …` (pipefail) */
export function kustomizeEnvsubst(
  repo: string,
  root: string,
  path: string,
  vars: Record<string, string>,
  capture?: "pipe" | "file",
): Promise<ProcResult> {
  const script = join(repo, "bench", "peers", "envsubst.mjs");
  const kv = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
  return timeProcess(
    "bash",
    [
      "-o",
      "pipefail",
      "-c",
      'kubectl kustomize "$1" | "$2" "$3" "${@:4}"',
      "bash",
      path,
      process.execPath,
      script,
      ...kv,
    ],
    { cwd: root, capture },
  );
}

/**
 * Checks one run of each side before timing: the object counts, no placeholder left, and that
 * Sluice's objects equal the peer pipeline's (kustomize, then text substitution). Returns notes.
 */
export async function checkOutputs(
  ctx: Context,
  root: string,
  path: string,
  cli: string,
  vars: Record<string, string>,
  allVars: Record<string, string>,
  expected: number,
): Promise<void> {
  const s = await sluiceRender(cli, root, path, vars, "file");
  const k = await kubectlKustomize(root, path, "pipe");
  const ke = await kustomizeEnvsubst(ctx.repo, root, path, allVars, "pipe");
  for (const [who, out] of [
    ["sluice render", s.stdout],
    ["kubectl kustomize", k.stdout],
    ["kubectl kustomize | envsubst", ke.stdout],
  ] as const) {
    const n = countObjects(out);
    if (n !== expected) throw new Error(`${who} produced ${n} objects, expected ${expected}`);
  }
  // Also through a pipe, as in `sluice render DIR | kubectl apply -f -` (the timed runs write to /dev/null).
  const piped = countObjects((await sluiceRender(cli, root, path, vars, "pipe")).stdout);
  if (piped !== expected) {
    ctx.note(
      `BUG: \`sluice render\` writing to a pipe printed ${piped} of ${expected} objects and exited 0 (its output was cut short; to a file it printed all ${expected}). The timed runs write to /dev/null and are not affected.`,
    );
  }
  if (s.stdout.includes("${")) throw new Error("sluice render left a ${…} placeholder in its output");
  const a = parseAllDocuments(s.stdout) as unknown as { toJS(): unknown }[];
  const b = parseAllDocuments(ke.stdout) as unknown as { toJS(): unknown }[];
  const diff = a.findIndex((d, i) => JSON.stringify(d.toJS()) !== JSON.stringify(b[i]?.toJS()));
  if (diff >= 0) {
    ctx.note(
      `output check: object ${diff} differs between sluice render and kubectl kustomize | envsubst (${JSON.stringify(a[diff]?.toJS()).slice(0, 200)} …)`,
    );
  }
}

function runWorker(
  repo: string,
  req: PhaseRequest,
  nodeFlags: string[] = [],
): { runs: PhaseTimes[]; renders: number[] } {
  const out = execFileSync(
    process.execPath,
    [...nodeFlags, "--import", "tsx", join(repo, "bench", "lib", "render-phases.ts"), JSON.stringify(req)],
    { cwd: repo, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 600_000 },
  );
  return JSON.parse(out) as { runs: PhaseTimes[]; renders: number[] };
}

function groupOf(name: string): Phase["group"] {
  if (name.startsWith("find kustomize") || name.startsWith("variable layers")) return "per-process";
  if (name.startsWith("kustomize build")) return "peer-work";
  return "per-object";
}

function medianPhases(runs: PhaseTimes[]): Phase[] {
  const names = Object.keys(runs[0] ?? {}).filter((n) => n !== "objects");
  return names.map((name) => ({ name, ms: median(runs.map((r) => r[name] ?? 0)), group: groupOf(name) }));
}

/**
 * Where a `sluice render` process spends its time: node's own start, loading the CLI's modules,
 * then render()'s steps timed one by one in fresh processes (cold, like a CLI run), and what is
 * left of the measured median (process exit, GC, flag parsing, …).
 */
export async function cliBreakdown(
  ctx: Context,
  cli: string,
  root: string,
  path: string,
  vars: Record<string, string>,
  cliMedianMs: number | undefined,
  runs: number,
): Promise<Breakdown> {
  const bare: number[] = [];
  const load: number[] = [];
  for (let i = 0; i < runs; i++) {
    bare.push((await timeProcess(process.execPath, ["-e", "0"])).ms);
    load.push(
      (
        await timeProcess(process.execPath, [
          "--input-type=module",
          "-e",
          `await import(${JSON.stringify(pathToFileURL(cli).href)})`,
        ])
      ).ms,
    );
  }
  const worker = Array.from({ length: runs }, () =>
    runWorker(ctx.repo, { mode: "kustomize", root, path, vars, iterations: 1, serialize: true }),
  );
  const bareMs = median(bare);
  const phases: Phase[] = [
    { name: "node start and exit (`node -e 0`)", ms: bareMs, group: "per-process" },
    {
      name: "load the CLI's modules (`import dist/cli/main.js`)",
      ms: Math.max(0, median(load) - bareMs),
      note: "every module of the CLI is imported, whatever the subcommand",
      group: "per-process",
    },
    ...medianPhases(worker.map((w) => w.runs[0]!)),
  ];
  const sum = phases.reduce((a, p) => a + p.ms, 0);
  if (cliMedianMs !== undefined)
    phases.push({
      name: "rest of the measured median (flag parsing, GC, noise)",
      ms: cliMedianMs - sum,
      group: "rest",
    });
  return {
    method: `medians of ${runs} fresh processes per piece; render()'s steps timed by bench/lib/render-phases.ts, which calls the functions render() calls, in its order`,
    phases,
  };
}

/** In-process render() of a plain directory: its steps (warm, like the timed runs) and a CPU profile. */
export async function plainBreakdown(
  ctx: Context,
  root: string,
  path: string,
  vars: Record<string, string>,
  iterations: number,
): Promise<Breakdown> {
  const w = runWorker(ctx.repo, { mode: "plain", root, path, vars, iterations, serialize: true });
  const warm = w.runs.length > 1 ? w.runs.slice(1) : w.runs;
  const phases = medianPhases(warm).map((p) =>
    p.name.startsWith("serialize") || p.name.startsWith("write")
      ? { ...p, group: "extra" as const, note: "not part of render(); what `sluice render` adds" }
      : p,
  );
  const profDir = mkdtempSync(join(ctx.dir, "cpuprof-"));
  try {
    runWorker(ctx.repo, { mode: "plain", root, path, vars, iterations, serialize: false, renderOnly: true }, [
      "--cpu-prof",
      `--cpu-prof-dir=${profDir}`,
    ]);
    const prof = summariseProfileDir(profDir, ctx.repo);
    return {
      method: `bench/lib/render-phases.ts in a fresh process: render()'s steps timed one by one, median of ${warm.length} warm iteration(s) (the first is discarded); then \`node --cpu-prof\` over ${iterations} render() calls`,
      phases,
      profile: prof.top,
      profileAreas: prof.areas.slice(0, 8),
    };
  } finally {
    rmSync(profDir, { recursive: true, force: true });
  }
}

const sumOf = (b: Breakdown, g: Phase["group"]) =>
  b.phases.filter((p) => p.group === g).reduce((a, p) => a + p.ms, 0);
const top = (b: Breakdown, g: Phase["group"], n: number) =>
  b.phases
    .filter((p) => p.group === g)
    .sort((x, y) => y.ms - x.ms)
    .slice(0, n)
    .map((p) => `${p.name.replace(/ \(.*\)$/, "")} ${fmtMs(p.ms)}`)
    .join(", ");

/** Reads a CLI breakdown: how much of Sluice's extra time is per process and how much per object. */
export function explainCli(r: ScenarioResult, per = 1): string | undefined {
  const b = r.breakdown;
  const s = r.sluice;
  const p = r.peers[0];
  if (!b || !s || !p) return undefined;
  const extra = (s.medianMs - p.medianMs) / per;
  const unit = per > 1 ? " per overlay" : "";
  return [
    `Reading: \`sluice render\` takes ${fmtMs(extra)} more than \`${p.label}\`${unit} (median ratio ${p.ratioMedian.toFixed(2)}×).`,
    `Fixed cost per process: ${fmtMs(sumOf(b, "per-process"))} (${top(b, "per-process", 3)}).`,
    `Cost that grows with the objects: ${fmtMs(sumOf(b, "per-object"))} (${top(b, "per-object", 3)}).`,
    `The kustomize build inside Sluice took ${fmtMs(sumOf(b, "peer-work"))}, the same work as the peer.`,
  ].join(" ");
}

/** Reads an in-process breakdown with a profile. */
export function explainPlain(r: ScenarioResult): string | undefined {
  const b = r.breakdown;
  const s = r.sluice;
  if (!b || !s) return undefined;
  const total = b.phases
    .filter((p) => !p.name.startsWith("serialize") && !p.name.startsWith("write"))
    .reduce((a, p) => a + p.ms, 0);
  const steps = [...b.phases]
    .filter((p) => !p.name.startsWith("serialize") && !p.name.startsWith("write"))
    .sort((x, y) => y.ms - x.ms)
    .slice(0, 3)
    .map((p) => `${p.name} ${fmtMs(p.ms)} (${((p.ms / total) * 100).toFixed(0)}%)`)
    .join(", ");
  const areas = (b.profileAreas ?? [])
    .slice(0, 3)
    .map((a) => `${a.area} ${a.pct}%`)
    .join(", ");
  return `Reading: render() took ${fmtMs(s.medianMs)} for ${s.objects} objects (${Math.round(s.objectsPerSec ?? 0).toLocaleString("en-US")} objects/s). Largest steps: ${steps}. CPU profile: ${areas}.`;
}
