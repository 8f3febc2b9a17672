/** GitHub (and GitHub Enterprise) through the official client, `@octokit/rest`. */
import { Octokit } from "@octokit/rest";
import { forgeError } from "./errors.js";
import {
  type CommentResult,
  type CommitState,
  checkMarker,
  type Forge,
  MAX_COMMENT_PAGES,
  type PullRequestRequest,
  type PullRequestResult,
  shortDescription,
  withMarker,
} from "./types.js";

export interface GitHubForgeOptions {
  owner: string;
  repo: string;
  token: string;
  /** REST API root: `https://api.github.com` (default), or `https://HOST/api/v3` for Enterprise. */
  apiUrl?: string;
  /** Per request (default 30 s). */
  timeoutMs?: number;
  userAgent?: string;
}

export function createGitHubForge(opts: GitHubForgeOptions): Forge {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const octokit = new Octokit({
    auth: opts.token,
    baseUrl: (opts.apiUrl ?? "https://api.github.com").replace(/\/+$/, ""),
    userAgent: opts.userAgent ?? "sluice",
    request: {
      fetch: (url: string, init: RequestInit) =>
        fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) }),
    },
    // No console output from the client: failures are reported through our errors.
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
  });
  const { owner, repo } = opts;
  const repository = `${owner}/${repo}`;
  const fail = (what: string, e: unknown) => forgeError(`GitHub ${repository}`, what, e);

  return {
    kind: "github",
    repository,

    async upsertComment(pr: number, marker: string, body: string): Promise<CommentResult> {
      checkMarker(marker);
      const text = withMarker(marker, body);
      let existing: { id: number } | undefined;
      try {
        let page = 0;
        for await (const res of octokit.paginate.iterator(octokit.rest.issues.listComments, {
          owner,
          repo,
          issue_number: pr,
          per_page: 100,
        })) {
          existing = res.data.find((c) => (c.body ?? "").includes(marker));
          if (existing || ++page >= MAX_COMMENT_PAGES) break;
        }
      } catch (e) {
        throw fail(`listing the comments of pull request #${pr}`, e);
      }
      try {
        if (existing) {
          await octokit.rest.issues.updateComment({ owner, repo, comment_id: existing.id, body: text });
          return { id: existing.id, created: false };
        }
        const res = await octokit.rest.issues.createComment({ owner, repo, issue_number: pr, body: text });
        return { id: res.data.id, created: true };
      } catch (e) {
        throw fail(`${existing ? "updating" : "creating"} the comment on pull request #${pr}`, e);
      }
    },

    async setStatus(sha, context, state: CommitState, description, targetUrl) {
      try {
        await octokit.rest.repos.createCommitStatus({
          owner,
          repo,
          sha,
          state,
          context,
          description: shortDescription(description),
          ...(targetUrl ? { target_url: targetUrl } : {}),
        });
      } catch (e) {
        throw fail(`setting status ${context} on ${sha.slice(0, 10)}`, e);
      }
    },

    async openOrUpdatePullRequest(req: PullRequestRequest): Promise<PullRequestResult> {
      let open: { number: number; html_url: string } | undefined;
      try {
        const res = await octokit.rest.pulls.list({
          owner,
          repo,
          state: "open",
          head: `${owner}:${req.head}`,
          base: req.base,
          per_page: 10,
        });
        open = res.data[0];
      } catch (e) {
        throw fail(`listing pull requests from ${req.head} into ${req.base}`, e);
      }
      try {
        if (open) {
          const res = await octokit.rest.pulls.update({
            owner,
            repo,
            pull_number: open.number,
            title: req.title,
            body: req.body,
          });
          return { number: res.data.number, url: res.data.html_url, created: false };
        }
        const res = await octokit.rest.pulls.create({
          owner,
          repo,
          head: req.head,
          base: req.base,
          title: req.title,
          body: req.body,
        });
        return { number: res.data.number, url: res.data.html_url, created: true };
      } catch (e) {
        throw fail(`${open ? "updating" : "opening"} the pull request from ${req.head} into ${req.base}`, e);
      }
    },
  };
}
