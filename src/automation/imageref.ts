/**
 * Splitting an image reference the way Flux's setters do (go-containerregistry, weak validation):
 * `name[:tag][@digest]`, where a `:` belongs to the tag only after the last `/` (so a registry
 * port is part of the name). Also the Docker Hub normalisation that commit-message templates see
 * through `Registry`, `Repository` and `Name` (`nginx` → `index.docker.io/library/nginx`).
 */
import { SluiceError } from "../core/index.js";

export interface ImageParts {
  /** As given (what the whole-image setter writes). */
  ref: string;
  /** Everything before the tag and digest (what the `:name` setter writes). */
  name: string;
  /** The tag; "" when the reference has none. */
  tag: string;
  /** `sha256:…`; "" when the reference has none. */
  digest: string;
}

const DEFAULT_REGISTRY = "index.docker.io";

export function parseImageRef(ref: string, what = "image"): ImageParts {
  if (ref === "" || /\s/.test(ref) || ref.startsWith("-")) {
    throw new SluiceError("ConfigInvalid", `${what} ${JSON.stringify(ref)} is not an image reference`, {
      hint: "an image reference looks like registry.example.com/team/app:1.2.3",
    });
  }
  let rest = ref;
  let digest = "";
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag = "";
  const colon = rest.lastIndexOf(":");
  const hasTag = colon > rest.lastIndexOf("/");
  if (hasTag) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (rest === "" || (at >= 0 && digest === "") || (hasTag && tag === "")) {
    throw new SluiceError("ConfigInvalid", `${what} ${JSON.stringify(ref)} is not an image reference`, {
      hint: "an image reference looks like registry.example.com/team/app:1.2.3",
    });
  }
  return { ref, name: rest, tag, digest };
}

/** Registry and repository with Docker's defaults (go-containerregistry's `Registry`/`RepositoryStr`). */
export function normalizeImageName(name: string): { registry: string; repository: string } {
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  if (slash < 0 || (!/[.:]/.test(first) && first !== "localhost")) {
    const repository = slash < 0 ? `library/${name}` : name;
    return { registry: DEFAULT_REGISTRY, repository };
  }
  const registry = first === "docker.io" ? DEFAULT_REGISTRY : first;
  let repository = name.slice(slash + 1);
  if (registry === DEFAULT_REGISTRY && !repository.includes("/")) repository = `library/${repository}`;
  return { registry, repository };
}

/** Flux's `ImageRef` as commit-message templates see it. */
export interface TemplateImageRef {
  String: string;
  Identifier: string;
  Repository: string;
  Registry: string;
  Name: string;
  Policy: { Namespace: string; Name: string };
}

export function templateImageRef(image: string, policy: string): TemplateImageRef {
  const p = parseImageRef(image);
  const { registry, repository } = normalizeImageName(p.name);
  const identifier = p.digest || p.tag || "latest";
  const sep = p.digest ? "@" : ":";
  const colon = policy.indexOf(":");
  return {
    String: image,
    Identifier: identifier,
    Repository: repository,
    Registry: registry,
    Name: `${registry}/${repository}${sep}${identifier}`,
    Policy: { Namespace: policy.slice(0, colon), Name: policy.slice(colon + 1) },
  };
}
