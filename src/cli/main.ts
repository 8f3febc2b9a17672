/**
 * The `sluice` command. Each subcommand lives in its own file and registers itself here;
 * every failure prints `error: …` (and `hint: …`) on stderr and exits 2, with nothing on stdout.
 */
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { maskSecrets, render, toYamlStream } from "../render/index.js";
import { type RenderFlags, renderOptions, reportError } from "./common.js";
import { addRenderFlags } from "./flags.js";

type Registrar = (program: Command) => void;

/**
 * Subcommands other than `render` are loaded only when named (their modules pull in the store,
 * the server and the targets: ~250 ms of start-up that `render` should not pay). Help loads all.
 */
const lazy: [names: string[], load: () => Promise<Registrar>][] = [
  [["apply", "diff"], async () => (await import("./local.js")).registerLocal],
  [["serve"], async () => (await import("./serve.js")).registerServe],
  [
    ["get", "reconcile", "suspend", "resume", "events", "env", "promote", "rollback", "rollout", "build"],
    async () => (await import("./remote.js")).registerRemoteCommands,
  ],
  [["demo"], async () => (await import("./demo.js")).registerDemo],
  [["image"], async () => (await import("./image.js")).registerImage],
  [["stack"], async () => (await import("./stack.js")).registerStack],
  [["plan"], async () => (await import("./plan.js")).registerPlan],
  [["bootstrap", "uninstall", "shards"], async () => (await import("./bootstrap.js")).registerCluster],
];

export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command("sluice")
    .description("GitOps delivery engine: Git in, built, deployed, verified environments out")
    .version(version(), "-V, --version", "print the version")
    .showHelpAfterError()
    .exitOverride();

  addRenderFlags(
    program
      .command("render")
      .description("print the objects PATH renders to (kustomize or plain YAML, SOPS, ${VAR} substitution)")
      .argument("<path>", "directory (with or without a kustomization) or file")
      .addOption(
        new Option("-o, --output <format>", "output format").choices(["yaml", "json"]).default("yaml"),
      )
      .option("--show-secrets", "print Secret values instead of ***"),
  ).action(async (path: string, flags: RenderFlags & { output: string; showSecrets?: boolean }) => {
    const result = await render(await renderOptions(path, flags));
    const objects = flags.showSecrets ? result.objects : maskSecrets(result.objects);
    process.stdout.write(
      flags.output === "json" ? `${JSON.stringify(objects, null, 2)}\n` : toYamlStream(objects),
    );
  });
  const named = argv[2];
  if (named === "--version" || named === "-V") return program;
  const wanted = lazy.filter(
    ([names]) => named === undefined || names.includes(named) || !lazy.some(([n]) => n.includes(named)),
  );
  for (const [, load] of named === "render" ? [] : wanted) (await load())(program);
  return program;
}

/** The package's version (package.json two levels above src/cli and dist/cli). */
function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Exits once stdout and stderr have drained: process.exit() on a pipe would cut output short. */
export function exitAfterFlush(code: number): void {
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code === "string" && code.startsWith("commander.")) {
      if (code === "commander.helpDisplayed" || code === "commander.version" || code === "commander.help")
        return 0;
      return 2;
    }
    return reportError(e);
  }
}

// Run when executed directly (`tsx src/cli/main.ts …`); bin/sluice.js calls main() itself.
if (/[\\/]cli[\\/]main\.[jt]s$/.test(process.argv[1] ?? "")) {
  main(process.argv).then(exitAfterFlush);
}
