/**
 * The contract between the runner (bench/main.ts) and the scenarios (bench/scenarios/*.ts).
 *
 * A scenario file default-exports one `Scenario`. The runner calls `available()` (optional),
 * `setup(ctx)`, then alternates `sluice()` and `peer()` (and any `extraPeers`) after a warm-up,
 * then `breakdown()` (optional), then `teardown()` — always, even after a failure.
 */

/** One timed run of one side. */
export interface Sample {
  /** Wall-clock time of the measured work, in milliseconds. */
  ms: number;
  /** Peak resident set size in KiB, when it could be measured. */
  rssKb?: number;
  /** Objects the run produced (used for objects/s and checked to be the same every run). */
  objects?: number;
}

/** Where a side's peak RSS comes from. */
export type RssSource =
  /** `/usr/bin/time -f %M` around the child process (the largest process of its tree). */
  | "child:/usr/bin/time"
  /** `process.resourceUsage().maxRSS` of the benchmark process itself (an upper bound). */
  | "in-process:maxRSS"
  /** VmRSS from /proc/<pid>/status of the measured process (a long-running child). */
  | "proc:VmRSS"
  | "none";

export interface Side {
  /** Shown in tables: the command or call being timed. */
  label: string;
  /** How `Sample.rssKb` is measured. */
  rss: RssSource;
  run(): Promise<Sample>;
}

export interface Context {
  /** True for `--quick`: tiny inputs, one pair, no warm-up. */
  quick: boolean;
  /** A private temporary directory for this scenario's inputs; removed by the runner afterwards. */
  dir: string;
  /** The Sluice checkout (/work/main). */
  repo: string;
  /** Progress output for the person watching (stderr). */
  log(msg: string): void;
  /** Adds a note to the scenario's report. */
  note(msg: string): void;
}

export interface Phase {
  name: string;
  ms: number;
  note?: string;
  /**
   * Kind of cost: paid once per process, the peer's own work, growing with the objects, what is
   * left of the measured time, or an extra step outside the timed work (shown, not counted).
   */
  group?: "per-process" | "peer-work" | "per-object" | "rest" | "extra";
}

/** Where the time of the Sluice side goes, measured by timing the pieces. */
export interface Breakdown {
  /** What was measured, and how. */
  method: string;
  phases: Phase[];
  /** Hottest functions by self time from a CPU profile, when one was taken. */
  profile?: { fn: string; where: string; selfMs: number; pct: number }[];
  /** The same profile's self time grouped by where the code lives. */
  profileAreas?: { area: string; selfMs: number; pct: number }[];
  notes?: string[];
}

export interface Goal {
  /** The goal as its issue states it, e.g. "overhead over kubectl kustomize under 15%". */
  text: string;
  met(result: ScenarioResult): boolean;
}

export interface Scenario {
  name: string;
  /** One or two sentences: the inputs and what each side does. */
  description: string;
  goal?: Goal;
  /** Pairs (A B) timed in a full run; at least 5. Quick runs time one. */
  pairs?: number;
  /** Why the scenario cannot run here (a missing tool, a module not landed), or undefined. */
  available?(ctx: Context): Promise<string | undefined>;
  /** Generates inputs and checks that every side works (and produces the same objects). */
  setup(ctx: Context): Promise<void>;
  /** Replaces the default warm-up (one run of every side) when that would take too long. */
  warmup?(ctx: Context): Promise<void>;
  sluice: Side;
  peer?: Side;
  /** More peers timed in the same alternation (A B C …); ratios are reported for each. */
  extraPeers?: Side[];
  /** Called after the timed runs, with their statistics (e.g. to account for the whole median). */
  breakdown?(ctx: Context, result: ScenarioResult): Promise<Breakdown>;
  /** A short reading of the numbers (computed from them, not canned), shown under the breakdown. */
  explain?(result: ScenarioResult): string | undefined;
  teardown(ctx: Context): Promise<void>;
}

export interface Stats {
  label: string;
  n: number;
  samplesMs: number[];
  medianMs: number;
  /** Nearest-rank 95th percentile; only when there are at least 10 samples. */
  p95Ms?: number;
  minMs: number;
  maxMs: number;
  peakRssKb?: number;
  rssSource: RssSource;
  objects?: number;
  objectsPerSec?: number;
}

export interface PeerStats extends Stats {
  /** Sluice / this peer, pair by pair. */
  ratios: number[];
  /** Median of the per-pair ratios. */
  ratioMedian: number;
}

export interface ScenarioResult {
  name: string;
  description: string;
  quick: boolean;
  date: string;
  command: string;
  status: "ok" | "skipped" | "failed";
  reason?: string;
  pairs: number;
  sluice?: Stats;
  peers: PeerStats[];
  goal?: { text: string; met: boolean | null };
  breakdown?: Breakdown;
  analysis?: string;
  /** 1-minute load average before and after the timed runs. */
  load?: { before: number; after: number };
  notes: string[];
  durationMs: number;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  kernel: string;
  node: string;
  kubectl?: string;
  kustomize?: string;
  timeTool: boolean;
}

export interface Report {
  date: string;
  command: string;
  quick: boolean;
  machine: Machine;
  results: ScenarioResult[];
}
