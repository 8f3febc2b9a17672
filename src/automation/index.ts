/**
 * Flux `ImageUpdateAutomation`: image setters that rewrite marked fields byte-exactly, commit
 * messages from Flux's Go templates, and a run that checks out, commits and pushes with the real git
 * (rebasing and retrying when someone else pushed first; never forcing).
 */

/** One run of an ImageUpdateAutomation: update, commit, push (rebase and retry when the branch moved). */
export {
  type AutomationLogger,
  type AutomationObject,
  type GitAuth,
  type RunAutomationOptions,
  runAutomation,
} from "./automation.js";
export { GitError, type GitRunner, gitRunner } from "./git.js";
/** Splitting image references (`name:tag@digest`) as Flux's setters do. */
export { type ImageParts, parseImageRef } from "./imageref.js";
/** Setters over one file's text, or over a tree (`update.path`), validating all before writing any. */
export {
  applySetters,
  type FileSetterResult,
  MARKER_TOKEN,
  type SetterError,
  type SetterOptions,
  updateWithSetters,
} from "./setters.js";
/** Commit message templates: parsed and type-checked at load, rendered like Go's text/template. */
export {
  compileMessageTemplate,
  DEFAULT_MESSAGE_TEMPLATE,
  type MessageData,
  type MessageTemplate,
} from "./template.js";
/** What setters find and change, and what a run reports. */
export type {
  AutomationResult,
  IgnoredMarker,
  LatestImage,
  LatestImages,
  ObjectIdentifier,
  OpenPullRequest,
  PullRequestRequest,
  SetterKind,
  SetterRun,
  SetterUpdate,
  SkippedFile,
} from "./types.js";
