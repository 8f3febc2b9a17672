/**
 * Git sources: Flux `GitRepository` fetched with the real git into a shallow cache, one read-only
 * snapshot directory per commit, branch discovery for environments, and a real Git HTTP server
 * (`git http-backend`) for the demo and tests.
 */

/** The hardened git runner (argument arrays, scrubbed environment, time limit, secrets off the command line). */
export { firstErrorLine, GitRunError, type GitRunOptions, runGit } from "./_git.js";
/** Highest tag matching a semver range (strict X.Y.Z, optional `v`), as Flux's `ref.semver`. */
export { pickSemverTag } from "./_semver.js";
/** DNS-1123 label for a branch name (`preview-{{branch.slug}}`). */
export { slugifyBranch } from "./_slug.js";
/** Removes userinfo from every URL in a text (for messages and logs). */
export { redactUrls } from "./_url.js";
/** A Git HTTP server on 127.0.0.1 backed by `git http-backend`, with push notifications and outages. */
export { type GitServer, type GitServerOptions, type RefUpdate, startGitServer } from "./gitserver.js";
/** Fetches refs into per-commit snapshots; lists branches; collects unused snapshots. */
export {
  type Artifact,
  type FetchObservation,
  type GitRepositorySpec,
  GitSource,
  type GitSourceOptions,
  isSafeRefName,
} from "./gitsource.js";
