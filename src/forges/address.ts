/** A forge from a repository address, as Flux's `github`/`gitlab` Providers give it. */
import { SluiceError } from "../core/index.js";
import { createGitHubForge } from "./github.js";
import { createGitLabForge } from "./gitlab.js";
import type { Forge } from "./types.js";

export interface ForgeAddress {
  type: "github" | "gitlab";
  /** The repository's web address: `https://github.com/owner/repo`, `https://gitlab.example.com/group/project` (or `…/1234`, a project id). */
  address: string;
  token: string;
  /** Overrides the API root derived from the address (GitHub Enterprise behind another path, tests). */
  apiUrl?: string;
  timeoutMs?: number;
}

export interface ParsedAddress {
  origin: string;
  /** Path segments of the repository, without `.git`. */
  path: string[];
}

export function parseRepositoryAddress(address: string): ParsedAddress {
  let u: URL;
  try {
    u = new URL(address);
  } catch {
    throw new SluiceError(
      "ConfigInvalid",
      `repository address ${JSON.stringify(address.slice(0, 200))} is not a URL`,
      {
        hint: "use the repository's https address, e.g. https://github.com/owner/repo",
      },
    );
  }
  if (u.protocol !== "https:" && u.protocol !== "http:")
    throw new SluiceError(
      "ConfigInvalid",
      `repository address ${u.protocol}//${u.host}: only http(s) is supported`,
    );
  const path = u.pathname
    .replace(/\.git$/, "")
    .split("/")
    .filter((s) => s.length > 0)
    .map(decodeURIComponent);
  return { origin: u.origin, path };
}

/**
 * GitHub: `https://github.com/OWNER/REPO` → the public API; any other host is GitHub Enterprise
 * (`https://HOST/api/v3`). GitLab: `https://HOST/GROUP/…/PROJECT` (or `https://HOST/ID`).
 */
export function createForge(a: ForgeAddress): Forge {
  if (!a.token)
    throw new SluiceError("ConfigInvalid", `${a.type} forge for ${a.address}: no token`, {
      hint: "put the API token under the key `token` of the Provider's secret",
    });
  const p = parseRepositoryAddress(a.address);
  const timeout = a.timeoutMs ? { timeoutMs: a.timeoutMs } : {};
  if (a.type === "github") {
    if (p.path.length !== 2)
      throw new SluiceError(
        "ConfigInvalid",
        `GitHub address ${p.origin}/${p.path.join("/")}: expected OWNER/REPO`,
      );
    const apiUrl =
      a.apiUrl ??
      (new URL(p.origin).hostname === "github.com" ? "https://api.github.com" : `${p.origin}/api/v3`);
    return createGitHubForge({ owner: p.path[0]!, repo: p.path[1]!, token: a.token, apiUrl, ...timeout });
  }
  if (p.path.length === 0)
    throw new SluiceError(
      "ConfigInvalid",
      `GitLab address ${p.origin}: expected GROUP/PROJECT or a project id`,
    );
  const project = p.path.length === 1 && /^\d+$/.test(p.path[0]!) ? Number(p.path[0]) : p.path.join("/");
  return createGitLabForge({ host: a.apiUrl ?? p.origin, project, token: a.token, ...timeout });
}
