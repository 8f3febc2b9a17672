/**
 * Image builds with podman: build the Containerfile of a checkout, tag it by the seed's rule,
 * push every tag. Progress lines go to `onProgress`; podman's own output is kept for errors.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SluiceError } from "../core/index.js";
import type { Podman } from "../targets/local/index.js";

export interface BuildRequest {
  /** Build context (a checkout directory). */
  contextDir: string;
  /** Containerfile path relative to the context. */
  containerfile?: string;
  /** Repository without tag, e.g. `127.0.0.1:5000/replace-api`. */
  repository: string;
  tags: string[];
  push: boolean;
  /** Plain-HTTP registries on 127.0.0.1 need this false. */
  tlsVerify?: boolean;
  onProgress?: (line: string) => void;
  /** Registry credentials for the push: docker config JSON (written to a private temporary file). */
  authFile?: string;
  /** podman's own output (the build log), as it comes. */
  onOutput?: (chunk: string) => void;
}

export interface BuildResult {
  images: string[];
  ms: number;
}

export async function buildImage(podman: Podman, req: BuildRequest): Promise<BuildResult> {
  const t0 = Date.now();
  const refs = req.tags.map((t) => `${req.repository}:${t}`);
  const say = req.onProgress ?? (() => {});
  say(`building ${refs[0]} from ${req.containerfile ?? "Containerfile"}`);
  const args = ["build", "--pull=never", "-f", req.containerfile ?? "Containerfile"];
  for (const r of refs) args.push("-t", r);
  args.push(req.contextDir);
  try {
    await podman.run(args, { timeoutMs: 15 * 60_000, ...(req.onOutput ? { onOutput: req.onOutput } : {}) });
  } catch (e) {
    throw new SluiceError("BuildFailed", `image build of ${req.repository} failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (req.push) {
    const auth = req.authFile ? privateFile(req.authFile) : undefined;
    try {
      for (const r of refs) {
        say(`pushing ${r}`);
        try {
          await podman.run(
            ["push", `--tls-verify=${req.tlsVerify ?? true}`, ...(auth ? ["--authfile", auth.path] : []), r],
            {
              timeoutMs: 10 * 60_000,
              ...(req.onOutput ? { onOutput: req.onOutput } : {}),
            },
          );
        } catch (e) {
          throw new SluiceError("BuildFailed", `push of ${r} failed: ${(e as Error).message}`, { cause: e });
        }
      }
    } finally {
      auth?.remove();
    }
  }
  return { images: refs, ms: Date.now() - t0 };
}

/** A 0600 file in a 0700 directory, for credentials podman reads; removed right after. */
function privateFile(content: string): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "sluice-auth-"));
  const path = join(dir, "auth.json");
  writeFileSync(path, content, { mode: 0o600 });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
