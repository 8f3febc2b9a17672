/** The flags every rendering command shares (render, apply, diff). */
import type { Command } from "commander";
import { collect } from "./common.js";

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
