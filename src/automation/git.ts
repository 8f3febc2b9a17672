/**
 * The real `git` for the automation's working copy: argument arrays (never a shell), a scrubbed
 * environment (no global or system config, no credential helpers, no hooks, no prompts), a time limit
 * that kills the whole process group, bounded output, and credentials passed as an Authorization
 * header through GIT_CONFIG_* variables so they never show in `ps` or in `.git/config`.
 *
 * The process handling is source/'s `runGit`; this adds the working-copy hardening and the
 * credentials of the automation's repository.
 */
import { SluiceError } from "../core/index.js";
import { GitRunError, redactUrls, runGit as runSourceGit } from "../source/index.js";

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

async function runGit(
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
  try {
    const r = await runSourceGit(args, {
      cwd,
      timeoutMs: o.timeoutMs,
      // File names from the repository are never pathspec patterns.
      env: { GIT_LITERAL_PATHSPECS: "1", ...(o.env ?? {}) },
      secretConfig: [...HARDENING, ...o.secretConfig],
      input: o.input ?? "",
      maxStdout: 16 * 1024 * 1024,
    });
    return r.stdout.toString("utf8");
  } catch (e) {
    if (!(e instanceof GitRunError))
      throw new SluiceError("ArtifactFailed", `cannot run git: ${(e as Error).message}`, {
        hint: "install git",
      });
    const what = e.timedOut ? `timed out after ${o.timeoutMs} ms` : o.redact(e.message);
    throw new GitError(`git ${args[0]}: ${what}`, o.redact(e.stderr), o.redact(e.stdout), e.exitCode);
  }
}
