/**
 * One run of a Flux ImageUpdateAutomation with the real git.
 *
 * The algorithm:
 * 1. Load-time checks before any git: the message template compiles, the branches are valid names,
 *    a pull-request automation has a forge hook.
 * 2. Sync: `git ls-remote` for the checkout and push branches, fetch the ones that exist (full
 *    history of those branches only) into `refs/remotes/origin/*` of a working copy kept in
 *    `workDir`. The commit is built on the push branch when it exists (never overwritten: Flux with
 *    GitForcePushBranch=false), fast-forwarded to the checkout branch when it is merely behind it;
 *    otherwise on the checkout branch (so a missing push branch is created from it).
 * 3. Reset the working tree to that base, apply the setters under `update.path` (all files are
 *    validated before any is written), and commit the changed files only, with the configured
 *    author as author and committer and the rendered message. Nothing changed → no commit, so two
 *    runs in a row make at most one commit.
 * 4. Push `HEAD:refs/heads/<push branch>`, never forced. Rejected because the branch moved → sync,
 *    `git rebase` the commit onto the new head; if the rebase conflicts, or the rebased tree is no
 *    longer what the setters would write (a newer image, a new marker), redo step 3 from the new
 *    head instead. Retried with a short exponential backoff, a bounded number of times.
 * 5. With `push.pullRequest`, steps 2–4 target a separate branch and `openPullRequest` is called
 *    with the pushed commit (the forge module opens or updates the pull request).
 */
import { existsSync, readdirSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ConfigObject } from "../config/index.js";
import { SluiceError } from "../core/index.js";
import { isSafeRefName } from "../source/index.js";
import { type GitAuth, GitError, type GitRunner, gitRunner } from "./git.js";
import { updateWithSetters } from "./setters.js";
import { compileMessageTemplate, type MessageTemplate } from "./template.js";
import type { AutomationResult, LatestImages, OpenPullRequest, SetterRun } from "./types.js";

export type { GitAuth } from "./git.js";

/** Where run events go; a pino Logger fits. */
export interface AutomationLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** The parts of an ImageUpdateAutomation object a run reads (a loaded ConfigObject fits). */
export type AutomationObject = Pick<ConfigObject<"ImageUpdateAutomation">, "spec"> & {
  metadata: { name: string; namespace: string };
};

export interface RunAutomationOptions {
  automation: AutomationObject;
  /** The GitRepository's URL. */
  repoUrl: string;
  /** The GitRepository's `ref.branch`, used when `git.checkout` is not set (as Flux does). */
  sourceBranch?: string;
  latest: LatestImages;
  /** A directory this automation owns: its working copy is kept there between runs. */
  workDir: string;
  auth?: GitAuth;
  log?: AutomationLogger;
  /** Commit time (author and committer); default the current time. */
  now?: () => Date;
  /** Push the commit (default true); false commits in `workDir` only. */
  push?: boolean;
  /** Opens or updates a pull request; required when `git.push.pullRequest` is on. */
  openPullRequest?: OpenPullRequest;
  /** A template compiled at load time; default: compiled from the spec now. */
  template?: MessageTemplate;
  /** Per git call; default 60 s. */
  timeoutMs?: number;
  /** Push attempts before giving up; default 5. */
  maxAttempts?: number;
  /** Called with each commit about to be pushed (after a rebase too), e.g. to audit or sign off. */
  beforePush?: (commit: string) => Promise<void>;
}

/** The fields this module needs in `spec.git.push` beyond Flux's (pending in config/kinds.ts). */
interface PushExtensions {
  pullRequest?: boolean;
}

const NO_LOG: AutomationLogger = { info() {}, warn() {} };

function checkBranch(field: string, value: string): string {
  if (!isSafeRefName(value)) {
    throw new SluiceError("ConfigInvalid", `${field} ${JSON.stringify(value)} is not a valid branch name`, {
      hint: "use a Git branch name such as main or image-updates",
    });
  }
  return value;
}

