/**
 * `sluice stack plan|apply|destroy|output [UNIT...]`: a Stack's OpenTofu units in dependency
 * order, independent ones in parallel; a progress line per unit while it runs, the summary table at
 * the end. Exit codes: 0 done (plan: no changes), 1 an error or a failed unit, 2 plan has changes
 * (like `tofu plan -detailed-exitcode`).
 */
import { existsSync } from "node:fs";
import { relative, resolve } from "node:path";
import type { Command } from "commander";
import { isSluiceError, SluiceError } from "../core/index.js";
import { readOverride } from "../envs/index.js";
import {
  formatEvent,
  formatSummary,
  loadStacks,
  pickStack,
  runStack,
  type StackAction,
} from "../infra/index.js";
import { collect, parseVarFlags, repositoryRoot } from "./common.js";

interface StackFlags {
  env?: string;
  dir: string;
  stack?: string;
  parallelism?: string;
  stateDir?: string;
  root?: string;
  var?: string[];
  varsFile?: string[];
  tofu?: string;
  json?: boolean;
}

const EXIT_ERROR = 1;
const EXIT_CHANGES = 2;

export function registerStack(program: Command): void {
  const stack = program
    .command("stack")
    .description("plan, apply, destroy or read a Stack of OpenTofu units (Terragrunt-style run-all)");
  const actions: [StackAction, string][] = [
    [
      "plan",
      "plan every unit (mockOutputs stand in for dependencies without state); exit 2 when something would change",
    ],
    ["apply", "apply the units in dependency order, independent ones in parallel (never with mockOutputs)"],
    ["destroy", "destroy the units in reverse dependency order"],
    ["output", "print the units' outputs (sensitive values masked)"],
  ];
  for (const [action, description] of actions) {
    stack
      .command(action)
      .description(description)
      .argument("[unit...]", "only these units (default: all); dependencies' outputs are read from state")
      .option(
        "--env <name>",
        "environment whose state to use (default: .sluice/override.yaml's config, else local)",
      )
      .option("--dir <path>", "file or directory holding the Stack", ".")
      .option("--stack <name>", "the Stack to run when the path holds several")
      .option("--parallelism <n>", "most units at once (default: the Stack's, else the number of cores)")
      .option(
        "--state-dir <dir>",
        "Sluice's state directory (default: $SLUICE_STATE_DIR, else .sluice/state)",
      )
      .option("--root <dir>", "repository root (default: the enclosing Git work tree)")
      .option(
        "--var <NAME=value>",
        "set a variable for the inputs (highest precedence; repeatable)",
        collect,
        [],
      )
      .option(
        "--vars-file <file>",
        "read variables from a replace.json, vars.yaml or .env file (repeatable)",
        collect,
        [],
      )
      .option(
        "--tofu <binary>",
        "the tofu or terraform binary (default: $SLUICE_TOFU, ~/.cache/sluice/bin/tofu, PATH)",
      )
      .option("--json", "print the result as JSON instead of the table (progress still goes to stderr)")
      .action(async (units: string[], flags: StackFlags) => {
        process.exitCode = await stackCommand(action, units, flags);
      });
  }
}

async function stackCommand(action: StackAction, units: string[], flags: StackFlags): Promise<number> {
  try {
    const dir = resolve(flags.dir);
    const root = repositoryRoot(dir, flags.root);
    const where = relative(root, dir) || ".";
    const def = pickStack(loadStacks(root, where), flags.stack, where);
    const override = existsSync(root) ? readOverride(root) : undefined;
    const env = flags.env ?? override?.config ?? "local";
    let parallelism: number | undefined;
    if (flags.parallelism !== undefined) {
      parallelism = Number(flags.parallelism);
      if (!Number.isSafeInteger(parallelism) || parallelism < 1)
        throw new SluiceError(
          "ConfigInvalid",
          `--parallelism ${flags.parallelism}: expected a positive whole number`,
        );
    }
    const started = Date.now();
    const stamp = (at: number) => `[${((at - started) / 1000).toFixed(1).padStart(5)}s]`;
    const progress = action === "output" ? process.stderr : flags.json ? process.stderr : process.stdout;
    const result = await runStack({
      root,
      stack: def,
      action,
      env,
      stateDir: resolve(flags.stateDir ?? process.env.SLUICE_STATE_DIR ?? ".sluice/state"),
      ...(units.length ? { units } : {}),
      ...(parallelism ? { parallelism } : {}),
      ...(override ? { environmentVars: { ...override.vars, ENV: override.config } } : {}),
      vars: parseVarFlags(flags.var),
      varsFiles: (flags.varsFile ?? []).map((f) => resolve(f)),
      ...(flags.tofu ? { tofu: { binary: flags.tofu } } : {}),
      onEvent: (e) => {
        if (e.type === "step") return;
        progress.write(`${stamp(e.at)} ${formatEvent(e)}\n`);
      },
    });
    if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      if (action === "output") {
        for (const u of result.units) {
          if (!u.outputs) continue;
          process.stdout.write(`${u.unit}:\n`);
          for (const [k, v] of Object.entries(u.outputs))
            process.stdout.write(
              `  ${k} = ${typeof v.value === "string" ? v.value : JSON.stringify(v.value)}\n`,
            );
        }
      }
      process.stdout.write(`\n${formatSummary(result)}\n`);
    }
    if (!result.ok) return EXIT_ERROR;
    return action === "plan" && result.changes ? EXIT_CHANGES : 0;
  } catch (e) {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (isSluiceError(e) && e.hint) process.stderr.write(`hint: ${e.hint}\n`);
    return EXIT_ERROR;
  }
}
