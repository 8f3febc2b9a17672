/**
 * Where a unit lives on disk, and its working copy.
 *
 *   <stateDir>/infra/<env>/<stack>/<unit>/
 *     terraform.tfstate     OpenTofu's local backend (unless the unit declares its own backend)
 *     outputs.json          the outputs after the last apply (mode 0600), for Kubernetes units
 *     lock                  one run at a time (lock.ts)
 *     data/                 TF_DATA_DIR: providers, modules, backend settings; kept between runs
 *     src/<repo paths>      a fresh copy of the unit's directory (and of the local modules it uses,
 *                           at the same relative paths) + sluice_backend.tf.json + sluice.auto.tfvars.json
 *
 * `tofu init` runs only when the init key changes: the binary, the CLI configuration, and every line
 * of the configuration that decides providers, modules and backend (source/version lines,
 * module/provider/backend blocks, the providers that resource types imply, the lock file).
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, relative } from "node:path";
import { SluiceError, secureResolve } from "../core/index.js";
import type { ResolvedTofu } from "./types.js";

export interface UnitPaths {
  base: string;
  state: string;
  outputs: string;
  lock: string;
  data: string;
  src: string;
  /** The directory tofu runs in: src/<unit path>. */
  config: string;
}

const SAFE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function checkEnvName(env: string): void {
  if (!SAFE.test(env) || env.includes(".."))
    throw new SluiceError(
      "ConfigInvalid",
      `environment name ${JSON.stringify(env)} cannot name a state directory`,
      {
        hint: "use letters, digits, '.', '-' and '_'",
      },
    );
}

export function unitBase(stateDir: string, env: string, stack: string, unit: string): string {
  checkEnvName(env);
  return join(stateDir, "infra", env, stack, unit);
}

export function unitPaths(
  stateDir: string,
  env: string,
  stack: string,
  unit: string,
  unitPath: string,
): UnitPaths {
  const base = unitBase(stateDir, env, stack, unit);
  const src = join(base, "src");
  const rel = unitPath.replace(/^\.\/+/, "").replace(/\/+$/, "") || ".";
  return {
    base,
    state: join(base, "terraform.tfstate"),
    outputs: join(base, "outputs.json"),
    lock: join(base, "lock"),
    data: join(base, "data"),
    src,
    config: join(src, rel),
  };
}

const MODULE_SOURCE = /^\s*"?source"?\s*[=:]\s*"(\.{1,2}\/[^"]*)"/gm;

function tfFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".tf") || f.endsWith(".tf.json"))
    .sort();
}

/** The unit's directory and every local module directory it uses, transitively (repo-relative). */
function sourceDirs(root: string, unitDir: string, unitName: string): string[] {
  const out: string[] = [];
  const todo = [unitDir];
  while (todo.length) {
    const d = todo.pop()!;
    const rel = relative(root, d) || ".";
    if (out.includes(rel)) continue;
    out.push(rel);
    if (out.length > 200)
      throw new SluiceError("LimitExceeded", `unit ${unitName}: more than 200 local module directories`);
    for (const f of tfFiles(d)) {
      const text = readFileSync(join(d, f), "utf8");
      for (const m of text.matchAll(MODULE_SOURCE)) {
        const p = secureResolve(root, m[1]!.split("//")[0]!, d);
        if (existsSync(p) && statSync(p).isDirectory()) todo.push(p);
      }
    }
  }
  return out;
}

/** True when the unit's own files declare a backend (or `cloud`) block: Sluice then respects it. */
export function declaresBackend(configDir: string): boolean {
  for (const f of tfFiles(configDir)) {
    if (f === "sluice_backend.tf.json") continue; // ours
    const text = readFileSync(join(configDir, f), "utf8");
    if (f.endsWith(".tf.json")) {
      if (/"(backend|cloud)"\s*:/.test(text)) return true;
    } else if (/^\s*(backend\s+"[^"]+"|cloud)\s*\{/m.test(text.replace(/#.*$|\/\/.*$/gm, ""))) return true;
  }
  return false;
}

const INIT_RELEVANT =
  /^\s*(source|version)\s*=.*|^\s*(module|provider|backend)\s+"[^"]*"|^\s*(required_providers|cloud|encryption)\s*\{/;
const RESOURCE_TYPE = /^\s*(?:resource|data|ephemeral)\s+"([A-Za-z0-9-]+?)_/;

function initKey(t: ResolvedTofu, src: string, dirs: string[]): string {
  const h = createHash("sha256");
  try {
    const st = statSync(t.binary);
    h.update(`${t.binary}|${st.size}|${st.mtimeMs}\n`);
  } catch {
    h.update(`${t.binary}\n`);
  }
  if (t.cliConfigFile && existsSync(t.cliConfigFile)) h.update(readFileSync(t.cliConfigFile));
  for (const rel of [...dirs].sort()) {
    const d = join(src, rel);
    for (const f of tfFiles(d)) {
      const text = readFileSync(join(d, f), "utf8");
      h.update(`\n${rel}/${f}\n`);
      if (f.endsWith(".tf.json")) {
        h.update(text);
        continue;
      }
      const providers = new Set<string>();
      for (const line of text.split("\n")) {
        if (INIT_RELEVANT.test(line)) h.update(`${line.trim()}\n`);
        const r = RESOURCE_TYPE.exec(line);
        if (r) providers.add(r[1]!);
      }
      h.update([...providers].sort().join(","));
    }
    const lockFile = join(d, ".terraform.lock.hcl");
    if (existsSync(lockFile)) h.update(readFileSync(lockFile));
  }
  return h.digest("hex").slice(0, 32);
}

