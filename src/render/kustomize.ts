/**
 * Runs the real kustomize, the way Argo CD does: the `kustomize` binary when one is on PATH,
 * else `kubectl kustomize`. Before the build, every kustomization reachable from the rendered
 * directory is walked and each path it names is checked to stay inside the repository (kustomize
 * itself lets a base be any directory on disk), and remote resources, Helm charts and plugin
 * generators are refused unless allowed: repository content must never reach the network or run
 * programs (Flux CVE-2021-41254, Argo CD CVE-2022-24348).
 */
import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { parseYamlOne, SluiceError, secureReadFile, secureResolve } from "../core/index.js";

const run = promisify(execFile);

export const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"] as const;

export function kustomizationFile(dir: string): string | undefined {
  for (const f of KUSTOMIZATION_FILES) {
    const p = join(dir, f);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export interface KustomizeTree {
  /** Every file the build reads (kustomization files, resources, patches, generator inputs). */
  files: string[];
}

// `git::https://…` (go-getter's forced getter, which kustomize honours) is remote too.
const URL_LIKE =
  /^(?:[a-z][a-z0-9+.-]*::|[a-z][a-z0-9+.-]*:\/\/|git@|github\.com\/|gitlab\.com\/|bitbucket\.org\/)/i;

/** Walks the kustomization graph from `dir`, confining every referenced path to `root`. */
export function walkKustomization(
  root: string,
  dir: string,
  opts: { allowRemote: boolean; maxFileBytes: number },
): KustomizeTree {
  const files = new Set<string>();
  const seen = new Set<string>();
  const visit = (d: string, via: string) => {
    if (seen.has(d)) return;
    seen.add(d);
    const kf = kustomizationFile(d);
    if (!kf)
      throw new SluiceError(
        "KustomizeFailed",
        `${rel(root, d)}: referenced from ${via} but holds no kustomization.yaml`,
        { detail: { file: via } },
      );
    files.add(kf);
    const file = rel(root, kf);
    const k = (parseYamlOne(secureReadFile(root, kf, opts.maxFileBytes), file)?.value ?? {}) as Record<
      string,
      unknown
    >;
    if (typeof k !== "object" || Array.isArray(k))
      throw new SluiceError("KustomizeFailed", `${file}: a kustomization must be a map`, {
        detail: { file },
      });
    // Plugin generators/transformers are refused by kustomize itself (no --enable-alpha-plugins);
    // their config files are still confined below. Helm would download and run charts.
    for (const field of ["helmCharts", "helmChartInflationGenerator", "helmGlobals"] as const) {
      if (k[field] !== undefined) {
        throw new SluiceError(
          "KustomizeFailed",
          `${file}: field ${field} is not supported (it downloads or runs programs)`,
          {
            detail: { file, field },
            hint: "render the chart into plain manifests in Git",
          },
        );
      }
    }
    const paths: [string, string][] = [];
    const list = (field: string) => {
      const v = k[field];
      if (v === undefined) return;
      if (!Array.isArray(v))
        throw new SluiceError("KustomizeFailed", `${file}: field ${field} must be a list`, {
          detail: { file, field },
        });
      v.forEach((item, i) => {
        if (typeof item === "string") paths.push([item, `${field}[${i}]`]);
        else if (item && typeof item === "object" && typeof (item as { path?: unknown }).path === "string") {
          paths.push([(item as { path: string }).path, `${field}[${i}].path`]);
        }
      });
    };
    for (const f of [
      "resources",
      "bases",
      "components",
      "crds",
      "patchesStrategicMerge",
      "patches",
      "patchesJson6902",
      "replacements",
      "configurations",
      "openapi",
      "transformers",
      "generators",
      "validators",
    ]) {
      if (f === "openapi") {
        const p = (k.openapi as { path?: unknown } | undefined)?.path;
        if (typeof p === "string") paths.push([p, "openapi.path"]);
      } else list(f);
    }
    for (const g of ["configMapGenerator", "secretGenerator"]) {
      const gens = k[g];
      if (!Array.isArray(gens)) continue;
      gens.forEach((gen, i) => {
        for (const f of ["files", "envs"]) {
          const v = (gen as Record<string, unknown>)[f];
          if (!Array.isArray(v)) continue;
          v.forEach((entry, j) => {
            if (typeof entry !== "string") return;
            // `files` entries may be `key=path`.
            const p = f === "files" && entry.includes("=") ? entry.slice(entry.indexOf("=") + 1) : entry;
            paths.push([p, `${g}[${i}].${f}[${j}]`]);
          });
        }
        const env = (gen as Record<string, unknown>).env;
        if (typeof env === "string") paths.push([env, `${g}[${i}].env`]);
      });
    }
    for (const [p, field] of paths) {
      if (URL_LIKE.test(p)) {
        if (opts.allowRemote) continue;
        throw new SluiceError(
          "KustomizeFailed",
          `${file}: ${field} names a remote resource (${p}); remote resources are refused`,
          {
            detail: { file, field },
            hint: "vendor the remote base into the repository, or allow remote resources explicitly",
          },
        );
      }
      const abs = secureResolve(root, p, d);
      if (!existsSync(abs)) continue; // kustomize reports missing files with its own message
      if (statSync(abs).isDirectory()) visit(abs, `${file} ${field}`);
      else files.add(abs);
    }
  };
  visit(dir, "the render path");
  return { files: [...files] };
}

type Runner = { cmd: string; args: (dir: string) => string[] };
let runner: Promise<Runner> | undefined;

async function which(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args, { timeout: 20_000 });
    return true;
  } catch (e) {
    return (
      (e as NodeJS.ErrnoException).code !== "ENOENT" && typeof (e as { code?: unknown }).code === "number"
    );
  }
}

/** Finds the kustomize to use, once per process. `SLUICE_KUSTOMIZE` names a binary explicitly. */
export function kustomizeRunner(): Promise<Runner> {
  runner ??= (async () => {
    const explicit = process.env.SLUICE_KUSTOMIZE;
    if (explicit) return { cmd: explicit, args: (d) => ["build", d] };
    if (await which("kustomize", ["version"])) return { cmd: "kustomize", args: (d) => ["build", d] };
    // --client: never contact a cluster just to find out whether kubectl exists.
    if (await which("kubectl", ["version", "--client"]))
      return { cmd: "kubectl", args: (d) => ["kustomize", d] };
    throw new SluiceError(
      "KustomizeMissing",
      "neither kustomize nor kubectl is installed; one is needed to build kustomizations",
      {
        hint: "install kubectl (it embeds kustomize) or a kustomize binary, or run the README's set-up",
      },
    );
  })();
  runner.catch(() => {
    runner = undefined;
  });
  return runner;
}

/** Runs `kustomize build` on `dir` and returns its YAML stream. */
export async function kustomizeBuild(dir: string, displayPath: string, timeoutMs: number): Promise<string> {
  const r = await kustomizeRunner();
  try {
    const { stdout } = await run(r.cmd, r.args(dir), {
      timeout: timeoutMs,
      maxBuffer: 512 * 1024 * 1024,
      env: { ...process.env, KUSTOMIZE_PLUGIN_HOME: "/nonexistent" },
    });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; killed?: boolean; message: string };
    const why = err.killed
      ? `timed out after ${timeoutMs} ms`
      : (err.stderr || err.message).trim().split("\n").slice(-3).join(" ");
    throw new SluiceError("KustomizeFailed", `kustomize build of ${displayPath} failed: ${why}`, {
      detail: { path: displayPath },
    });
  }
}

function rel(root: string, p: string): string {
  return relative(root, p) || ".";
}
