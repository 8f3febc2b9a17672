/**
 * Test conveniences around the real Git HTTP server (src/source's `startGitServer`): a server in a
 * temporary directory, and a working copy to commit, branch, tag and push with the real git.
 *
 * @example
 *   const srv = await startTestGitServer({ onPush: (repo, refs) => pushes.push(refs) });
 *   await srv.createRepo("app", { "k.yaml": "…" });
 *   const wc = await WorkingCopy.clone(srv.repoUrl("app"));
 *   await wc.write({ "k.yaml": "…" }); await wc.commit("change"); await wc.push("main");
 *   await srv.stop(); // also removes the temporary directory
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  type GitServer,
  type GitServerOptions,
  type RefUpdate,
  startGitServer,
} from "../../src/source/index.js";

export { type GitServer, type GitServerOptions, type RefUpdate, startGitServer };

const IDENTITY = {
  GIT_AUTHOR_NAME: "Sluice Test",
  GIT_AUTHOR_EMAIL: "test@sluice.invalid",
  GIT_COMMITTER_NAME: "Sluice Test",
  GIT_COMMITTER_EMAIL: "test@sluice.invalid",
};

/** Runs git in `cwd` (argument array, 30 s limit, isolated from the user's git config); returns stdout. */
export function git(cwd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      {
        cwd,
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: process.env.HOME ?? "/nonexistent",
          LANG: "C",
          GIT_TERMINAL_PROMPT: "0",
          GIT_CONFIG_NOSYSTEM: "1",
          GIT_CONFIG_GLOBAL: "/dev/null",
          ...IDENTITY,
        },
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`git ${args.join(" ")} failed: ${stderr || err.message}`));
        else resolve(stdout);
      },
    );
  });
}

/** A Git server rooted in a fresh temporary directory, removed again by `stop()`. */
export async function startTestGitServer(
  opts: Omit<GitServerOptions, "root"> & { root?: string } = {},
): Promise<GitServer & { root: string }> {
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), "sluice-gitsrv-")));
  const srv = await startGitServer({ ...opts, root });
  return {
    ...srv,
    root,
    async stop() {
      await srv.stop();
      if (!opts.root) await rm(root, { recursive: true, force: true });
    },
  };
}

/** A non-bare clone to make commits and push them. */
export class WorkingCopy {
  private constructor(readonly dir: string) {}

  /** Clones `url` into `dir` (default: a new temporary directory). */
  static async clone(url: string, dir?: string): Promise<WorkingCopy> {
    const target = dir ?? (await mkdtemp(join(tmpdir(), "sluice-wc-")));
    await git(dirname(target), ["clone", "--quiet", url, target]);
    return new WorkingCopy(target);
  }

  /** An existing clone. */
  static open(dir: string): WorkingCopy {
    return new WorkingCopy(dir);
  }

  run(args: string[]): Promise<string> {
    return git(this.dir, args);
  }

  /** Writes files (paths relative to the working copy). */
  async write(files: Record<string, string>): Promise<void> {
    for (const [rel, text] of Object.entries(files)) {
      const p = join(this.dir, rel);
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, text);
    }
  }

  /** Stages everything and commits; returns the new commit id. */
  async commit(message: string): Promise<string> {
    await this.run(["add", "--all"]);
    await this.run(["commit", "--quiet", "--allow-empty", "--message", message]);
    return this.head();
  }

  async head(): Promise<string> {
    return (await this.run(["rev-parse", "HEAD"])).trim();
  }

  /** Switches to `branch`, creating it from the current commit when missing. */
  async branch(branch: string): Promise<void> {
    await this.run(["checkout", "--quiet", "-B", branch]);
  }

  /** Pushes HEAD to `branch` on origin. */
  async push(branch: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.run([
      "push",
      "--quiet",
      ...(opts.force ? ["--force"] : []),
      "origin",
      `HEAD:refs/heads/${branch}`,
    ]);
  }

  /** Deletes `branch` on origin. */
  async deleteRemoteBranch(branch: string): Promise<void> {
    await this.run(["push", "--quiet", "origin", `:refs/heads/${branch}`]);
  }

  /** Tags HEAD (annotated when a message is given) and pushes the tag. */
  async tag(name: string, message?: string): Promise<string> {
    await this.run(["tag", ...(message ? ["-a", "-m", message] : []), name]);
    await this.run(["push", "--quiet", "origin", `refs/tags/${name}`]);
    return this.head();
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** One-shot: clone `url` into `dir` (if not already a clone), write `files`, commit, push to `branch`. */
export async function gitPush(
  url: string,
  dir: string,
  branch: string,
  files: Record<string, string> = {},
  message = "update",
): Promise<string> {
  let wc: WorkingCopy;
  try {
    await stat(join(dir, ".git"));
    wc = WorkingCopy.open(dir);
  } catch {
    wc = await WorkingCopy.clone(url, dir);
  }
  await wc.write(files);
  const sha = await wc.commit(message);
  await wc.push(branch);
  return sha;
}

/** Waits (bounded) until `pred` holds, polling every 20 ms. */
export async function waitFor(pred: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
