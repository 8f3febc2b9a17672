/**
 * The types of the automation module: what a run of image setters finds and changes, and what a run
 * of an ImageUpdateAutomation reports. Model first; the code that produces them lives beside.
 */

/** A policy's latest image: the full reference, `repo:tag` (optionally `repo:tag@sha256:…`). */
export interface LatestImage {
  image: string;
}

/** Policies' latest images keyed `"<namespace>:<policy>"` (the marker's own spelling). */
export type LatestImages = ReadonlyMap<string, LatestImage>;

/** Which part of the policy's image a marker writes. */
export type SetterKind = "image" | "tag" | "name" | "digest";

/** The object a changed field belongs to (Flux's ObjectIdentifier); empty strings when absent. */
export interface ObjectIdentifier {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
}

/** One field rewritten by a marker. */
export interface SetterUpdate {
  /** Path relative to the repository root, `/`-separated. */
  file: string;
  /** 1-based line of the value. */
  line: number;
  from: string;
  to: string;
  /** The policy, `namespace:name`. */
  policy: string;
  /** The marker as written, `namespace:name[:tag|:name|:digest]` (Flux's `Setter`). */
  setter: string;
  kind: SetterKind;
  /** The policy's full latest image (what `.Updated.Images` lists). */
  image: string;
  object: ObjectIdentifier;
}

/** A file under the update path that was not processed, and why (Flux skips these too). */
export interface SkippedFile {
  file: string;
  reason: string;
}

/** A marker that was seen but deliberately not applied (e.g. a policy of another namespace). */
export interface IgnoredMarker {
  file: string;
  line: number;
  setter: string;
  reason: string;
}

/** The outcome of applying setters to a tree. */
export interface SetterRun {
  /** Every rewritten field, in file then position order. */
  updates: SetterUpdate[];
  /** Files whose content changed (repository-relative, sorted). */
  changedFiles: string[];
  /** Files that carry the marker token but could not be processed (unparseable YAML, symlinks, …). */
  skipped: SkippedFile[];
  ignored: IgnoredMarker[];
}

/** What `openPullRequest` receives when `push.pullRequest` is on. */
export interface PullRequestRequest {
  /** The repository URL (as configured, credentials stripped). */
  repoUrl: string;
  /** The branch the automation pushed its commit to. */
  head: string;
  /** The branch the change is proposed for. */
  base: string;
  /** First line of the commit message. */
  title: string;
  /** The whole commit message. */
  body: string;
  commit: string;
  automation: { namespace: string; name: string };
}

/** Opens (or updates) a pull/merge request; implemented by the forge module. */
export type OpenPullRequest = (req: PullRequestRequest) => Promise<{ url: string }>;

/** The result of one run of an ImageUpdateAutomation. */
export interface AutomationResult {
  /** The commit made (and pushed, when `pushed`); absent when nothing changed. */
  commit?: string;
  /** The commit message (absent when no commit). */
  message?: string;
  /** The branch the commit went to. */
  branch: string;
  changedFiles: string[];
  updates: SetterUpdate[];
  skipped: SkippedFile[];
  ignored: IgnoredMarker[];
  pushed: boolean;
  /** Push attempts made (0 without a push; more than 1 after rejected pushes). */
  attempts: number;
  /** Set when a pull request was opened or updated. */
  pullRequest?: { url: string; branch: string };
}
