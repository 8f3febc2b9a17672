/**
 * A client for the OCI distribution API's tag listing, `GET /v2/<name>/tags/list`, over fetch:
 *
 * - Pagination: asks `?n=<pageSize>` and follows `Link: <…>; rel="next"` (RFC 5988, usually a
 *   path relative to the registry) until there is none. A registry that returns exactly `n` tags
 *   and no `Link` is asked again with `&last=<last tag>`; a page that repeats tags ends the
 *   listing (registries that ignore `n` and `last`, like distribution 2.8, return all at once).
 *   Pages, tags and time are bounded, each with its own clear error.
 * - Auth: anonymous first; on 401 the challenge decides: `Bearer realm,service,scope` → a token
 *   from the realm (with basic credentials when the docker config has some) → retry with it;
 *   `Basic` → retry with the credentials. Tokens are reused across pages until they expire.
 * - Scheme: HTTPS, except plain HTTP for `insecure` registries and loopback hosts. A `Link` to
 *   another origin is refused (credentials would follow it); a token realm over plain HTTP to a
 *   non-loopback host gets no credentials.
 * No message ever carries a credential or a token.
 */
import { SluiceError } from "../core/index.js";
import { basicHeader, type Challenge, type Credentials, credentialsFor, parseChallenges } from "./auth.js";
import { isLoopbackHost } from "./ref.js";
import type { ImageRef, ListStats, RegistryOptions } from "./types.js";

const DEFAULTS = {
  timeoutMs: 60_000,
  requestTimeoutMs: 30_000,
  pageSize: 1000,
  maxPages: 1000,
  maxTags: 100_000,
};
/** A tags page or a token response larger than this is refused. */
const MAX_BODY = 32 * 1024 * 1024;
const USER_AGENT = "sluice-image-scanner";

interface Token {
  value: string;
  expiresAt: number;
}

export interface ListResult {
  tags: string[];
  stats: ListStats;
}

/** The registry base URL (`https://ghcr.io`, `http://127.0.0.1:5000`). */
export function registryBaseUrl(ref: ImageRef, insecure = false): string {
  const plain = insecure || isLoopbackHost(ref.apiHost);
  return `${plain ? "http" : "https"}://${ref.apiHost}`;
}

/**
 * Parses RFC 8288 `Link` header values; returns the target of the first link whose `rel` names
 * `next` (relation types compare case-insensitively; only a link's first `rel` counts). Quoted
 * parameter values may hold `,`, `;`, `<` and `>`. One pass, no backtracking: linear in the
 * header's length whatever it holds.
 */
