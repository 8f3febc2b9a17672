/** The images module's public types: image references, registry options, scan and policy results. */

/** An image reference split the way Docker (distribution/reference) reads it. */
export interface ImageRef {
  /** The registry host, normalized: `docker.io` for Docker Hub (also when written `index.docker.io`). */
  domain: string;
  /** The repository path in that registry: `library/nginx`, `org/app`. */
  path: string;
  tag?: string;
  /** `algorithm:hex`, e.g. `sha256:…`. */
  digest?: string;
  /** Docker's full name: `docker.io/library/nginx`, `ghcr.io/org/app`. */
  name: string;
  /** Flux's `status.canonicalImageName` (go-containerregistry): `index.docker.io/library/nginx`. */
  canonical: string;
  /** The host serving the registry API: `registry-1.docker.io` for Docker Hub, else `domain`. */
  apiHost: string;
}

/** A docker config JSON (`.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret), parsed. */
export interface DockerConfig {
  auths?: Record<string, DockerAuthEntry | undefined>;
}

export interface DockerAuthEntry {
  /** base64 of `username:password`. */
  auth?: string;
  username?: string;
  password?: string;
}

export interface RegistryOptions {
  /** Plain HTTP (the ImageRepository's `insecure`). Loopback registries use HTTP anyway. */
  insecure?: boolean;
  /** Credentials: the parsed docker config JSON of the `secretRef` Secret. */
  dockerConfig?: DockerConfig;
  /** Time for the whole listing (all pages, token requests included). Default 60 s. */
  timeoutMs?: number;
  /** Time for one HTTP request. Default 30 s (never more than what is left of timeoutMs). */
  requestTimeoutMs?: number;
  /** Tags asked per page (`n`). Default 1000; registries may return fewer. */
  pageSize?: number;
  /** Pages followed at most. Default 1000. */
  maxPages?: number;
  /** Tags accepted at most. Default 100,000. */
  maxTags?: number;
  /** Injected fetch (tests); default the global one. */
  fetch?: typeof fetch;
}

/** What a listing did, for logs and metrics (no secrets). */
export interface ListStats {
  pages: number;
  requests: number;
  /** `none`, `basic` or `bearer`. */
  auth: "none" | "basic" | "bearer";
}

export interface ScanResult {
  /** The ImageRepository's `spec.image`, as written. */
  image: string;
  /** Flux's canonical name (`index.docker.io/library/nginx`). */
  canonicalImageName: string;
  /** Tags after the exclusion list, in the registry's order. */
  tags: string[];
  count: number;
  /** ISO 8601 time the scan finished. */
  scannedAt: string;
  /** Up to 10 tags, greatest first by string order (Flux's `lastScanResult.latestTags`). */
  latestTags: string[];
  /** The exclusion list applied (the default when the spec has none). */
  exclusionList: string[];
  /** Tags the exclusion list removed. */
  excluded: number;
  stats: ListStats;
}

export interface ScanOptions extends RegistryOptions {
  /** Names the object in messages, e.g. `ImageRepository/flux-system/app`. */
  subject?: string;
}

/** The tag a policy selected. */
export interface LatestImage {
  /** The tag as the registry has it (`v1.2.3` keeps its `v`). */
  tag: string;
  /** The repository image as given (the ImageRepository's `spec.image`), or "" when none was given. */
  name: string;
  /** `name:tag`, or just the tag when no name was given. */
  image: string;
}

export interface PolicyOptions {
  /** The repository image, for `LatestImage.name` / `.image`. */
  image?: string;
  /** Names the object in messages, e.g. `ImagePolicy/flux-system/app`. */
  subject?: string;
}
