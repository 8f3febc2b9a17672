/**
 * Pull-request webhooks: GitHub `pull_request` (signed with `X-Hub-Signature-256`) and GitLab
 * `Merge Request Hook` (`X-Gitlab-Token`), verified exactly as push receivers are
 * (`verifyWebhook` of receivers/), then reduced to one typed `PullRequestEvent`.
 *
 * Actions Sluice plans on: opened, synchronize (new commits; GitLab `update` with `oldrev`),
 * reopened, and a retarget (GitHub `edited` with a base change; GitLab `update` changing the
 * target branch), which is reported as synchronize. `closed` (and GitLab `merge`, with merged
 * true) ends a plan's life. Every other action is a verified delivery with nothing to do.
 */
import { verifyWebhook, type WebhookRequest } from "../receivers/index.js";

export interface PullRequestEvent {
  forge: "github" | "gitlab";
  action: "opened" | "synchronize" | "reopened" | "closed";
  /** GitHub's number, GitLab's iid. */
  number: number;
  headRef: string;
  headSha: string;
  baseRef: string;
  merged: boolean;
  /** The target repository's clone URL (https). */
  repoUrl: string;
  /** Every URL the payload gives for the target repository, to match GitRepository sources. */
  repoUrls: string[];
  /** `owner/repo`, or GitLab's `path_with_namespace`. */
  repository: string;
  /** GitLab: the target project's id. */
  projectId?: number;
  /** The head comes from another repository (a fork): fetch `headFetchRef`, not the branch. */
  fork: boolean;
  /** The ref that holds the head in the target repository (`refs/pull/N/head`, `refs/merge-requests/N/head`). */
  headFetchRef: string;
  title?: string;
  /** Where people see it. */
  url?: string;
}

export type PullRequestVerdict =
  | { ok: true; event: PullRequestEvent; deliveryId?: string }
  | { ok: true; event: null; ignored: string; deliveryId?: string }
  | { ok: false; reason: string };

const MAX_BODY = 25 * 1024 * 1024;

function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 && v.length <= 2048 ? v : undefined;
}

function int(v: unknown): number | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

function uniq(xs: (string | undefined)[]): string[] {
  return [...new Set(xs.filter((x): x is string => x !== undefined))];
}

function headerOf(headers: WebhookRequest["headers"], name: string): string | undefined {
  for (const [k, v] of Object.entries(headers ?? {}))
    if (k.toLowerCase() === name) return Array.isArray(v) ? v[0] : v;
  return undefined;
}

