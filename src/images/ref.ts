/**
 * Image references with Docker's rules (distribution/reference `ParseNormalizedNamed`):
 * `host[:port]/path[:tag][@digest]`; the first path component is a registry host only if it has a
 * `.` or `:`, is `localhost`, or has an uppercase letter; otherwise the registry is Docker Hub
 * (`docker.io`, also spelled `index.docker.io`), where a one-component name gets `library/`.
 */
import { SluiceError } from "../core/index.js";
import type { ImageRef } from "./types.js";

const DOCKER_HUB = "docker.io";
const LEGACY_DOCKER_HUB = "index.docker.io";
const DOCKER_HUB_API = "registry-1.docker.io";
const NAME_MAX = 255;

const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const TAG = "[\\w][\\w.-]{0,127}";
const DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const REFERENCE = new RegExp(
  `^(?:(${DOMAIN})/)?(${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::(${TAG}))?(?:@(${DIGEST}))?$`,
);

function invalid(ref: string, why: string): never {
  throw new SluiceError("ConfigInvalid", `invalid image reference ${JSON.stringify(ref)}: ${why}`, {
    hint: "Write it as [host[:port]/]path[:tag][@digest], e.g. ghcr.io/org/app, nginx or localhost:5000/app.",
  });
}

/** Splits and normalizes an image reference. @throws SluiceError ConfigInvalid when malformed. */
export function parseImageRef(ref: string): ImageRef {
  const s = ref.trim();
  if (s === "") invalid(ref, "it is empty");
  if (s.includes("://"))
    invalid(ref, `it must not start with a URL scheme; remove '${s.split("://")[0]}://'`);
  if (/^[a-f0-9]{64}$/.test(s)) invalid(ref, "a 64-character hexadecimal string is an image ID, not a name");
  const slash = s.indexOf("/");
  let domain: string;
  let remainder: string;
  const first = slash < 0 ? "" : s.slice(0, slash);
  if (slash < 0 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    domain = DOCKER_HUB;
    remainder = s;
  } else {
    domain = first;
    remainder = s.slice(slash + 1);
  }
  if (domain === LEGACY_DOCKER_HUB) domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !remainder.includes("/")) remainder = `library/${remainder}`;
  const repoPart = remainder.split(/[:@]/)[0] ?? "";
  if (repoPart.toLowerCase() !== repoPart)
    invalid(ref, `the repository name (${repoPart}) must be lowercase`);
  const m = REFERENCE.exec(`${domain}/${remainder}`);
  if (!m) invalid(ref, "it does not match the reference grammar");
  const path = m[2]!;
  const name = `${domain}/${path}`;
  if (name.length > NAME_MAX) invalid(ref, `the name is longer than ${NAME_MAX} characters`);
  const out: ImageRef = {
    domain,
    path,
    name,
    canonical: `${domain === DOCKER_HUB ? LEGACY_DOCKER_HUB : domain}/${path}`,
    apiHost: domain === DOCKER_HUB ? DOCKER_HUB_API : domain,
  };
  if (m[3] !== undefined) out.tag = m[3];
  if (m[4] !== undefined) out.digest = m[4];
  return out;
}

/** True for hosts that only this machine can reach: `localhost`, `127.0.0.0/8`, `[::1]`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/:[0-9]+$/, "").toLowerCase();
  return h === "localhost" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "[::1]";
}
