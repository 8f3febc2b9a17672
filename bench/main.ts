/**
 * The benchmark suite: `node --import tsx bench/main.ts [SCENARIO...] [--json FILE] [--quick]`
 * (or `npm run bench -- …`). Every file in bench/scenarios/ default-exports one Scenario; each
 * runs Sluice and its peer alternately and reports medians, ratios, peak RSS and the machine.
 * A full run (not --quick) also updates docs/benchmarks.json and regenerates docs/benchmarks.md.
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { machine } from "./lib/machine.js";
import { cleanupProc } from "./lib/proc.js";
import { machineLine, markdown, textTable } from "./lib/report.js";
import { runScenario } from "./lib/runner.js";
import type { Report, Scenario, ScenarioResult } from "./lib/types.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const scenariosDir = join(repo, "bench", "scenarios");
const docMd = join(repo, "docs", "benchmarks.md");
const docJson = join(repo, "docs", "benchmarks.json");

const USAGE = `usage: npm run bench -- [SCENARIO...] [--json FILE] [--quick] [--list]
  SCENARIO   run only these (default: all in bench/scenarios/)
  --json F   write machine-readable results to F (bare --json: bench/results/latest.json)
  --quick    one pair per scenario, no warm-up, tiny inputs (a smoke check; docs are not touched)
  --list     print the scenarios and exit
  --doc-only regenerate docs/benchmarks.md from docs/benchmarks.json (after a change of format)`;

export async function loadScenarios(): Promise<Scenario[]> {
  const files = readdirSync(scenariosDir)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .sort();
  const out: Scenario[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(scenariosDir, f)).href)) as { default?: Scenario };
    const s = mod.default;
    if (!s || typeof s.name !== "string" || !s.sluice)
      throw new Error(`bench/scenarios/${f} must default-export a Scenario`);
    if (`${s.name}.ts` !== f)
      throw new Error(`bench/scenarios/${f} exports scenario "${s.name}": name the file after it`);
    out.push(s);
  }
  return out;
}

interface Args {
  names: string[];
  json?: string;
  quick: boolean;
  list: boolean;
  docOnly: boolean;
}

function parseArgs(argv: string[], known: Set<string>): Args {
  const a: Args = { names: [], quick: false, list: false, docOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === "--quick") a.quick = true;
    else if (x === "--list") a.list = true;
    else if (x === "--doc-only") a.docOnly = true;
    else if (x === "--help" || x === "-h") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (x.startsWith("--json=")) a.json = x.slice("--json=".length);
    else if (x === "--json") {
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith("--") && !known.has(next)) {
        a.json = next;
        i++;
      } else a.json = join(repo, "bench", "results", "latest.json");
    } else if (x.startsWith("-")) throw new Error(`unknown option ${x}\n${USAGE}`);
    else if (known.has(x)) a.names.push(x);
    else throw new Error(`unknown scenario ${x}; known: ${[...known].join(", ")}`);
  }
  return a;
}

/** Keeps results of scenarios not run this time, so a partial run does not erase the others. */
function mergeWithPrevious(rep: Report, all: Scenario[]): Report {
  if (!existsSync(docJson)) return rep;
  try {
    const prev = JSON.parse(readFileSync(docJson, "utf8")) as Report;
    const ran = new Set(rep.results.map((r) => r.name));
    const known = new Set(all.map((s) => s.name));
    const kept = prev.results.filter((r) => !ran.has(r.name) && known.has(r.name));
    const order = all.map((s) => s.name);
    return {
      ...rep,
      results: [...rep.results, ...kept].sort((x, y) => order.indexOf(x.name) - order.indexOf(y.name)),
    };
  } catch {
    return rep;
  }
}

/** Writes the doc in the repository's format (biome formats Markdown too: padded tables). */
function writeDoc(rep: Report): void {
  writeFileSync(docMd, markdown(rep));
  try {
    execFileSync(join(repo, "node_modules", ".bin", "biome"), ["format", "--write", docMd], {
      cwd: repo,
      stdio: "ignore",
    });
  } catch {
    process.stderr.write("warning: could not format docs/benchmarks.md with biome\n");
  }
}

async function main(): Promise<number> {
  const all = await loadScenarios();
  const args = parseArgs(process.argv.slice(2), new Set(all.map((s) => s.name)));
  if (args.list) {
    for (const s of all) process.stdout.write(`${s.name}\t${s.goal ? `goal: ${s.goal.text}` : "no goal"}\n`);
    return 0;
  }
  if (args.docOnly) {
    writeDoc(JSON.parse(readFileSync(docJson, "utf8")) as Report);
    process.stderr.write("docs/benchmarks.md regenerated from docs/benchmarks.json\n");
    return 0;
  }
  const chosen = args.names.length > 0 ? all.filter((s) => args.names.includes(s.name)) : all;
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const m = machine();
  log(`machine: ${machineLine(m)}`);
  if (!m.timeTool)
    log("note: /usr/bin/time is missing (Debian package `time`): child RSS will not be measured");
  const tmpRoot = mkdtempSync(join(tmpdir(), "sluice-bench-"));
  const results: ScenarioResult[] = [];
  try {
    for (const s of chosen) {
      log(`==> ${s.name}${args.quick ? " (quick)" : ""}`);
      results.push(await runScenario(s, { quick: args.quick, repo, command, tmpRoot, log }));
    }
  } finally {
    rmSync(tmpRoot, { recursive: true, force: true });
    cleanupProc();
  }
  const rep: Report = { date: new Date().toISOString(), command, quick: args.quick, machine: m, results };
  process.stdout.write(`\n${textTable(results)}\n\nmachine: ${machineLine(m)}; ${rep.date}\n`);
  for (const r of results) for (const n of r.notes) process.stdout.write(`note (${r.name}): ${n}\n`);
  if (args.json) {
    mkdirSync(dirname(resolve(args.json)), { recursive: true });
    writeFileSync(args.json, `${JSON.stringify(rep, null, 2)}\n`);
    log(`results written to ${args.json}`);
  }
  if (!args.quick) {
    const merged = mergeWithPrevious(rep, all);
    writeFileSync(docJson, `${JSON.stringify(merged, null, 2)}\n`);
    writeDoc(merged);
    log(`docs/benchmarks.md and docs/benchmarks.json updated`);
  }
  return results.some((r) => r.status === "failed") ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    process.exit(2);
  },
);
