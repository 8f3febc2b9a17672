/** Runs one scenario: setup, warm-up, alternating timed pairs, statistics, breakdown, teardown. */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { median, percentile } from "./stats.js";
import type { Context, PeerStats, Sample, Scenario, ScenarioResult, Side, Stats } from "./types.js";

export interface RunOptions {
  quick: boolean;
  repo: string;
  command: string;
  /** Parent of each scenario's temporary directory. */
  tmpRoot: string;
  log(msg: string): void;
}

export const MIN_PAIRS = 5;

export async function runScenario(s: Scenario, opts: RunOptions): Promise<ScenarioResult> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(opts.tmpRoot, `${s.name}-`));
  const result: ScenarioResult = {
    name: s.name,
    description: s.description,
    quick: opts.quick,
    date: new Date().toISOString(),
    command: opts.command,
    status: "ok",
    pairs: 0,
    peers: [],
    notes: [],
    durationMs: 0,
  };
  const ctx: Context = {
    quick: opts.quick,
    dir,
    repo: opts.repo,
    log: (m) => opts.log(`[${s.name}] ${m}`),
    note: (m) => result.notes.push(m),
  };
  if (s.goal) result.goal = { text: s.goal.text, met: null };
  let setUp = false;
  try {
    const why = await s.available?.(ctx);
    if (why) {
      result.status = "skipped";
      result.reason = why;
      return result;
    }
    ctx.log("generating inputs");
    setUp = true;
    await s.setup(ctx);
    const sides: Side[] = [s.sluice, ...(s.peer ? [s.peer] : []), ...(s.extraPeers ?? [])];
    if (!opts.quick) {
      ctx.log("warm-up");
      if (s.warmup) await s.warmup(ctx);
      else for (const side of sides) await side.run();
    }
    const pairs = opts.quick ? 1 : Math.max(MIN_PAIRS, s.pairs ?? MIN_PAIRS);
    const samples: Sample[][] = sides.map(() => []);
    const before = loadavg()[0]!;
    for (let p = 0; p < pairs; p++) {
      for (const [i, side] of sides.entries()) samples[i]!.push(await side.run());
      ctx.log(
        `pair ${p + 1}/${pairs}: ${sides.map((sd, i) => `${short(sd.label)} ${samples[i]![p]!.ms.toFixed(0)} ms`).join(", ")}`,
      );
    }
    result.load = { before, after: loadavg()[0]! };
    result.pairs = pairs;
    result.sluice = stats(s.sluice, samples[0]!, result.notes);
    for (let i = 1; i < sides.length; i++) {
      const st = stats(sides[i]!, samples[i]!, result.notes);
      const ratios = samples[0]!.map((a, k) => a.ms / samples[i]![k]!.ms);
      result.peers.push({ ...st, ratios, ratioMedian: median(ratios) } satisfies PeerStats);
    }
    noiseNotes(result);
    if (s.breakdown) {
      ctx.log("breakdown");
      try {
        result.breakdown = await s.breakdown(ctx, result);
      } catch (e) {
        result.notes.push(`breakdown failed: ${(e as Error).message.split("\n")[0]}`);
      }
    }
    if (s.goal && !opts.quick) result.goal = { text: s.goal.text, met: s.goal.met(result) };
    const analysis = s.explain?.(result);
    if (analysis) result.analysis = analysis;
  } catch (e) {
    result.status = "failed";
    result.reason = (e as Error).message;
    ctx.log(`FAILED: ${result.reason}`);
  } finally {
    if (setUp) {
      try {
        await s.teardown(ctx);
      } catch (e) {
        result.notes.push(`teardown failed: ${(e as Error).message}`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
    result.durationMs = performance.now() - t0;
  }
  return result;
}

function short(label: string): string {
  return label.length > 28 ? `${label.slice(0, 27)}…` : label;
}

function stats(side: Side, xs: Sample[], notes: string[]): Stats {
  const ms = xs.map((x) => x.ms);
  const rss = xs.map((x) => x.rssKb).filter((x): x is number => typeof x === "number");
  const objs = [...new Set(xs.map((x) => x.objects).filter((x) => x !== undefined))];
  if (objs.length > 1) notes.push(`${side.label}: object counts differ between runs (${objs.join(", ")})`);
  const med = median(ms);
  const out: Stats = {
    label: side.label,
    n: ms.length,
    samplesMs: ms,
    medianMs: med,
    minMs: Math.min(...ms),
    maxMs: Math.max(...ms),
    rssSource: rss.length > 0 ? side.rss : "none",
  };
  if (ms.length >= 10) out.p95Ms = percentile(ms, 95);
  if (rss.length > 0) out.peakRssKb = Math.max(...rss);
  if (objs.length === 1 && objs[0] !== undefined) {
    out.objects = objs[0];
    out.objectsPerSec = objs[0] / (med / 1000);
  }
  return out;
}

/** Flags runs that other work on the machine probably disturbed. */
function noiseNotes(r: ScenarioResult): void {
  const cores = cpus().length;
  const load = Math.max(r.load?.before ?? 0, r.load?.after ?? 0);
  if (load > cores * 0.75) {
    r.notes.push(
      `load average ${load.toFixed(1)} on ${cores} cores during the run: other processes competed for the CPU, so absolute times are inflated and noisy (ratios from alternating pairs are more robust)`,
    );
  }
  for (const st of [r.sluice, ...r.peers]) {
    if (st && st.n >= 3 && st.maxMs / st.minMs > 1.5) {
      r.notes.push(
        `${st.label}: samples spread from ${st.minMs.toFixed(0)} to ${st.maxMs.toFixed(0)} ms (max/min ${(st.maxMs / st.minMs).toFixed(2)}): noisy`,
      );
    }
  }
}
