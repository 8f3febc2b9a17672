/** The Sluice side of CLI scenarios: the compiled CLI (dist/), built when missing. */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

/** Path of the compiled CLI; `SLUICE_BENCH_CLI` points at another build (e.g. an older checkout). */
export function cliPath(repo: string): string {
  return process.env.SLUICE_BENCH_CLI
    ? resolve(process.env.SLUICE_BENCH_CLI)
    : join(repo, "dist", "cli", "main.js");
}

/** Builds dist/ with tsc when the CLI is missing (tsc emits even when other modules have type errors). */
export function ensureCli(repo: string, log: (m: string) => void): string {
  const cli = cliPath(repo);
  if (existsSync(cli)) return cli;
  log("dist/ is missing: building it with `npx tsc -p tsconfig.json`");
  try {
    execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    if (!existsSync(cli)) throw e;
    log("tsc reported type errors; benchmarking the JavaScript it emitted");
  }
  return cli;
}

/** Why the CLI cannot render right now (e.g. a module another change left half-done), or undefined. */
export function cliBroken(cli: string, cwd: string): string | undefined {
  try {
    execFileSync(process.execPath, [cli, "--help"], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
    return undefined;
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString("utf8") ?? String(e);
    const line = err.split("\n").find((l) => /Error|error:/.test(l)) ?? err.split("\n")[0];
    return `the Sluice CLI does not start: ${line?.trim()}`;
  }
}
