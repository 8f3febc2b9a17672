/**
 * The `sluice` command. Each subcommand lives in its own file and registers itself here;
 * every failure prints `error: …` (and `hint: …`) on stderr and exits 2, with nothing on stdout.
 */
import { Command, Option } from "commander";
import { maskSecrets, render, toYamlStream } from "../render/index.js";
import { collect, type RenderFlags, renderOptions, reportError } from "./common.js";

export function addRenderFlags(cmd: Command): Command {
  return cmd
    .option("--var <NAME=value>", "set a variable (highest precedence; repeatable)", collect, [])
    .option(
      "--vars-file <file>",
      "read variables from a replace.json, vars.yaml or .env file (repeatable)",
      collect,
      [],
    )
    .option(
      "--allow-undefined",
      "undefined variables become empty strings (Flux's behaviour) instead of an error",
    )
    .option(
      "--age-key-file <file>",
      "age identities for SOPS decryption (else SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)",
    )
    .option(
      "--root <dir>",
      "repository root that every path must stay inside (default: the enclosing Git work tree)",
    )
    .option("--allow-remote-resources", "let kustomizations reference remote bases")
    .option("--max-file-bytes <n>", "largest file read from the repository")
    .option("--max-objects <n>", "most objects one render may produce");
}

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
