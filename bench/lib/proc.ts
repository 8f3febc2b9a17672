/**
 * Timing child processes: wall time from spawn to exit, and peak RSS from GNU time
 * (`/usr/bin/time -f %M`, Debian package `time`) when it is installed.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

export const TIME_BIN = "/usr/bin/time";
export const hasTimeTool = existsSync(TIME_BIN);

export interface ProcResult {
  ms: number;
  rssKb?: number;
  stdout: string;
  stderr: string;
}

export interface ProcOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Keep stdout (for checks) through a pipe, or through a file (as `> out.yaml` would); by
   * default it goes to /dev/null, as fast as either side can write.
   */
  capture?: "pipe" | "file";
  timeoutMs?: number;
}

let rssDir: string | undefined;

/** Runs cmd to completion; a non-zero exit, a signal or the timeout is an error with stderr's tail. */
export function timeProcess(
  cmd: string,
  args: readonly string[],
  opts: ProcOptions = {},
): Promise<ProcResult> {
  rssDir ??= mkdtempSync(join(tmpdir(), "sluice-bench-rss-"));
  const rssFile = join(rssDir, `rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const [bin, argv] = hasTimeTool ? [TIME_BIN, ["-f", "%M", "-o", rssFile, cmd, ...args]] : [cmd, [...args]];
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const outFile = opts.capture === "file" ? `${rssFile}.out` : undefined;
  const outFd = outFile ? openSync(outFile, "w") : undefined;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(bin, argv, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", outFd ?? (opts.capture === "pipe" ? "pipe" : "ignore"), "pipe"],
    });
    if (outFd !== undefined) closeSync(outFd);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      let rssKb: number | undefined;
      if (hasTimeTool && existsSync(rssFile)) {
        // GNU time writes "Command exited with non-zero status N" before the format on failure.
        const last = readFileSync(rssFile, "utf8").trim().split("\n").pop() ?? "";
        rmSync(rssFile, { force: true });
        const n = Number(last);
        if (Number.isFinite(n) && n > 0) rssKb = n;
      }
      const stderr = Buffer.concat(err).toString("utf8");
      let stdout = Buffer.concat(out).toString("utf8");
      if (outFile) {
        stdout = readFileSync(outFile, "utf8");
        rmSync(outFile, { force: true });
      }
      if (code !== 0) {
        const why = signal
          ? `killed by ${signal}${signal === "SIGKILL" ? " (timeout?)" : ""}`
          : `exit ${code}`;
        const tail = stderr.trim().split("\n").slice(-5).join("\n");
        reject(new Error(`${cmd} ${args.join(" ")}: ${why}\n${tail}`));
        return;
      }
      resolve({ ms, rssKb, stdout, stderr });
    });
  });
}

/** Removes the scratch directory GNU time writes into. */
export function cleanupProc(): void {
  if (rssDir) rmSync(rssDir, { recursive: true, force: true });
  rssDir = undefined;
}

/** Counts the documents of a YAML stream that have a `kind:` at the top level. */
export function countObjects(yamlStream: string): number {
  let n = 0;
  for (const line of yamlStream.split("\n")) if (line.startsWith("kind:")) n++;
  return n;
}
