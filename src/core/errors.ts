/**
 * One error type for the whole engine. Every failure a user can see carries a stable `code`
 * (for scripts and status reasons), a sentence saying what failed and where, and, when we know
 * it, what to do about it. Never put secret values in a message: messages reach logs, events,
 * the API and the dashboard.
 */
export type ErrorCode =
  | "ConfigInvalid"
  | "YamlInvalid"
  | "YamlTooLarge"
  | "PathEscape"
  | "FileTooLarge"
  | "NotKubernetes"
  | "KustomizeMissing"
  | "KustomizeFailed"
  | "SubstitutionFailed"
  | "VariableUndefined"
  | "VariableNameInvalid"
  | "DecryptionFailed"
  | "LimitExceeded"
  | "ArtifactFailed"
  | "BuildFailed"
  | "ReconciliationFailed"
  | "PruneFailed"
  | "HealthCheckFailed"
  | "SmokeTestFailed"
  | "DependencyNotReady"
  | "DependencyCycle"
  | "TargetUnavailable"
  | "NotFound"
  | "Unauthorized"
  | "Forbidden"
  | "Conflict"
  | "Locked"
  | "Internal";

export class SluiceError extends Error {
  readonly code: ErrorCode;
  /** Extra, non-secret, machine-readable detail (file, document, field path, …). */
  readonly detail: Record<string, unknown>;
  /** What the user can do about it; printed after the message by the CLI. */
  readonly hint: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { detail?: Record<string, unknown>; hint?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "SluiceError";
    this.code = code;
    this.detail = opts.detail ?? {};
    this.hint = opts.hint;
  }
}

export function isSluiceError(e: unknown, code?: ErrorCode): e is SluiceError {
  return e instanceof SluiceError && (code === undefined || e.code === code);
}

/** A message for any thrown value, for places that must report but not rethrow. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