export function nextLink(header: string | null): string | undefined {
  if (!header) return undefined;
  const n = header.length;
  let i = 0;
  const ows = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const token = () => {
    const start = i;
    while (i < n && !/[\s;,="]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  const quotedString = () => {
    let out = "";
    i++; // the opening quote
    while (i < n && header[i] !== '"') {
      if (header[i] === "\\" && i + 1 < n) i++;
      out += header[i];
      i++;
    }
    i++; // the closing quote
    return out;
  };
  while (i < n) {
    const lt = header.indexOf("<", i);
    if (lt < 0) return undefined;
    const gt = header.indexOf(">", lt + 1);
    if (gt < 0) return undefined;
    const target = header.slice(lt + 1, gt);
    i = gt + 1;
    let rel: string | undefined;
    for (;;) {
      ows();
      if (header[i] !== ";") break;
      i++;
      ows();
      const name = token().toLowerCase();
      ows();
      let value = "";
      if (header[i] === "=") {
        i++;
        ows();
        value = header[i] === '"' ? quotedString() : token();
      }
      if (name === "rel" && rel === undefined) rel = value;
    }
    if (rel?.split(/\s+/).some((t) => t.toLowerCase() === "next")) return target;
    // Anything else up to the next link-value (outside quotes) is skipped.
    while (i < n && header[i] !== ",") {
      if (header[i] === '"') quotedString();
      else i++;
    }
  }
  return undefined;
}

class Lister {
  private readonly opts: Required<Omit<RegistryOptions, "dockerConfig" | "fetch" | "insecure">>;
  private readonly fetchFn: typeof fetch;
  private readonly creds: Credentials | undefined;
  private readonly base: string;
  private readonly deadline: number;
  private readonly what: string;
  private token: Token | undefined;
  private challenge: Challenge | undefined;
  readonly stats: ListStats = { pages: 0, requests: 0, auth: "none" };

  constructor(
    private readonly ref: ImageRef,
    private readonly options: RegistryOptions,
  ) {
    this.opts = {
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      pageSize: options.pageSize ?? DEFAULTS.pageSize,
      maxPages: options.maxPages ?? DEFAULTS.maxPages,
      maxTags: options.maxTags ?? DEFAULTS.maxTags,
    };
    this.fetchFn = options.fetch ?? fetch;
    this.creds = credentialsFor(options.dockerConfig, ref.domain);
    this.base = registryBaseUrl(ref, options.insecure);
    this.deadline = Date.now() + this.opts.timeoutMs;
    this.what = `repository ${ref.path} on registry ${ref.apiHost}`;
  }

  async list(): Promise<string[]> {
    const tags: string[] = [];
    const seen = new Set<string>();
    let url: URL | undefined = new URL(
      `/v2/${this.ref.path}/tags/list?n=${encodeURIComponent(String(this.opts.pageSize))}`,
      this.base,
    );
    while (url) {
      if (this.stats.pages >= this.opts.maxPages) {
        throw new SluiceError(
          "LimitExceeded",
          `listing the tags of ${this.what} took more than ${this.opts.maxPages} pages; stopped there`,
          { hint: "The registry returns very small pages or loops; check it, or raise the page limit." },
        );
      }
      const page = await this.page(url);
      this.stats.pages++;
      let fresh = 0;
      for (const t of page.tags) {
        if (seen.has(t)) continue;
        seen.add(t);
        tags.push(t);
        fresh++;
        if (tags.length > this.opts.maxTags) {
          throw new SluiceError(
            "LimitExceeded",
            `${this.what} has more than ${this.opts.maxTags} tags; Sluice stops listing there`,
            { hint: "Delete old tags from the repository (registries have retention policies for this)." },
          );
        }
      }
      if (page.next && fresh > 0) {
        url = this.sameOrigin(new URL(page.next, url));
      } else if (page.tags.length > 0 && page.tags.length === this.requestedN(url) && fresh > 0) {
        // A full page without Link: there may be more (the spec lets a registry stop at n).
        const probe = new URL(url);
        probe.searchParams.set("last", page.tags[page.tags.length - 1]!);
        url = probe;
      } else {
        url = undefined;
      }
    }
    return tags;
  }

  private requestedN(url: URL): number {
    const n = Number(url.searchParams.get("n"));
    return Number.isInteger(n) && n > 0 ? n : -1;
  }

  private sameOrigin(next: URL): URL {
    if (next.origin !== new URL(this.base).origin) {
      throw new SluiceError(
        "TargetUnavailable",
        `registry ${this.ref.apiHost} sent a pagination link to another host (${next.origin}) for ${this.ref.path}; refusing to follow it`,
        {
          hint: "A registry's Link header must stay on the registry; check the registry or a proxy in front of it.",
        },
      );
    }
    return next;
  }

  private remaining(): number {
    const left = this.deadline - Date.now();
    if (left <= 0) {
      throw new SluiceError(
        "TargetUnavailable",
        `listing the tags of ${this.what} did not finish within ${Math.round(this.opts.timeoutMs / 1000)} s`,
        { hint: "Raise spec.timeout of the ImageRepository, or check the registry's health." },
      );
    }
    return Math.min(left, this.opts.requestTimeoutMs);
  }

  /** One HTTP request with the time bound and the error mapping; never logs headers. */
  private async request(url: URL, headers: Record<string, string>, purpose: string): Promise<Response> {
    const timeout = this.remaining();
    this.stats.requests++;
    try {
      return await this.fetchFn(url, {
        headers: { "user-agent": USER_AGENT, ...headers },
        redirect: "manual",
        signal: AbortSignal.timeout(timeout),
      });
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      if (err.name === "TimeoutError" || err.name === "AbortError") {
        throw new SluiceError(
          "TargetUnavailable",
          `${purpose} at ${url.origin} did not answer within ${Math.round(timeout / 1000)} s`,
          { hint: "Check that the registry is up and reachable from here." },
        );
      }
      const cause = err.cause?.code ?? err.cause?.message ?? err.message;
      const tlsHint =
        /EPROTO|wrong version number|SSL|TLS|certificate/i.test(String(cause)) && url.protocol === "https:"
          ? " If the registry speaks plain HTTP, set spec.insecure: true."
          : "";
      throw new SluiceError("TargetUnavailable", `${purpose} at ${url.origin} is unreachable: ${cause}`, {
        hint: `Check the registry host and port in spec.image (${this.ref.domain}).${tlsHint}`,
      });
    }
  }

  private async authHeaders(force = false): Promise<Record<string, string>> {
    const ch = this.challenge;
    if (!ch) return {};
    if (ch.scheme === "basic") {
      if (!this.creds) return {};
      this.stats.auth = "basic";
      return { authorization: basicHeader(this.creds) };
    }
    if (ch.scheme === "bearer") {
      if (force || !this.token || this.token.expiresAt <= Date.now() + 5_000) {
        this.token = await this.fetchToken(ch);
      }
      this.stats.auth = "bearer";
      return { authorization: `Bearer ${this.token.value}` };
    }
    return {};
  }

  private async fetchToken(ch: Challenge): Promise<Token> {
    const realm = ch.params.realm;
    if (!realm) {
      throw new SluiceError(
        "Unauthorized",
        `registry ${this.ref.apiHost} asked for a Bearer token without a realm`,
        {
          hint: "The registry's token auth is misconfigured.",
        },
      );
    }
    let url: URL;
    try {
      url = new URL(realm, this.base);
    } catch {
      throw new SluiceError("Unauthorized", `registry ${this.ref.apiHost} sent an invalid token realm`, {});
    }
    if (ch.params.service) url.searchParams.set("service", ch.params.service);
    const scope = ch.params.scope ?? `repository:${this.ref.path}:pull`;
    for (const s of scope.split(" ").filter((x) => x !== "")) url.searchParams.append("scope", s);
    const headers: Record<string, string> = {};
    const credsAllowed =
      url.protocol === "https:" || isLoopbackHost(url.host) || this.options.insecure === true;
    if (this.creds && credsAllowed) headers.authorization = basicHeader(this.creds);
    const res = await this.request(url, headers, `the token service of registry ${this.ref.apiHost}`);
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw new SluiceError(
        "Unauthorized",
        `the token service ${url.origin}${url.pathname} refused ${this.creds ? "the credentials" : "anonymous access"} for ${this.what} (HTTP ${res.status})`,
        {
          hint: this.creds
            ? "Check the username and password in the Secret named by spec.secretRef."
            : "Set spec.secretRef to a kubernetes.io/dockerconfigjson Secret with credentials for this registry.",
        },
      );
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new SluiceError(
        "TargetUnavailable",
        `the token service ${url.origin}${url.pathname} answered HTTP ${res.status} for ${this.what}`,
        { hint: "Check the registry's token service." },
      );
    }
    const body = await readJson(res, `the token response of ${url.origin}${url.pathname}`);
    const b = body as { token?: unknown; access_token?: unknown; expires_in?: unknown };
    const value = typeof b.token === "string" && b.token !== "" ? b.token : b.access_token;
    if (typeof value !== "string" || value === "") {
      throw new SluiceError(
        "Unauthorized",
        `the token service ${url.origin}${url.pathname} returned no token`,
        {
          hint: "Check the registry's token service.",
        },
      );
    }
    const expiresIn = typeof b.expires_in === "number" && b.expires_in > 0 ? b.expires_in : 60;
    return { value, expiresAt: Date.now() + expiresIn * 1000 };
  }

  private async page(url: URL): Promise<{ tags: string[]; next: string | undefined }> {
    const purpose = `registry ${this.ref.apiHost}`;
    let res = await this.request(url, await this.authHeaders(), purpose);
    if (res.status === 401) {
      const header = res.headers.get("www-authenticate") ?? "";
      await res.body?.cancel();
      const hadAuth = this.challenge !== undefined;
      const challenges = parseChallenges(header);
      const ch =
        challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
      if (!ch) {
        throw new SluiceError(
          "Unauthorized",
          `${purpose} refused access to ${this.ref.path} (HTTP 401) without a usable challenge`,
          {
            hint: "The registry supports neither Bearer nor Basic auth as Sluice speaks them.",
          },
        );
      }
      if (ch.scheme === "basic" && !this.creds) this.unauthorized(false);
      if (hadAuth && ch.scheme === "basic") this.unauthorized(true);
      this.challenge = ch;
      res = await this.request(url, await this.authHeaders(hadAuth), purpose);
      if (res.status === 401) {
        await res.body?.cancel();
        this.unauthorized(this.creds !== undefined);
      }
    }
    if (res.status === 403) {
      await res.body?.cancel();
      throw new SluiceError("Forbidden", `${purpose} denied access to ${this.ref.path} (HTTP 403)`, {
        hint: "The credentials in spec.secretRef lack pull access to this repository.",
      });
    }
    if (res.status === 404) {
      const detail = await errorDetail(res);
      throw new SluiceError("NotFound", `${this.what} was not found (HTTP 404${detail})`, {
        hint: "Check the image name in spec.image; the repository may not have been pushed yet.",
      });
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new SluiceError(
        "TargetUnavailable",
        `${purpose} redirected the tag listing of ${this.ref.path} (HTTP ${res.status})`,
        {
          hint: "Point spec.image at the registry itself, not at a host that redirects.",
        },
      );
    }
    if (res.status !== 200) {
      const detail = await errorDetail(res);
      throw new SluiceError(
        "TargetUnavailable",
        `${purpose} answered HTTP ${res.status} listing the tags of ${this.ref.path}${detail}`,
        {
          hint: "Check the registry's health and logs.",
        },
      );
    }
    const body = await readJson(res, `the tag list of ${this.what}`);
    const tagsField = (body as { tags?: unknown } | null)?.tags;
    if (tagsField !== null && tagsField !== undefined && !Array.isArray(tagsField)) {
      throw new SluiceError(
        "TargetUnavailable",
        `${purpose} returned a tag list without a "tags" array for ${this.ref.path}`,
        {
          hint: "The registry does not speak the OCI distribution API here.",
        },
      );
    }
    const tags = ((tagsField as unknown[] | null | undefined) ?? []).filter(
      (t): t is string => typeof t === "string",
    );
    return { tags, next: nextLink(res.headers.get("link")) };
  }

  private unauthorized(withCreds: boolean): never {
    throw new SluiceError(
      "Unauthorized",
      `registry ${this.ref.apiHost} refused ${withCreds ? "the credentials" : "anonymous access"} for ${this.ref.path} (HTTP 401)`,
      {
        hint: withCreds
          ? "Check the username and password in the Secret named by spec.secretRef."
          : "Set spec.secretRef to a kubernetes.io/dockerconfigjson Secret with credentials for this registry.",
      },
    );
  }
}

async function readBody(res: Response, what: string): Promise<string> {
  const len = Number(res.headers.get("content-length") ?? "0");
  if (len > MAX_BODY) {
    await res.body?.cancel();
    throw new SluiceError("LimitExceeded", `${what} is ${len} bytes, more than the ${MAX_BODY} accepted`, {});
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY) {
      await reader.cancel();
      throw new SluiceError("LimitExceeded", `${what} is larger than the ${MAX_BODY} bytes accepted`, {});
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function readJson(res: Response, what: string): Promise<unknown> {
  const text = await readBody(res, what);
  try {
    return JSON.parse(text);
  } catch {
    throw new SluiceError("TargetUnavailable", `${what} is not JSON`, {
      hint: "The host may not be an OCI registry, or a proxy answered instead.",
    });
  }
}

/** `: NAME_UNKNOWN repository name not known to registry` from an OCI error body, short. */
async function errorDetail(res: Response): Promise<string> {
  try {
    const text = (await readBody(res, "an error response")).slice(0, 4096);
    const body = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const e = body.errors?.[0];
    if (!e) return "";
    const code = typeof e.code === "string" ? e.code : "";
    const msg = typeof e.message === "string" ? e.message.slice(0, 200) : "";
    const s = [code, msg].filter((x) => x !== "").join(" ");
    return s === "" ? "" : `: ${s}`;
  } catch {
    return "";
  }
}

/**
 * Lists every tag of a repository, following pagination.
 * @throws SluiceError TargetUnavailable (unreachable, timeout, bad answer), Unauthorized,
 *   Forbidden, NotFound (no such repository), LimitExceeded (too many tags or pages).
 */
export async function listTags(ref: ImageRef, options: RegistryOptions = {}): Promise<ListResult> {
  const l = new Lister(ref, options);
  const tags = await l.list();
  return { tags, stats: l.stats };
}
