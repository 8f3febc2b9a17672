/**
 * The `sluice` command. Each subcommand lives in its own file and registers itself here;
 * every failure prints `error: …` (and `hint: …`) on stderr and exits 2, with nothing on stdout.
 */
import { Command, Option } from "commander";
import { maskSecrets, render, toYamlStream } from "../render/index.js";
import { type RenderFlags, renderOptions, reportError } from "./common.js";
import { registerDemo } from "./demo.js";
import { addRenderFlags } from "./flags.js";
import { registerLocal } from "./local.js";
import { registerRemoteCommands } from "./remote.js";
import { registerServe } from "./serve.js";

export function buildProgram(): Command {
  const program = new Command("sluice")
    .description("GitOps delivery engine: Git in, built, deployed, verified environments out")
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
  registerLocal(program);
  registerServe(program);
  registerRemoteCommands(program);
  registerDemo(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
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
  main(process.argv).then((code) => process.exit(code));
}