function payloadOf(req: WebhookRequest): unknown {
  if (req.body.length === 0 || req.body.length > MAX_BODY) return undefined;
  try {
    const text = req.body.toString("utf8");
    if (
      (headerOf(req.headers, "content-type") ?? "")
        .toLowerCase()
        .startsWith("application/x-www-form-urlencoded")
    ) {
      const p = new URLSearchParams(text).get("payload");
      return p === null ? undefined : JSON.parse(p);
    }
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const SHA = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

function github(payload: unknown): PullRequestEvent | string {
  const p = obj(payload);
  const pr = obj(p.pull_request);
  const head = obj(pr.head);
  const base = obj(pr.base);
  const repo = obj(p.repository);
  const baseRepo = obj(base.repo);
  const headRepo = obj(head.repo);
  const raw = str(p.action);
  let action: PullRequestEvent["action"] | undefined;
  if (raw === "opened" || raw === "synchronize" || raw === "reopened" || raw === "closed") action = raw;
  else if (raw === "edited" && obj(obj(p.changes).base).ref !== undefined) action = "synchronize";
  if (!action) return `pull_request action ${raw ?? "(none)"} needs no plan`;
  const number = int(p.number) ?? int(pr.number);
  const headSha = str(head.sha);
  const headRef = str(head.ref);
  const baseRef = str(base.ref);
  const repoUrl = str(baseRepo.clone_url) ?? str(repo.clone_url);
  const repository = str(baseRepo.full_name) ?? str(repo.full_name);
  if (!number || !headSha || !SHA.test(headSha) || !headRef || !baseRef || !repoUrl || !repository)
    return "pull_request payload lacks number, head, base or repository";
  const headFull = str(headRepo.full_name);
  return {
    forge: "github",
    action,
    number,
    headRef,
    headSha,
    baseRef,
    merged: pr.merged === true,
    repoUrl,
    repoUrls: uniq([
      repoUrl,
      str(baseRepo.html_url) ?? str(repo.html_url),
      str(baseRepo.ssh_url) ?? str(repo.ssh_url),
      str(baseRepo.git_url) ?? str(repo.git_url),
    ]),
    repository,
    fork: headFull !== undefined && headFull !== repository,
    headFetchRef: `refs/pull/${number}/head`,
    ...(str(pr.title) ? { title: str(pr.title)! } : {}),
    ...(str(pr.html_url) ? { url: str(pr.html_url)! } : {}),
  };
}

function gitlab(payload: unknown): PullRequestEvent | string {
  const p = obj(payload);
  if (p.object_kind !== "merge_request")
    return `object_kind ${str(p.object_kind) ?? "(none)"} is not a merge request`;
  const a = obj(p.object_attributes);
  const project = obj(p.project);
  const target = obj(a.target);
  const changes = obj(p.changes);
  const raw = str(a.action);
  let action: PullRequestEvent["action"] | undefined;
  if (raw === "open") action = "opened";
  else if (raw === "reopen") action = "reopened";
  else if (raw === "close" || raw === "merge") action = "closed";
  else if (raw === "update" && (str(a.oldrev) !== undefined || changes.target_branch !== undefined))
    action = "synchronize";
  if (!action) return `merge request action ${raw ?? "(none)"} needs no plan`;
  const number = int(a.iid);
  const headSha = str(obj(a.last_commit).id);
  const headRef = str(a.source_branch);
  const baseRef = str(a.target_branch);
  const repoUrl = str(target.git_http_url) ?? str(project.git_http_url);
  const repository = str(target.path_with_namespace) ?? str(project.path_with_namespace);
  if (!number || !headSha || !SHA.test(headSha) || !headRef || !baseRef || !repoUrl || !repository)
    return "merge request payload lacks iid, last commit, branches or project";
  const projectId = int(a.target_project_id) ?? int(project.id);
  const sourceId = int(a.source_project_id);
  return {
    forge: "gitlab",
    action,
    number,
    headRef,
    headSha,
    baseRef,
    merged: raw === "merge" || a.state === "merged",
    repoUrl,
    repoUrls: uniq([
      repoUrl,
      str(target.web_url) ?? str(project.web_url),
      str(target.git_ssh_url) ?? str(project.git_ssh_url),
      str(target.http_url) ?? str(project.http_url),
    ]),
    repository,
    ...(projectId ? { projectId } : {}),
    fork: sourceId !== undefined && projectId !== undefined && sourceId !== projectId,
    headFetchRef: `refs/merge-requests/${number}/head`,
    ...(str(a.title) ? { title: str(a.title)! } : {}),
    ...(str(a.url) ? { url: str(a.url)! } : {}),
  };
}

/**
 * Verifies a delivery with the receiver's secret token and, for a pull/merge request event,
 * returns it typed. Never throws; a failure reason never contains the payload or the secret.
 *
 * @example parsePullRequestWebhook("github", token, { headers: req.headers, body }) // → { ok: true, event }
 */
export function parsePullRequestWebhook(
  kind: "github" | "gitlab",
  secretToken: string,
  req: WebhookRequest,
): PullRequestVerdict {
  const v = verifyWebhook(kind, secretToken, req);
  if (!v.ok) return v;
  const id = v.deliveryId ? { deliveryId: v.deliveryId } : {};
  const r = pullRequestFromDelivery(kind, v.event, req);
  if (r === undefined) return { ok: false, reason: "the payload is not JSON" };
  return typeof r === "string" ? { ok: true, event: null, ignored: r, ...id } : { ok: true, event: r, ...id };
}

/** The forge's name for pull-request deliveries (`X-GitHub-Event` / `X-Gitlab-Event`). */
export function pullRequestEventName(kind: "github" | "gitlab"): string {
  return kind === "github" ? "pull_request" : "Merge Request Hook";
}

/**
 * For a delivery already verified (by the server's receiver route): the typed event, a string
 * saying why there is nothing to plan, or undefined when the body is not JSON.
 */
export function pullRequestFromDelivery(
  kind: "github" | "gitlab",
  event: string | undefined,
  req: WebhookRequest,
): PullRequestEvent | string | undefined {
  const want = pullRequestEventName(kind);
  if (event !== want) return `event ${event ?? "(none)"} is not ${want}`;
  const payload = payloadOf(req);
  if (payload === undefined) return undefined;
  return kind === "github" ? github(payload) : gitlab(payload);
}
