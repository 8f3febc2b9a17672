/**
 * Revisions of a local Git repository as plain directories, for plans between two commits.
 *
 * A revision is written out with a private index (`GIT_INDEX_FILE` in a temporary directory, then
 * `read-tree` + `checkout-index` into a fresh directory): the repository's own index, work tree,
 * HEAD and worktree list are never touched, `export-ignore` attributes do not apply (unlike
 * `git archive`), and it works the same in bare repositories. Every git call is an argument
 * array (never a shell), time-limited, and refs starting with `-` are refused.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SluiceError } from "../core/index.js";

const GIT_TIMEOUT_MS = 120_000;

/** Variables that would redirect git away from the repository we name. */
const GIT_REDIRECTS = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_NAMESPACE",
  "GIT_CEILING_DIRECTORIES",
];

function gitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: "0", LANG: "C", LC_ALL: "C" };
  for (const k of GIT_REDIRECTS) delete env[k];
  return { ...env, ...extra };
}

/** Runs git with an argument array; resolves stdout, rejects with a SluiceError naming the command. */
export function runGit(
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number } = { cwd: "." },
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      {
        cwd: opts.cwd,
        env: gitEnv(opts.env),
        timeout: opts.timeoutMs ?? GIT_TIMEOUT_MS,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        if (e.code === "ENOENT") {
          reject(
            new SluiceError("ArtifactFailed", "git is not installed (running git failed)", {
              hint: "install git (Debian: apt-get install git)",
            }),
          );
          return;
        }
        const why = e.killed ? "timed out" : (stderr || err.message).trim().split("\n").slice(-3).join("; ");
        reject(new SluiceError("ArtifactFailed", `git ${args[0]} in ${opts.cwd} failed: ${why}`));
      },
    );
  });
}

function checkRef(ref: string, what: string): void {
  if (!ref || ref.startsWith("-") || /[\s\0]/.test(ref) || ref.length > 1024) {
    throw new SluiceError("ConfigInvalid", `${what} ${JSON.stringify(ref)} is not a valid Git revision`, {
      hint: "pass a branch, tag, ref or commit, e.g. --base main --head HEAD",
    });
  }
}

/** The absolute git directory of the repository at `dir` (a work tree or a bare repository). */
export async function gitDirOf(dir: string): Promise<string> {
  try {
    return (await runGit(["rev-parse", "--absolute-git-dir"], { cwd: dir })).trim();
  } catch (e) {
    throw new SluiceError("NotFound", `${dir} is not inside a Git repository`, {
      cause: e,
      hint: "run sluice plan in a clone of the repository, or pass --dir",
    });
  }
}

export interface ResolvedRevision {
  /** What the user named (`main`, `HEAD`, `origin/feature/x`, a commit). */
  ref: string;
  /** The 40-hex commit. */
  commit: string;
  /** The branch it names, if it names one (`refs/heads/x` or a remote-tracking `refs/remotes/o/x` → `x`). */
  branch?: string;
}

/** Resolves a revision to its commit, and to the branch it names when it names one. */
export async function resolveRevision(
  dir: string,
  ref: string,
  what = "revision",
): Promise<ResolvedRevision> {
  checkRef(ref, what);
  let commit: string;
  try {
    commit = (await runGit(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], { cwd: dir })).trim();
  } catch (e) {
    throw new SluiceError("NotFound", `${what} ${ref} is not a commit in ${dir}`, {
      cause: e,
      hint: "fetch it first (git fetch origin <branch>), or name a branch, tag or commit that exists",
    });
  }
  let branch: string | undefined;
  try {
    const full = (await runGit(["rev-parse", "--symbolic-full-name", ref], { cwd: dir })).trim();
    const heads = /^refs\/heads\/(.+)$/.exec(full);
    const remotes = /^refs\/remotes\/[^/]+\/(.+)$/.exec(full);
    branch = heads?.[1] ?? remotes?.[1];
    if (branch === "HEAD") branch = undefined;
  } catch {
    // not a symbolic ref (a commit id): no branch
  }
  return { ref, commit, ...(branch ? { branch } : {}) };
}

export interface CheckedOutRevision extends ResolvedRevision {
  /** A private directory holding the commit's files. */
  dir: string;
  /** Removes the directory. */
  remove(): void;
}

/** Writes the files of `commit` into a new temporary directory (the repository is not modified). */
export async function checkoutRevision(repoDir: string, rev: ResolvedRevision): Promise<CheckedOutRevision> {
  const gitDir = await gitDirOf(repoDir);
  const scratch = mkdtempSync(join(tmpdir(), "sluice-plan-index-"));
  const dest = mkdtempSync(join(tmpdir(), `sluice-plan-${rev.commit.slice(0, 10)}-`));
  const env = { GIT_INDEX_FILE: join(scratch, "index") };
  try {
    await runGit(["--git-dir", gitDir, "read-tree", rev.commit], { cwd: repoDir, env });
    await runGit(["--git-dir", gitDir, "--work-tree", dest, "checkout-index", "--all", "--force"], {
      cwd: dest,
      env,
    });
  } catch (e) {
    rmSync(dest, { recursive: true, force: true });
    throw e;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return { ...rev, dir: dest, remove: () => rmSync(dest, { recursive: true, force: true }) };
}
