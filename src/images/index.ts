/**
 * Images: registry scanning (Flux `ImageRepository`) and tag selection (Flux `ImagePolicy`).
 *
 * - `parseImageRef` — Docker's reference rules (default registry, `library/`, canonical names).
 * - `listTags` — the OCI distribution tag listing with pagination, Bearer and Basic auth.
 * - `scanRepository` — an ImageRepository spec → its tags after the exclusion list.
 * - `selectLatest` / `compilePolicy` — an ImagePolicy spec + tags → the latest tag, with Flux's
 *   semver (Masterminds), alphabetical and numerical policies and RE2 `filterTags`.
 */
export { type Credentials, credentialsFor } from "./auth.js";
export { type CompiledPolicy, compilePolicy, type PolicyKind, selectLatest } from "./policy.js";
export { isLoopbackHost, parseImageRef } from "./ref.js";
export { type ListResult, listTags, registryBaseUrl } from "./registry.js";
export { DEFAULT_EXCLUSION_LIST, scanRepository } from "./scan.js";
export type {
  DockerAuthEntry,
  DockerConfig,
  ImageRef,
  LatestImage,
  ListStats,
  PolicyOptions,
  RegistryOptions,
  ScanOptions,
  ScanResult,
} from "./types.js";
