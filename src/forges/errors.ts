/** Forge client failures as SluiceErrors: status and what was attempted, never a token or a body. */
import { SluiceError } from "../core/index.js";
import { redactUrls } from "../source/index.js";

/** The HTTP status of an Octokit (`status`) or Gitbeaker (`cause.response.status`) error. */
export function statusOf(e: unknown): number | undefined {
  const o = e as { status?: unknown; cause?: { response?: { status?: unknown } } } | null;
  if (typeof o?.status === "number") return o.status;
  const s = o?.cause?.response?.status;
  return typeof s === "number" ? s : undefined;
}

export function forgeError(forge: string, what: string, e: unknown): SluiceError {
  const status = statusOf(e);
  const code =
    status === 401
      ? "Unauthorized"
      : status === 403
        ? "Forbidden"
        : status === 404
          ? "NotFound"
          : "TargetUnavailable";
  const why =
    status !== undefined
      ? `HTTP ${status}`
      : redactUrls(e instanceof Error ? e.message : String(e))
          .split("\n")[0]!
          .slice(0, 200);
  return new SluiceError(code, `${forge}: ${what} failed: ${why}`, {
    cause: e,
    detail: { forge, ...(status !== undefined ? { status } : {}) },
    hint:
      status === 401 || status === 403
        ? "check the token in the Provider's secret (it needs permission to comment and set statuses)"
        : status === 404
          ? "check the repository address (GitLab: the project path or id) and that the token can see it"
          : "the forge may be unreachable; this is retried on the next push",
  });
}
