/** GitLab (gitlab.com or self-managed) through the official-ecosystem client, `@gitbeaker/rest`. */
import { Gitlab } from "@gitbeaker/rest";
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

export interface GitLabForgeOptions {
  /** `https://gitlab.com` (default) or a self-managed instance's root URL. */
  host?: string;
  /** The project: its numeric id or its path (`group/sub/project`). */
  project: string | number;
  token: string;
  /** Per request (default 30 s). */
  timeoutMs?: number;
}

const STATES: Record<CommitState, "pending" | "success" | "failed"> = {
  pending: "pending",
  success: "success",
  failure: "failed",
  error: "failed",
};

export function createGitLabForge(opts: GitLabForgeOptions): Forge {
  const api = new Gitlab({
    host: (opts.host ?? "https://gitlab.com").replace(/\/+$/, ""),
    token: opts.token,
    queryTimeout: opts.timeoutMs ?? 30_000,
  });
  const project = opts.project;
  const repository = String(project);
  const fail = (what: string, e: unknown) => forgeError(`GitLab ${repository}`, what, e);

  return {
    kind: "gitlab",
    repository,

    async upsertComment(mr: number, marker: string, body: string): Promise<CommentResult> {
      checkMarker(marker);
      const text = withMarker(marker, body);
      let existing: { id: number } | undefined;
      try {
        const notes = await api.MergeRequestNotes.all(project, mr, {
          perPage: 100,
          maxPages: MAX_COMMENT_PAGES,
          sort: "asc",
          orderBy: "created_at",
        });
        existing = notes.find((n) => !n.system && typeof n.body === "string" && n.body.includes(marker));
      } catch (e) {
        throw fail(`listing the notes of merge request !${mr}`, e);
      }
      try {
        if (existing) {
          await api.MergeRequestNotes.edit(project, mr, existing.id, { body: text });
          return { id: existing.id, created: false };
        }
        const note = await api.MergeRequestNotes.create(project, mr, text);
        return { id: note.id, created: true };
      } catch (e) {
        throw fail(`${existing ? "updating" : "creating"} the note on merge request !${mr}`, e);
      }
    },

    async setStatus(sha, context, state: CommitState, description, targetUrl) {
      try {
        await api.Commits.editStatus(project, sha, STATES[state], {
          name: context,
          description: shortDescription(description),
          ...(targetUrl ? { targetUrl } : {}),
        });
      } catch (e) {
        throw fail(`setting status ${context} on ${sha.slice(0, 10)}`, e);
      }
    },

    async openOrUpdatePullRequest(req: PullRequestRequest): Promise<PullRequestResult> {
      let open: { iid: number; web_url: string } | undefined;
      try {
        const list = await api.MergeRequests.all({
          projectId: project,
          state: "opened",
          sourceBranch: req.head,
          targetBranch: req.base,
          perPage: 10,
          maxPages: 1,
        });
        open = list[0] as { iid: number; web_url: string } | undefined;
      } catch (e) {
        throw fail(`listing merge requests from ${req.head} into ${req.base}`, e);
      }
      try {
        if (open) {
          const mr = await api.MergeRequests.edit(project, open.iid, {
            title: req.title,
            description: req.body,
          });
          return { number: mr.iid, url: mr.web_url, created: false };
        }
        const mr = await api.MergeRequests.create(project, req.head, req.base, req.title, {
          description: req.body,
        });
        return { number: mr.iid, url: mr.web_url, created: true };
      } catch (e) {
        throw fail(`${open ? "updating" : "opening"} the merge request from ${req.head} into ${req.base}`, e);
      }
    },
  };
}
