/** Shared CLI plumbing: repository-root discovery, variable flags, error printing, exit codes. */
import { execFileSync } from "node:child_process";
import { realpathSync, statSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { isInside, isSluiceError, SluiceError } from "../core/index.js";
import { readOverride } from "../envs/index.js";
import type { RenderOptions } from "../render/index.js";

/** Exit codes: 0 success, 1 "differs" (diff) or a failed check, 2 an error. */
export const EXIT_DIFFERS = 1;
export const EXIT_ERROR = 2;

export interface RenderFlags {
  var?: string[];
  varsFile?: string[];
  allowUndefined?: boolean;
  ageKeyFile?: string;
  root?: string;
  allowRemoteResources?: boolean;
  maxFileBytes?: string;
  maxObjects?: string;
}

/** The repository root for a path: --root, else the enclosing Git work tree, else the path's folder. */
export function repositoryRoot(path: string, explicit?: string): string {
  if (explicit) return realpathSync(explicit);
  const abs = resolve(path);
  const dir = statSync(abs).isDirectory() ? abs : dirname(abs);
  try {
    const top = execFileSync("git", ["-C", dir, "rev-parse", "--show-toplevel"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    if (top) return realpathSync(top);
  } catch {
    // not in a Git work tree
  }
  const cwd = realpathSync(process.cwd());
  return isInside(cwd, realpathSync(dir)) ? cwd : realpathSync(dir);
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseVarFlags(list: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf("=");
    if (i <= 0) throw new SluiceError("ConfigInvalid", `--var ${JSON.stringify(kv)}: expected NAME=value`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new SluiceError("ConfigInvalid", `${flag} ${v}: expected a positive whole number`);
  return n;
}

/** Turns render flags into RenderOptions (age identities are loaded only if any source is set). */
export async function renderOptions(path: string, flags: RenderFlags): Promise<RenderOptions> {
  const root = repositoryRoot(path, flags.root);
  const abs = realpathSync(resolve(path));
  // The SOPS module (and its crypto) loads only when an age identity is configured.
  const wantIds = flags.ageKeyFile || process.env.SOPS_AGE_KEY_FILE || process.env.SOPS_AGE_KEY;
  const ids = wantIds
    ? await (await import("../sops/index.js")).loadAgeIdentities({
        keyFile: flags.ageKeyFile,
        env: process.env,
      })
    : { identities: [] };
  const limits: RenderOptions["limits"] = {};
  const mfb = positiveInt("--max-file-bytes", flags.maxFileBytes);
  const mo = positiveInt("--max-objects", flags.maxObjects);
  if (mfb) limits.maxFileBytes = mfb;
  if (mo) limits.maxObjects = mo;
  // A local override (.sluice/override.yaml, ignored by Git) makes this working copy render as
  // the named environment, whatever its branch: its variables form the environment layer.
  const override = readOverride(root);
  return {
    root,
    path: relative(root, abs) || ".",
    ...(override ? { environmentVars: { ...override.vars, ENV: override.config } } : {}),
    vars: parseVarFlags(flags.var),
    varsFiles: (flags.varsFile ?? []).map((f) => resolve(f)),
    allowUndefined: flags.allowUndefined ?? false,
    ageIdentities: ids,
    allowRemoteResources: flags.allowRemoteResources ?? false,
    limits,
  };
}

/** Prints an error the way every command does, and returns the exit code. */
export function reportError(e: unknown): number {
  if (isSluiceError(e)) {
    process.stderr.write(`error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
  } else {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  return EXIT_ERROR;
}
