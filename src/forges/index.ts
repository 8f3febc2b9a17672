/**
 * Code forges: GitHub (`@octokit/rest`) and GitLab (`@gitbeaker/rest`) for pull-request plan
 * comments (one per pull request, edited in place), commit statuses, and opening or updating pull
 * requests; verified pull-request webhooks; and the loop that publishes a plan on each push.
 */
export { createForge, type ForgeAddress, parseRepositoryAddress } from "./address.js";
export { createGitHubForge, type GitHubForgeOptions } from "./github.js";
export { createGitLabForge, type GitLabForgeOptions } from "./gitlab.js";
export {
  PLAN_CONTEXT,
  PLAN_MARKER,
  type PullRequestPlanOptions,
  type PullRequestPlanResult,
  publishPullRequestPlan,
} from "./prplan.js";
export {
  type CommentResult,
  type CommitState,
  type Forge,
  MAX_COMMENT_CHARS,
  MAX_STATUS_DESCRIPTION,
  type PullRequestRequest,
  type PullRequestResult,
} from "./types.js";
export {
  type PullRequestEvent,
  type PullRequestVerdict,
  parsePullRequestWebhook,
  pullRequestEventName,
  pullRequestFromDelivery,
} from "./webhooks.js";