const SKIP = new Set([".terraform", ".git", ".terragrunt-cache"]);
const KEEP =
  /^(\.terraform\.lock\.hcl|terraform\.tfstate.*|sluice_backend\.tf\.json|sluice\.auto\.tfvars\.json)$/;

/** Makes `to` a copy of `from` (symlinks followed, each checked to stay inside root), writing only what changed. */
function syncTree(root: string, from: string, to: string, configDir: string): void {
  mkdirSync(to, { recursive: true });
  const want = new Set<string>();
  for (const name of readdirSync(from)) {
    if (SKIP.has(name)) continue;
    const src = join(from, name);
    let st = lstatSync(src);
    if (st.isSymbolicLink()) {
      secureResolve(root, src); // throws when it points outside the repository
      st = statSync(src);
    }
    want.add(name);
    const dst = join(to, name);
    if (st.isDirectory()) {
      if (existsSync(dst) && !lstatSync(dst).isDirectory()) rmSync(dst, { recursive: true, force: true });
      syncTree(root, src, dst, configDir);
    } else if (st.isFile()) {
      const data = readFileSync(src);
      let same = false;
      try {
        const d = lstatSync(dst);
        same = d.isFile() && d.size === data.length && readFileSync(dst).equals(data);
      } catch {
        // missing
      }
      if (!same) {
        rmSync(dst, { recursive: true, force: true });
        writeFileSync(dst, data, { mode: st.mode & 0o777 });
      }
    }
  }
  for (const name of readdirSync(to)) {
    if (want.has(name) || (to === configDir && KEEP.test(name))) continue;
    rmSync(join(to, name), { recursive: true, force: true });
  }
}

export interface PreparedUnit {
  paths: UnitPaths;
  /** The unit declares its own backend: state is not in the state directory. */
  customBackend: boolean;
  /** `tofu init` must run (first run, or providers/modules/backend changed). */
  needsInit: boolean;
  initKey: string;
}

/**
 * Brings src/ up to date with the unit (and its local modules), keeping the lock file OpenTofu
 * wrote and any state a declared local backend keeps beside the configuration; writes the backend
 * file.
 */
export function prepareWorkDir(
  root: string,
  unit: { name: string; path: string },
  paths: UnitPaths,
  t: ResolvedTofu,
): PreparedUnit {
  const unitDir = secureResolve(root, unit.path);
  if (!existsSync(unitDir) || !statSync(unitDir).isDirectory())
    throw new SluiceError(
      "NotFound",
      `unit ${unit.name}: path ${unit.path} is not a directory in the repository`,
      {
        detail: { unit: unit.name, path: unit.path },
      },
    );
  if (tfFiles(unitDir).length === 0)
    throw new SluiceError("ConfigInvalid", `unit ${unit.name}: ${unit.path} holds no .tf or .tf.json file`, {
      detail: { unit: unit.name, path: unit.path },
    });
  const dirs = sourceDirs(root, unitDir, unit.name);
  paths.config = join(paths.src, dirs[0]!); // the resolved path (a symlinked unit path differs)
  mkdirSync(paths.base, { recursive: true, mode: 0o700 });

  // Sync (not wipe and copy): unchanged files are left alone. What OpenTofu and Sluice write next
  // to the configuration stays: the lock file (unless the repository has one), the state of a
  // declared local backend without a path, the generated backend and inputs files.
  for (const rel of dirs) syncTree(root, join(root, rel), join(paths.src, rel), paths.config);
  const customBackend = declaresBackend(unitDir);
  const backendFile = join(paths.config, "sluice_backend.tf.json");
  if (!customBackend) {
    writeIfChanged(
      backendFile,
      `${JSON.stringify({ terraform: { backend: { local: { path: paths.state } } } }, null, 2)}\n`,
    );
  } else rmSync(backendFile, { force: true });
  const key = initKey(t, paths.src, dirs);
  const keyFile = join(paths.data, "sluice-init-key");
  const needsInit = !existsSync(keyFile) || readFileSync(keyFile, "utf8").trim() !== key;
  return { paths, customBackend, needsInit, initKey: key };
}

export function recordInit(paths: UnitPaths, key: string): void {
  mkdirSync(paths.data, { recursive: true });
  writeFileSync(join(paths.data, "sluice-init-key"), `${key}\n`);
}

function writeIfChanged(path: string, text: string, mode = 0o644): void {
  try {
    if (readFileSync(path, "utf8") === text) return;
  } catch {
    // missing
  }
  writeFileSync(path, text, { mode });
}

export function writeInputs(paths: UnitPaths, inputs: Record<string, unknown>): void {
  mkdirSync(paths.config, { recursive: true });
  writeIfChanged(
    join(paths.config, "sluice.auto.tfvars.json"),
    `${JSON.stringify(inputs, null, 2)}\n`,
    0o600,
  );
}
