/**
 * The real `git` for the automation's working copy: argument arrays (never a shell), a scrubbed
 * environment (no global or system config, no credential helpers, no hooks, no prompts), a time limit
 * that kills the whole process group, bounded output, and credentials passed as an Authorization
 * header through GIT_CONFIG_* variables so they never show in `ps` or in `.git/config`.
 *
 * This mirrors src/source/_git.ts, which that module does not export; once `runGit` and
 * `hardeningConfig` are exported from src/source/index.ts this file shrinks to `authFor` and `git`.
 */
import { spawn } from "node:child_process";
import { SluiceError } from "../core/index.js";
import { redactUrls } from "../source/index.js";

/** HTTP(S) credentials for the repository (from the GitRepository's secretRef). */
export interface GitAuth {
  username?: string;
  password?: string;
  bearerToken?: string;
}

export class GitError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly stdout: string,
    readonly exitCode: number | null,
  ) {
    super(message);
    this.name = "GitError";
  }
}

const HARDENING: [string, string][] = [
  ["protocol.allow", "never"],
  ["protocol.http.allow", "always"],
  ["protocol.https.allow", "always"],
  ["protocol.ssh.allow", "always"],
  ["protocol.file.allow", "never"],
  ["protocol.ext.allow", "never"],
  ["submodule.recurse", "false"],
  ["fetch.recurseSubmodules", "false"],
  ["fetch.fsckObjects", "true"],
  ["http.followRedirects", "false"],
  ["core.hooksPath", "/dev/null"],
  ["core.fsmonitor", "false"],
  ["core.autocrlf", "false"],
  ["core.safecrlf", "false"],
  ["credential.helper", ""],
  ["commit.gpgSign", "false"],
  ["gc.auto", "0"],
  ["advice.detachedHead", "false"],
  ["init.defaultBranch", "main"],
];

export interface GitRunner {
  run(args: string[], opts?: { input?: string; env?: Record<string, string> }): Promise<string>;
  /** Strips credentials and URL userinfo from a text. */
  redact(text: string): string;
}

/** A runner in `cwd` with the given credentials and per-call time limit. */
export function gitRunner(cwd: string, auth: GitAuth | undefined, timeoutMs: number): GitRunner {
  const secretConfig: [string, string][] = [];
  const secrets: string[] = [];
  if (auth?.bearerToken) {
    secretConfig.push(["http.extraHeader", `Authorization: Bearer ${auth.bearerToken}`]);
    secrets.push(auth.bearerToken);
  } else if (auth && (auth.username !== undefined || auth.password !== undefined)) {
    const basic = Buffer.from(`${auth.username ?? ""}:${auth.password ?? ""}`, "utf8").toString("base64");
    secretConfig.push(["http.extraHeader", `Authorization: Basic ${basic}`]);
    secrets.push(basic);
    if (auth.password) secrets.push(auth.password);
  }
  const redact = (text: string) => {
    let out = redactUrls(text);
    for (const s of secrets) if (s) out = out.split(s).join("***");
    return out;
  };
  return {
    redact,
    run: (args, opts = {}) => runGit(cwd, args, { timeoutMs, secretConfig, redact, ...opts }),
  };
}

function runGit(
  cwd: string,
  args: string[],
  o: {
    timeoutMs: number;
    secretConfig: [string, string][];
    redact: (s: string) => string;
    input?: string;
    env?: Record<string, string>;
  },
): Promise<string> {
  const config = [...HARDENING, ...o.secretConfig];
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
    // File names from the repository are never pathspec patterns.
    GIT_LITERAL_PATHSPECS: "1",
    GIT_CONFIG_COUNT: String(config.length),
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
    ...(o.env ?? {}),
  };
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  const maxOut = 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd, env, stdio: ["pipe", "pipe", "pipe"], detached: true });
    let out = "";
    let err = "";
    let timedOut = false;
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
    }, o.timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (out.length < maxOut) out += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (err.length < 64 * 1024) err += d;
    });
    child.stdin.on("error", () => {
      // git may exit before reading its input; the exit code tells what happened.
    });
    child.stdin.end(o.input ?? "");
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new SluiceError("ArtifactFailed", `cannot run git: ${e.message}`, { hint: "install git" }));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new GitError(
            `git ${args[0]} timed out after ${o.timeoutMs} ms`,
            o.redact(err),
            o.redact(out),
            code,
          ),
        );
      } else if (code !== 0) {
        reject(
          new GitError(
            `git ${args[0]}: ${o.redact(firstErrorLine(err) || `exit code ${code}`)}`,
            o.redact(err),
            o.redact(out),
            code,
          ),
        );
      } else {
        resolve(out);
      }
    });
  });
}

function firstErrorLine(stderr: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith("hint:"));
  return (
    lines.find((l) => l.startsWith("fatal:")) ??
    lines.find((l) => l.startsWith("error:")) ??
    lines[0] ??
    ""
  ).slice(0, 500);
}