function checkUrl(url: string): string {
  if (!/^(https?|ssh):\/\/[^\s]+$/.test(url) && !/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$/.test(url)) {
    throw new SluiceError(
      "ConfigInvalid",
      "the repository URL must be http(s)://, ssh:// or user@host:path",
      {
        hint: "set the GitRepository's spec.url",
      },
    );
  }
  return url;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the automation once: update, commit, push (rebasing and retrying when the branch moved).
 * @throws SluiceError ConfigInvalid (template, branches, markers naming unknown policies),
 *   ArtifactFailed (git failures), Conflict (still rejected after maxAttempts pushes).
 */
export async function runAutomation(o: RunAutomationOptions): Promise<AutomationResult> {
  const { spec } = o.automation;
  const { name, namespace } = o.automation.metadata;
  const subject = `ImageUpdateAutomation/${namespace}/${name}`;
  const log = o.log ?? NO_LOG;
  const template = o.template ?? compileMessageTemplate(spec.git.commit.messageTemplate);
  const url = checkUrl(o.repoUrl);
  const checkoutBranch = checkBranch(
    "git.checkout.ref.branch",
    spec.git.checkout?.ref.branch ?? o.sourceBranch ?? "",
  );
  const pushSpec = spec.git.push as (NonNullable<typeof spec.git.push> & PushExtensions) | undefined;
  const pullRequest = pushSpec?.pullRequest === true;
  if (pullRequest && !o.openPullRequest) {
    throw new SluiceError(
      "ConfigInvalid",
      `${subject}: git.push.pullRequest needs a forge to open pull requests`,
      {
        hint: "configure a forge provider for this repository, or remove push.pullRequest",
      },
    );
  }
  const pushBranch = pullRequest
    ? pushSpec?.branch && pushSpec.branch !== checkoutBranch
      ? checkBranch("git.push.branch", pushSpec.branch)
      : `sluice/image-update/${namespace}/${name}`
    : checkBranch("git.push.branch", pushSpec?.branch ?? checkoutBranch);
  const refspec = pushSpec?.refspec;
  if (refspec?.startsWith("+")) {
    throw new SluiceError("ConfigInvalid", `${subject}: git.push.refspec ${refspec} would force-push`, {
      hint: "Sluice never force-pushes; drop the leading +",
    });
  }
  const maxAttempts = Math.max(1, o.maxAttempts ?? 5);
  const now = o.now ?? (() => new Date());

  // A run killed in the middle of a git command (the agent's machine or container died) leaves
  // git's lock files behind, and git then refuses every later command: the working copy is only
  // a cache, so it starts afresh. (Runs of one automation never overlap.)
  if (hasLockFiles(join(o.workDir, ".git"))) await rm(o.workDir, { recursive: true, force: true });
  await mkdir(o.workDir, { recursive: true });
  const git = gitRunner(o.workDir, o.auth, o.timeoutMs ?? 60_000);
  const wrap = (e: unknown, what: string): never => {
    if (e instanceof GitError) {
      throw new SluiceError("ArtifactFailed", `${subject}: ${what}: ${e.message}`, {
        detail: { automation: `${namespace}/${name}` },
        hint: "check the repository URL, the credentials and that the branch exists",
      });
    }
    throw e;
  };
  if (!existsSync(join(o.workDir, ".git"))) await git.run(["init", "-q"]).catch((e) => wrap(e, "init"));
  await abortRebase(git);

  const author = spec.git.commit.author;
  const identity = (): Record<string, string> => {
    const date = `@${Math.floor(now().getTime() / 1000)} +0000`;
    const who = author.name || author.email;
    return {
      GIT_AUTHOR_NAME: who,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_AUTHOR_DATE: date,
      GIT_COMMITTER_NAME: who,
      GIT_COMMITTER_EMAIL: author.email,
      GIT_COMMITTER_DATE: date,
    };
  };

  /** ls-remote + fetch; returns the commit to build on. */
  const sync = async (): Promise<string> => {
    const wanted = [...new Set([checkoutBranch, pushBranch])];
    const out = await git
      .run(["ls-remote", "--heads", "--", url, ...wanted.map((b) => `refs/heads/${b}`)])
      .catch((e) => wrap(e, "ls-remote"));
    const heads = new Map<string, string>();
    for (const line of out.split("\n")) {
      const [sha, ref] = line.split("\t");
      if (sha && ref?.startsWith("refs/heads/")) heads.set(ref.slice("refs/heads/".length), sha);
    }
    const checkoutHead = heads.get(checkoutBranch);
    if (!checkoutHead) {
      throw new SluiceError(
        "ArtifactFailed",
        `${subject}: branch ${checkoutBranch} not found in the repository`,
        {
          hint: "set git.checkout.ref.branch (or the GitRepository's ref.branch) to an existing branch",
        },
      );
    }
    const refspecs = [...heads.keys()].map((b) => `+refs/heads/${b}:refs/remotes/origin/${b}`);
    await git.run(["fetch", "--quiet", "--no-tags", "--", url, ...refspecs]).catch((e) => wrap(e, "fetch"));
    const pushHead = heads.get(pushBranch);
    if (!pushHead) return checkoutHead;
    if (pushBranch === checkoutBranch || pushHead === checkoutHead) return pushHead;
    // The push branch is kept (never overwritten); when it is only behind, it moves up to the checkout branch.
    const behind = await git
      .run(["merge-base", "--is-ancestor", pushHead, checkoutHead])
      .then(() => true)
      .catch(() => false);
    return behind ? checkoutHead : pushHead;
  };

  /** Resets to `base`, applies the setters and commits what changed. */
  const update = async (base: string): Promise<{ run: SetterRun; commit?: string; message?: string }> => {
    await git.run(["checkout", "-q", "-f", "-B", pushBranch, base]).catch((e) => wrap(e, "checkout"));
    await git.run(["clean", "-q", "-ffdx"]).catch((e) => wrap(e, "clean"));
    const run = updateWithSetters({
      root: o.workDir,
      ...(spec.update?.path ? { path: spec.update.path } : {}),
      latest: o.latest,
      namespace,
    });
    if (run.changedFiles.length === 0) return { run };
    const message = template.render({
      automation: { namespace, name },
      updates: run.updates,
      updatePath: spec.update?.path ?? ".",
      ...(spec.git.commit.messageTemplateValues ? { values: spec.git.commit.messageTemplateValues } : {}),
    });
    await git.run(["add", "--", ...run.changedFiles]).catch((e) => wrap(e, "add"));
    await git
      .run(["commit", "-q", "--no-verify", "--cleanup=verbatim", "--allow-empty-message", "-F", "-"], {
        input: message,
        env: identity(),
      })
      .catch((e) => wrap(e, "commit"));
    const commit = (await git.run(["rev-parse", "HEAD"])).trim();
    return { run, commit, message };
  };

  let base = await sync();
  let state = await update(base);
  const result = (pushed: boolean, attempts: number): AutomationResult => ({
    ...(state.commit ? { commit: state.commit, message: state.message! } : {}),
    branch: pushBranch,
    changedFiles: state.run.changedFiles,
    updates: state.run.updates,
    skipped: state.run.skipped,
    ignored: state.run.ignored,
    pushed,
    attempts,
  });
  for (const s of state.run.skipped) log.warn({ automation: subject, file: s.file }, `skipped: ${s.reason}`);
  if (!state.commit) {
    log.info({ automation: subject, branch: pushBranch }, "no change: every marked field is up to date");
    return result(false, 0);
  }
  if (o.push === false) return result(false, 0);

  let attempts = 0;
  for (;;) {
    attempts++;
    await o.beforePush?.(state.commit!);
    const outcome = await pushOnce(git, url, state.commit!, pushBranch);
    if (outcome === "ok") break;
    if (outcome !== "moved" || attempts >= maxAttempts) {
      throw new SluiceError(
        outcome === "moved" ? "Conflict" : "ArtifactFailed",
        outcome === "moved"
          ? `${subject}: push to ${pushBranch} still rejected after ${attempts} attempts: the branch keeps moving`
          : `${subject}: push to ${pushBranch} failed: ${outcome}`,
        { hint: "the next run retries; check the branch's protection and the credentials' write access" },
      );
    }
    log.info(
      { automation: subject, branch: pushBranch, attempt: attempts },
      "push rejected: the branch moved; rebasing",
    );
    await sleep(Math.min(2000, 100 * 2 ** (attempts - 1)) + Math.floor(Math.random() * 100));
    base = await sync();
    const rebased = await rebase(git, base, identity());
    const fresh =
      rebased &&
      updateWithSetters({
        root: o.workDir,
        ...(spec.update?.path ? { path: spec.update.path } : {}),
        latest: o.latest,
        namespace,
        dryRun: true,
      }).changedFiles.length === 0;
    if (fresh) {
      const head = (await git.run(["rev-parse", "HEAD"])).trim();
      if (head === base) {
        // The rebase dropped our commit: the branch already has the same change.
        state = { run: state.run };
        log.info(
          { automation: subject, branch: pushBranch },
          "no change: the branch already has these updates",
        );
        return result(false, attempts);
      }
      state = { ...state, commit: head };
    } else {
      state = await update(base);
      if (!state.commit) return result(false, attempts);
    }
  }
  log.info({ automation: subject, branch: pushBranch, commit: state.commit }, "pushed");
  if (refspec) {
    await git.run(["push", "--quiet", "--", url, refspec]).catch((e) => wrap(e, `push ${refspec}`));
  }
  const res = result(true, attempts);
  if (pullRequest) {
    const message = state.message ?? "";
    const pr = await o.openPullRequest!({
      repoUrl: git.redact(url),
      head: pushBranch,
      base: checkoutBranch,
      title: message.split("\n")[0] ?? "",
      body: message,
      commit: state.commit!,
      automation: { namespace, name },
    });
    res.pullRequest = { url: pr.url, branch: pushBranch };
  }
  return res;
}

/** "ok", "moved" (rejected because the remote branch moved), or the error text. */
async function pushOnce(git: GitRunner, url: string, commit: string, branch: string): Promise<string> {
  try {
    await git.run(["push", "--porcelain", "--", url, `${commit}:refs/heads/${branch}`]);
    return "ok";
  } catch (e) {
    if (!(e instanceof GitError)) throw e;
    const text = `${e.stdout}\n${e.stderr}`;
    if (
      /\[rejected\]|fetch first|non-fast-forward|stale info|cannot lock ref|failed to update ref|incorrect old value|but expected/.test(
        text,
      )
    ) {
      return "moved";
    }
    return e.message;
  }
}

/** Rebases HEAD onto `onto`; false (and the rebase aborted) when it does not apply cleanly. */
async function rebase(git: GitRunner, onto: string, env: Record<string, string>): Promise<boolean> {
  try {
    await git.run(["rebase", "--quiet", onto], { env });
    return true;
  } catch {
    await abortRebase(git);
    return false;
  }
}

/** Whether a git directory holds `*.lock` files (index.lock, HEAD.lock, refs/…/x.lock, …). */
function hasLockFiles(dir: string): boolean {
  if (!existsSync(dir)) return false;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (e.name !== "objects" && hasLockFiles(join(dir, e.name))) return true;
    } else if (e.name.endsWith(".lock")) return true;
  }
  return false;
}

async function abortRebase(git: GitRunner): Promise<void> {
  await git.run(["rebase", "--abort"]).catch(() => undefined);
}
