/**
 * Promotion and rollback the GitOps way: what runs is what a branch says, so promoting staging to
 * production moves production's branch to staging's commit (a fast-forward when possible, else a
 * merge commit; or a pull request when review is wanted), and rolling back without a standby
 * version is a `git revert` of the branch's last change. Every commit names who asked and why
 * (trailers), and nothing is ever force-pushed.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GitAuth, gitRunner, type OpenPullRequest } from "../automation/index.js";
import { SluiceError } from "../core/index.js";

export interface GitTarget {
  repoUrl: string;
  auth?: GitAuth;
  /** Commit author (default `sluice <sluice@sluice.invalid>`). */
  author?: { name: string; email: string };
  timeoutMs?: number;
}

export interface PromoteResult {
  mode: "fast-forward" | "merge" | "pull-request" | "up-to-date";
  /** The commit `to` points at now (or the pull request's head). */
  commit: string;
  url?: string;
}

const DEFAULT_AUTHOR = { name: "sluice", email: "sluice@sluice.invalid" };

async function withClone<T>(
  t: GitTarget,
  branches: string[],
  fn: (git: (...args: string[]) => Promise<string>) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "sluice-promote-"));
  const runner = gitRunner(dir, t.auth, t.timeoutMs ?? 60_000);
  const author = t.author ?? DEFAULT_AUTHOR;
  const env = {
    GIT_AUTHOR_NAME: author.name,
    GIT_AUTHOR_EMAIL: author.email,
    GIT_COMMITTER_NAME: author.name,
    GIT_COMMITTER_EMAIL: author.email,
  };
  const git = (...args: string[]) => runner.run(args, { env }).then((o) => o.trim());
  try {
    await git("init", "-q");
    await git("remote", "add", "origin", t.repoUrl);
    const remote = (await git("ls-remote", "--heads", "origin")).split("\n");
    const refspecs = branches
      .filter((b) => remote.some((l) => l.endsWith(`refs/heads/${b}`)))
      .map((b) => `+refs/heads/${b}:refs/remotes/origin/${b}`);
    if (refspecs.length) await git("fetch", "-q", "--no-tags", "origin", ...refspecs);
    return await fn(git);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const hasRef = (git: (...a: string[]) => Promise<string>, ref: string) =>
  git("rev-parse", "--verify", "--quiet", `${ref}^{commit}`).then(
    (s) => s,
    () => undefined,
  );

/**
 * Moves branch `to` to what branch `from` has. With `pullRequest`, opens (or updates) a pull
 * request from `from` into `to` instead.
 */
export async function promoteBranch(
  t: GitTarget,
  o: { from: string; to: string; who: string; reason?: string; pullRequest?: OpenPullRequest },
): Promise<PromoteResult> {
  return withClone(t, [o.from, o.to], async (git) => {
    const from = await hasRef(git, `refs/remotes/origin/${o.from}`);
    if (!from) throw new SluiceError("NotFound", `branch ${o.from} does not exist in the repository`);
    const to = await hasRef(git, `refs/remotes/origin/${o.to}`);
    if (to === from) return { mode: "up-to-date", commit: from };
    if (o.pullRequest) {
      const pr = await o.pullRequest({
        repoUrl: t.repoUrl,
        head: o.from,
        base: o.to,
        title: `Promote ${o.from} to ${o.to}`,
        body: `Requested by ${o.who}${o.reason ? `: ${o.reason}` : ""}.`,
        commit: from,
        automation: { namespace: "sluice", name: "promote" },
      });
      return { mode: "pull-request", commit: from, url: pr.url };
    }
    const trailers = `\n\nPromoted-by: ${o.who}${o.reason ? `\nReason: ${o.reason}` : ""}`;
    if (
      !to ||
      (await git("merge-base", "--is-ancestor", to, from).then(
        () => true,
        () => false,
      ))
    ) {
      await git("push", "-q", "origin", `${from}:refs/heads/${o.to}`);
      return { mode: "fast-forward", commit: from };
    }
    await git("checkout", "-q", "-B", o.to, to);
    try {
      await git("merge", "-q", "--no-ff", "-m", `Promote ${o.from} to ${o.to}${trailers}`, from);
    } catch (e) {
      throw new SluiceError(
        "Conflict",
        `promoting ${o.from} to ${o.to} needs a merge that conflicts: ${(e as Error).message}`,
        { hint: "merge the branches by hand (or through a pull request), then reconcile" },
      );
    }
    const commit = await git("rev-parse", "HEAD");
    await git("push", "-q", "origin", `HEAD:refs/heads/${o.to}`);
    return { mode: "merge", commit };
  });
}

/** Reverts the last commit of `branch` (a merge against its first parent) and pushes the revert. */
export async function revertLast(
  t: GitTarget,
  o: { branch: string; who: string; reason?: string },
): Promise<{ reverted: string; commit: string }> {
  return withClone(t, [o.branch], async (git) => {
    const head = await hasRef(git, `refs/remotes/origin/${o.branch}`);
    if (!head) throw new SluiceError("NotFound", `branch ${o.branch} does not exist in the repository`);
    await git("checkout", "-q", "-B", o.branch, head);
    const parents = (await git("rev-list", "--parents", "-n", "1", head)).split(" ").length - 1;
    if (parents === 0)
      throw new SluiceError("Conflict", `the last commit of ${o.branch} is its first; nothing to revert to`);
    const subject = await git("log", "-1", "--format=%s", head);
    try {
      await git("revert", "--no-edit", ...(parents > 1 ? ["-m", "1"] : []), head);
    } catch (e) {
      throw new SluiceError(
        "Conflict",
        `reverting ${head.slice(0, 10)} on ${o.branch} conflicts: ${(e as Error).message}`,
      );
    }
    await git(
      "commit",
      "-q",
      "--amend",
      "-m",
      `Revert "${subject}"\n\nThis reverts commit ${head}.\n\nRolled-back-by: ${o.who}${o.reason ? `\nReason: ${o.reason}` : ""}`,
    );
    const commit = await git("rev-parse", "HEAD");
    await git("push", "-q", "origin", `HEAD:refs/heads/${o.branch}`);
    return { reverted: head, commit };
  });
}
