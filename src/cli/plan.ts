/**
 * `sluice plan --base REF --head REF`: what merging head into base would change in every
 * environment (an Atlantis-style plan for a pull request). Both revisions are read from the Git
 * repository at --dir, privately (the working copy is not touched); every unit of every
 * environment is rendered at both and compared. Exit codes follow `terraform plan
 * -detailed-exitcode`: 0 nothing changes, 2 something does, 1 an error (also for a unit that
 * does not render at the head).
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { type Command, Option } from "commander";
import { SluiceError } from "../core/index.js";
import {
  DEFAULT_CONFIG_PATH,
  formatPlanMarkdown,
  formatPlanText,
  type LivePlanner,
  planRevisions,
} from "../plan/index.js";
import type { Target } from "../targets/index.js";
import { collect, parseVarFlags, reportError } from "./common.js";

interface PlanFlags {
  base?: string;
  head?: string;
  env: string[];
  branch: string[];
  var: string[];
  dir?: string;
  config: string;
  output: "text" | "json" | "markdown";
  live?: boolean;
  stacks?: boolean;
  kubeconfig?: string;
  stateDir?: string;
  ageKeyFile?: string;
  planUrl?: string;
  maxChars?: string;
}

const EXIT_PLAN_ERROR = 1;

export function registerPlan(program: Command): void {
  program
    .command("plan")
    .description(
      "show what merging --head into --base changes in each environment; exit 0 no changes, 2 changes, 1 error",
    )
    // Checked in the action (not requiredOption) so that a missing one exits 1 like every plan error.
    .option("--base <ref>", "the revision merged into (branch, tag or commit); required")
    .option("--head <ref>", "the revision to merge (branch, tag or commit); required")
    .option("--env <name>", "plan only this environment (repeatable)", collect, [])
    .option("--branch <name>", "also plan the environment of this branch (repeatable)", collect, [])
    .option(
      "--var <NAME=value>",
      "set a variable at both revisions (highest precedence; repeatable)",
      collect,
      [],
    )
    .option("--dir <dir>", "the Git repository (default: the current directory)")
    .option("--config <path>", "the configuration inside the repository", DEFAULT_CONFIG_PATH)
    .addOption(
      new Option("-o, --output <format>", "output format")
        .choices(["text", "json", "markdown"])
        .default("text"),
    )
    .option("--live", "also show what the live target would change (local, or the environment's cluster)")
    .option(
      "--kubeconfig <file>",
      "with --live, for kubernetes targets (default $KUBECONFIG or ~/.kube/config)",
    )
    .option("--state-dir <dir>", "with --live: the local target's state directory (shared with sluice serve)")
    .option(
      "--age-key-file <file>",
      "age identities for SOPS decryption (else SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)",
    )
    .option(
      "--stacks",
      "also run `tofu plan` for every Stack of the head in each environment (state: --state-dir)",
    )
    .option("--plan-url <url>", "with -o markdown: where the full plan is, linked when the comment is cut")
    .option("--max-chars <n>", "with -o markdown: longest comment", "60000")
    .action(async (flags: PlanFlags) => {
      const targets = new Map<string, Promise<Target>>();
      try {
        if (!flags.base || !flags.head)
          throw new SluiceError("ConfigInvalid", `sluice plan needs --${flags.base ? "head" : "base"}`, {
            hint: "e.g. sluice plan --base main --head my-branch",
          });
        const maxChars = Number(flags.maxChars);
        if (!Number.isSafeInteger(maxChars) || maxChars < 1000)
          throw new SluiceError("ConfigInvalid", `--max-chars ${flags.maxChars}: expected a number ≥ 1000`);
        const wantIds = flags.ageKeyFile || process.env.SOPS_AGE_KEY_FILE || process.env.SOPS_AGE_KEY;
        const ageIdentities = wantIds
          ? await (await import("../sops/index.js")).loadAgeIdentities({
              keyFile: flags.ageKeyFile,
              env: process.env,
            })
          : undefined;
        const live: LivePlanner | undefined = flags.live
          ? async (env, unit, objects) => {
              let t = targets.get(env.target);
              if (!t) {
                t = openTarget(env.target, flags);
                targets.set(env.target, t);
              }
              return (await t).plan({ env: env.name, unit }, objects);
            }
          : undefined;
        const plan = await planRevisions({
          repo: resolve(flags.dir ?? "."),
          base: flags.base,
          head: flags.head,
          configPath: flags.config,
          ...(flags.env.length ? { environments: flags.env } : {}),
          ...(flags.branch.length ? { branches: flags.branch } : {}),
          ...(flags.var.length ? { vars: parseVarFlags(flags.var) } : {}),
          ...(ageIdentities ? { ageIdentities } : {}),
          ...(live ? { live } : {}),
          ...(flags.stacks
            ? {
                stacks: {
                  stateDir: resolve(flags.stateDir ?? process.env.SLUICE_STATE_DIR ?? ".sluice/state"),
                },
              }
            : {}),
        });
        if (flags.output === "json") process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
        else if (flags.output === "markdown")
          process.stdout.write(
            formatPlanMarkdown(plan, { maxChars, ...(flags.planUrl ? { fullPlanUrl: flags.planUrl } : {}) }),
          );
        else process.stdout.write(formatPlanText(plan));
        process.exitCode = plan.exitCode;
      } catch (e) {
        reportError(e);
        process.exitCode = EXIT_PLAN_ERROR;
      } finally {
        for (const t of targets.values()) await t.then((x) => x.close()).catch(() => undefined);
      }
    });
}

async function openTarget(name: string, flags: PlanFlags): Promise<Target> {
  if (name === "local") {
    const { createLocalTarget } = await import("../targets/local/index.js");
    const stateDir = resolve(flags.stateDir ?? process.env.SLUICE_STATE_DIR ?? ".sluice/state");
    return createLocalTarget({ stateDir: join(stateDir, "local") });
  }
  const m = /^kubernetes(?::(.+))?$/.exec(name);
  if (!m)
    throw new SluiceError("TargetUnavailable", `unknown target ${name}`, {
      hint: "use local, kubernetes or kubernetes:<context>",
    });
  const { createKubernetesTarget } = await import("../targets/kubernetes/index.js");
  const kubeconfig = flags.kubeconfig ?? process.env.KUBECONFIG ?? join(homedir(), ".kube", "config");
  return createKubernetesTarget({ kubeconfig, ...(m[1] ? { context: m[1] } : {}) });
}
