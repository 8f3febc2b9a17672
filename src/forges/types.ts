/** What Sluice asks of a code forge (GitHub, GitLab): PR comments, commit statuses, pull requests. */
import { SluiceError } from "../core/index.js";

/** GitHub's commit states; GitLab's are mapped (failure/error → failed). */
export type CommitState = "pending" | "success" | "failure" | "error";

export interface PullRequestRequest {
  /** Source branch. */
  head: string;
  /** Target branch. */
  base: string;
  title: string;
  body: string;
}

export interface PullRequestResult {
  /** GitHub's number, GitLab's iid. */
  number: number;
  /** Where people see it. */
  url: string;
  /** False when an open one for the same head and base was updated. */
  created: boolean;
}

export interface CommentResult {
  id: number;
  /** False when the comment carrying the marker was updated in place. */
  created: boolean;
}

export interface Forge {
  readonly kind: "github" | "gitlab";
  /** The repository (`owner/repo`, or the GitLab project path or id). */
  readonly repository: string;
  /**
   * One comment per pull request, found by `marker` (a hidden HTML comment such as
   * `<!-- sluice:plan -->`) and edited in place; created when there is none. The body gets the
   * marker as its first line when it does not already carry it.
   */
  upsertComment(pr: number, marker: string, body: string): Promise<CommentResult>;
  /** A commit status (`context` names it; GitLab calls it `name`). Descriptions are cut to 140 characters. */
  setStatus(
    sha: string,
    context: string,
    state: CommitState,
    description: string,
    targetUrl?: string,
  ): Promise<void>;
  /** Opens a pull request from head into base, or updates the title and body of the open one. */
  openOrUpdatePullRequest(req: PullRequestRequest): Promise<PullRequestResult>;
}

/** GitHub's limit for a comment body; bodies are cut below it. */
export const MAX_COMMENT_CHARS = 65_000;
/** GitHub's limit for a status description. */
export const MAX_STATUS_DESCRIPTION = 140;
/** Most comments read while looking for the marker (pages of 100). */
export const MAX_COMMENT_PAGES = 20;

export function withMarker(marker: string, body: string): string {
  const b = body.includes(marker) ? body : `${marker}\n${body}`;
  if (b.length <= MAX_COMMENT_CHARS) return b;
  const note = "\n\n… (cut: too long for a comment)\n";
  return b.slice(0, MAX_COMMENT_CHARS - note.length) + note;
}

export function shortDescription(s: string): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length <= MAX_STATUS_DESCRIPTION ? one : `${one.slice(0, MAX_STATUS_DESCRIPTION - 1)}…`;
}

export function checkMarker(marker: string): void {
  if (!/^<!--.*-->$/.test(marker) || marker.length > 200 || marker.includes("\n"))
    throw new SluiceError(
      "ConfigInvalid",
      `comment marker ${JSON.stringify(marker.slice(0, 40))} is not a one-line HTML comment`,
      {
        hint: "use a marker such as <!-- sluice:plan -->",
      },
    );
}
