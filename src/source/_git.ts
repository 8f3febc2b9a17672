/**
 * Runs the real `git` with an argument array (never a shell), a scrubbed environment, a hard time
 * limit and bounded output. The environment is rebuilt from scratch: nothing from the caller's
 * environment that changes git's behaviour (GIT_DIR, GIT_TRACE*, GIT_SSH_COMMAND, global and system
 * config with their credential helpers, LFS filters or hooks paths) leaks into a fetch of untrusted
 * repositories. Secrets (Authorization headers) travel in GIT_CONFIG_* environment variables, so
 * they never appear on a command line visible in `ps`.
 */
import { spawn } from "node:child_process";

export interface GitRunOptions {
  cwd?: string;
  /** Kill the whole process group after this many milliseconds. */
  timeoutMs: number;
  /** Extra environment (merged over the scrubbed base). */
  env?: Record<string, string>;
  /** `-c key=value` pairs passed through GIT_CONFIG_COUNT (hidden from the process list). */
  secretConfig?: [string, string][];
  /** Bytes written to stdin, then closed. */
  input?: Buffer | string;
  /** Maximum stdout bytes kept; more is an error (protects against hostile remotes). */
  maxStdout?: number;
}

export interface GitRunResult {
  stdout: Buffer;
  stderr: string;
}

export class GitRunError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly exitCode: number | null,
    readonly timedOut: boolean,
    /** What git printed on stdout before failing (bounded), e.g. a merge's CONFLICT lines. */
    readonly stdout = "",
  ) {
    super(message);
    this.name = "GitRunError";
  }
}

/** Config that applies to every git call Sluice makes on untrusted remotes and content. */
export function hardeningConfig(allowFile: boolean): string[] {
  const pairs: [string, string][] = [
    ["protocol.allow", "never"],
    ["protocol.http.allow", "always"],
    ["protocol.https.allow", "always"],
    ["protocol.ssh.allow", "always"],
    ["protocol.file.allow", allowFile ? "always" : "never"],
    ["protocol.ext.allow", "never"],
    ["submodule.recurse", "false"],
    ["fetch.recurseSubmodules", "false"],
    ["fetch.fsckObjects", "true"],
    ["http.followRedirects", "false"],
    ["core.hooksPath", "/dev/null"],
    ["core.fsmonitor", "false"],
    ["credential.helper", ""],
    ["advice.detachedHead", "false"],
    ["init.defaultBranch", "main"],
  ];
  return pairs.flatMap(([k, v]) => ["-c", `${k}=${v}`]);
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: process.env.HOME ?? "/nonexistent",
    LANG: "C",
    LC_ALL: "C",
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_NO_REPLACE_OBJECTS: "1",
    GIT_PROTOCOL_FROM_USER: "0",
  };
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return env;
}

const MAX_STDERR = 64 * 1024;

/** Runs git; rejects with GitRunError on a non-zero exit, a timeout or too much output. */
export function runGit(args: string[], opts: GitRunOptions): Promise<GitRunResult> {
  const env = { ...baseEnv(), ...(opts.env ?? {}) };
  const secret = opts.secretConfig ?? [];
  if (secret.length > 0) {
    env.GIT_CONFIG_COUNT = String(secret.length);
    secret.forEach(([k, v], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = k;
      env[`GIT_CONFIG_VALUE_${i}`] = v;
    });
  }
  const maxStdout = opts.maxStdout ?? 64 * 1024 * 1024;
  return new Promise((resolvePromise, reject) => {
    const child = spawn("git", args, {
      cwd: opts.cwd,
      env,
      stdio: ["pipe", "pipe", "pipe"],
      // Own process group, so a timeout kills git-remote-http and ssh children too.
      detached: true,
    });
    const out: Buffer[] = [];
    let outLen = 0;
    let err = "";
    let timedOut = false;
    let overflow = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs);
    child.stdout.on("data", (d: Buffer) => {
      outLen += d.length;
      if (outLen > maxStdout) {
        if (!overflow) {
          overflow = true;
          killGroup();
        }
        return;
      }
      out.push(d);
    });
    child.stderr.on("data", (d: Buffer) => {
      if (err.length < MAX_STDERR) err += d.toString("utf8");
    });
    child.stdin.on("error", () => {
      // git may exit before reading all input; the exit code tells what happened.
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new GitRunError(`cannot run git: ${e.message}`, "", null, false));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new GitRunError(`timed out after ${opts.timeoutMs} ms`, err, code, true));
      } else if (overflow) {
        reject(new GitRunError(`output exceeded ${maxStdout} bytes`, err, code, false));
      } else if (code !== 0) {
        reject(
          new GitRunError(
            firstErrorLine(err) || `git exited with code ${code}`,
            err,
            code,
            false,
            Buffer.concat(out)
              .toString("utf8")
              .slice(-64 * 1024),
          ),
        );
      } else {
        resolvePromise({ stdout: Buffer.concat(out), stderr: err });
      }
    });
  });
}

/** The most telling line of git's stderr: the first `fatal:`/`error:` line, else the first line. */
export function firstErrorLine(stderr: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith("hint:"));
  const fatal = lines.find((l) => l.startsWith("fatal:")) ?? lines.find((l) => l.startsWith("error:"));
  return (fatal ?? lines[0] ?? "").slice(0, 500);
}
