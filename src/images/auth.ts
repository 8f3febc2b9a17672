/**
 * Registry credentials and challenges: looking a host up in a docker config JSON, and parsing
 * `WWW-Authenticate` (`Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`).
 * Nothing here ever puts a credential into a message.
 */
import type { DockerConfig } from "./types.js";

export interface Credentials {
  username: string;
  password: string;
}

const DOCKER_HUB_ALIASES = new Set([
  "docker.io",
  "index.docker.io",
  "registry-1.docker.io",
  "registry.hub.docker.com",
]);

/** `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`. */
function normalizeHost(key: string): string {
  let h = key.trim().toLowerCase();
  h = h.replace(/^[a-z][a-z0-9+.-]*:\/\//, "");
  h = h.split("/")[0] ?? "";
  return DOCKER_HUB_ALIASES.has(h) ? "docker.io" : h;
}

/**
 * The credentials a docker config gives for a registry domain (as in `ImageRef.domain`), or
 * undefined. Keys may carry a scheme and a path, as `docker login` writes them.
 */
export function credentialsFor(config: DockerConfig | undefined, domain: string): Credentials | undefined {
  const auths = config?.auths;
  if (!auths || typeof auths !== "object") return undefined;
  const want = normalizeHost(domain);
  for (const [key, entry] of Object.entries(auths)) {
    if (!entry || typeof entry !== "object" || normalizeHost(key) !== want) continue;
    if (typeof entry.username === "string" && typeof entry.password === "string" && entry.username !== "") {
      return { username: entry.username, password: entry.password };
    }
    if (typeof entry.auth === "string" && entry.auth !== "") {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
  }
  return undefined;
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, "utf8").toString("base64")}`;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses `WWW-Authenticate` (RFC 7235): one or more `Scheme k=v, k="v"` challenges. Values may be
 * quoted (with `\` escapes) and contain commas, as scopes like `repository:a:pull,push` do.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipWs();
    if (header[i] === ",") {
      i++;
      continue;
    }
    const tokenMatch = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(header.slice(i));
    if (!tokenMatch) break;
    const token = tokenMatch[0];
    const after = i + token.length;
    let j = after;
    while (j < n && (header[j] === " " || header[j] === "\t")) j++;
    if (header[j] === "=" && current) {
      // a parameter of the current challenge
      i = j + 1;
      skipWs();
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        const v = /^[^,\s]*/.exec(header.slice(i))![0];
        value = v;
        i += v.length;
      }
      current.params[token.toLowerCase()] = value;
      continue;
    }
    current = { scheme: token.toLowerCase(), params: {} };
    out.push(current);
    i = after;
  }
  return out;
}
