/**
 * `sluice apply` and `sluice diff` against the local target (or a cluster with --target kubernetes): render PATH (same flags as
 * `render`), then apply or plan it as unit `--unit` of environment `--env`. Services of the local
 * target are served by the process that runs them: with `apply` they answer while it waits; for
 * a lasting address run `sluice serve`.
 */
import { homedir } from "node:os";
import { basename, join, resolve } from "node:path";
import { type Command, Option } from "commander";
import { SluiceError } from "../core/index.js";
import { readOverride } from "../envs/index.js";
import { type ChangeSet, countActions } from "../plan/index.js";
import { render } from "../render/index.js";
import type { HealthReport, Target } from "../targets/index.js";
import { createLocalTarget } from "../targets/local/index.js";
import { EXIT_DIFFERS, type RenderFlags, renderOptions, repositoryRoot } from "./common.js";
import { addRenderFlags } from "./flags.js";
import { defaultStateDir } from "./serve.js";

interface LocalFlags extends RenderFlags {
  target: string;
  kubeconfig?: string;
  context?: string;
  env?: string;
  unit?: string;
  stateDir: string;
  prune?: boolean;
  wait?: boolean;
  timeout: string;
}

export function printChangeSet(
  cs: ChangeSet,
  out: (s: string) => void = (s) => process.stdout.write(s),
): void {
  const rows = cs.entries.map((e) => [e.action, e.subject, e.reason ?? ""]);
  const w0 = Math.max(6, ...rows.map((r) => r[0]!.length));
  const w1 = Math.max(7, ...rows.map((r) => r[1]!.length));
  out(`${"ACTION".padEnd(w0)}  ${"SUBJECT".padEnd(w1)}  REASON\n`);
  for (const r of rows) out(`${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}\n`.replace(/ +\n$/, "\n"));
  const c = countActions(cs);
  out(
    `\n${
      Object.entries(c)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${n} ${k}`)
        .join(", ") || "nothing"
    }\n`,
  );
}

function printHealth(h: HealthReport): void {
  process.stdout.write(`\nhealth: ${h.status}\n`);
  for (const o of h.objects)
    if (o.status !== "Healthy") process.stdout.write(`  ${o.subject}: ${o.status}: ${o.message}\n`);
}

function localCommand(cmd: Command): Command {
  return addRenderFlags(cmd)
    .addOption(
      new Option("--target <name>", "where to apply").choices(["local", "kubernetes"]).default("local"),
    )
    .option("--kubeconfig <file>", "with --target kubernetes (default $KUBECONFIG or ~/.kube/config)")
    .option("--context <name>", "with --target kubernetes: the kubeconfig context")
    .option("--env <name>", "environment the objects belong to (default: the local override's, else default)")
    .option("--unit <name>", "unit name (default: the last part of PATH)")
    .option("--state-dir <dir>", "state directory (shared with sluice serve)", defaultStateDir());
}

export function registerLocal(program: Command): void {
  localCommand(
    program
      .command("apply")
      .description("render PATH and apply it to the local target (or --target kubernetes)")
      .argument("<path>"),
  )
    .option("--prune", "delete objects of this unit's previous apply that PATH no longer renders")
    .option("--wait", "wait until everything is healthy")
    .option("--timeout <seconds>", "how long --wait waits", "300")
    .action(async (path: string, flags: LocalFlags) => {
      const objects = (await render(await renderOptions(path, flags))).objects;
      const target = await openTarget(flags);
      try {
        const unit = { env: envName(path, flags), unit: flags.unit ?? unitName(path) };
        const res = await target.apply(unit, objects, {
          prune: flags.prune ?? false,
          wait: flags.wait ?? false,
          timeoutMs: Number(flags.timeout) * 1000,
        });
        printChangeSet(res.changeSet);
        if (res.health) {
          printHealth(res.health);
          if (res.health.status !== "Healthy") process.exitCode = EXIT_DIFFERS;
        }
      } finally {
        await target.close();
      }
    });

  localCommand(
    program
      .command("diff")
      .description("show what apply would change; exit 0 in sync, 1 when it differs")
      .argument("<path>"),
  ).action(async (path: string, flags: LocalFlags) => {
    const objects = (await render(await renderOptions(path, flags))).objects;
    const target = await openTarget(flags);
    try {
      const cs = await target.plan(
        { env: envName(path, flags), unit: flags.unit ?? unitName(path) },
        objects,
      );
      printChangeSet(cs);
      const c = countActions(cs);
      if (c.created + c.configured + c.deleted > 0) process.exitCode = EXIT_DIFFERS;
    } finally {
      await target.close();
    }
  });
}

async function openTarget(flags: LocalFlags): Promise<Target> {
  if (flags.target === "kubernetes") {
    const { createKubernetesTarget } = await import("../targets/kubernetes/index.js");
    const kubeconfig = flags.kubeconfig ?? process.env.KUBECONFIG ?? join(homedir(), ".kube", "config");
    return createKubernetesTarget({ kubeconfig, ...(flags.context ? { context: flags.context } : {}) });
  }
  return createLocalTarget({ stateDir: join(resolve(flags.stateDir), "local") });
}

function envName(path: string, flags: LocalFlags): string {
  return flags.env ?? readOverride(repositoryRoot(path, flags.root))?.config ?? "default";
}

function unitName(path: string): string {
  const n = basename(resolve(path))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
  if (!n) throw new SluiceError("ConfigInvalid", `cannot derive a unit name from ${path}; pass --unit`);
  return n;
}
