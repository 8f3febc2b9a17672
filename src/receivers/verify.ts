/**
 * Flux `Receiver` webhook verification as pure functions. The HTTP server looks up the receiver by
 * its path (`receiverPath`), reads the raw body (bounded), calls `verifyWebhook`, drops replays with
 * a `ReplayGuard`, and on success triggers a fetch of the sources matching `push.repoUrls`.
 *
 * Signatures are compared in constant time: the expected HMAC and the presented one are both
 * decoded to bytes and compared with `timingSafeEqual` only when their lengths match (the length of
 * a hex digest is public). Tokens (GitLab) are compared through their SHA-256 so that neither their
 * content nor their length leaks. Nothing here throws on hostile input: every failure is a
 * `{ ok: false, reason }` whose reason never contains the payload or the secret.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

export type ReceiverKind = "github" | "gitlab" | "generic" | "generic-hmac";

export interface WebhookRequest {
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface PushInfo {
  /** Every URL the payload gives for the repository (clone, html, ssh, …), to match sources with. */
  repoUrls: string[];
  /** `refs/heads/main`, `refs/tags/v1.0.0`, … */
  ref?: string;
  /** Commit after the push (all zeros when a ref was deleted). */
  after?: string;
}

export type WebhookVerdict =
  | { ok: true; event?: string; deliveryId?: string; push?: PushInfo }
  | { ok: false; reason: string };

const ALGOS = { sha1: 20, sha256: 32, sha512: 64 } as const;
type Algo = keyof typeof ALGOS;
/** Bodies larger than this are verified but not parsed for push details. */
const MAX_PARSE_BYTES = 25 * 1024 * 1024;

/** Case-insensitive header lookup; the first value when repeated. */
export function header(headers: WebhookRequest["headers"], name: string): string | undefined {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (k.toLowerCase() !== want || v === undefined) continue;
    const first = Array.isArray(v) ? v[0] : v;
    return typeof first === "string" ? first : undefined;
  }
  return undefined;
}

/**
 * Parses `<algo>=<hex>` (algo sha1, sha256 or sha512; hex of exactly the digest's length).
 * Returns undefined for anything else.
 */
export function parseSignature(value: string | undefined): { algo: Algo; digest: Buffer } | undefined {
  if (typeof value !== "string" || value.length > 200) return undefined;
  const m = /^(sha1|sha256|sha512)=([0-9a-fA-F]+)$/.exec(value.trim());
  if (!m) return undefined;
  const algo = m[1] as Algo;
  const hex = m[2] as string;
  if (hex.length !== ALGOS[algo] * 2) return undefined;
  return { algo, digest: Buffer.from(hex, "hex") };
}

function hmacMatches(secret: string, body: Buffer, sig: { algo: Algo; digest: Buffer }): boolean {
  const expected = createHmac(sig.algo, secret).update(body).digest();
  return expected.length === sig.digest.length && timingSafeEqual(expected, sig.digest);
}

/** Constant-time string equality (through SHA-256, so lengths do not leak either). */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a, "utf8").digest();
  const hb = createHash("sha256").update(b, "utf8").digest();
  return timingSafeEqual(ha, hb);
}

function parseJsonBody(req: WebhookRequest): unknown {
  if (req.body.length === 0 || req.body.length > MAX_PARSE_BYTES) return undefined;
  try {
    const text = req.body.toString("utf8");
    const ctype = (header(req.headers, "content-type") ?? "").toLowerCase();
    if (ctype.startsWith("application/x-www-form-urlencoded")) {
      // GitHub's "form" content type: the JSON is in the `payload` field.
      const payload = new URLSearchParams(text).get("payload");
      return payload === null ? undefined : JSON.parse(payload);
    }
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 && v.length <= 2048 ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function uniq(xs: (string | undefined)[]): string[] {
  return [...new Set(xs.filter((x): x is string => x !== undefined))];
}

function githubPush(payload: unknown): PushInfo | undefined {
  const p = obj(payload);
  const repo = obj(p.repository);
  const repoUrls = uniq([
    str(repo.clone_url),
    str(repo.html_url),
    str(repo.ssh_url),
    str(repo.git_url),
    str(repo.url),
  ]);
  const ref = str(p.ref);
  const after = str(p.after);
  if (repoUrls.length === 0 && ref === undefined) return undefined;
  return { repoUrls, ...(ref ? { ref } : {}), ...(after ? { after } : {}) };
}

function gitlabPush(payload: unknown): PushInfo | undefined {
  const p = obj(payload);
  const project = obj(p.project);
  const repo = obj(p.repository);
  const repoUrls = uniq([
    str(project.git_http_url),
    str(project.http_url),
    str(project.web_url),
    str(project.git_ssh_url),
    str(project.ssh_url),
    str(repo.git_http_url),
    str(repo.homepage),
    str(repo.git_ssh_url),
  ]);
  const ref = str(p.ref);
  const after = str(p.after) ?? str(p.checkout_sha);
  if (repoUrls.length === 0 && ref === undefined) return undefined;
  return { repoUrls, ...(ref ? { ref } : {}), ...(after ? { after } : {}) };
}

/**
 * Verifies one webhook delivery for a Receiver of `kind` whose Secret token is `secretToken`.
 *
 * - github: `X-Hub-Signature-256: sha256=<hex>` (or legacy `X-Hub-Signature: sha1=<hex>`), HMAC of
 *   the raw body; event from `X-GitHub-Event`; push details from the payload.
 * - gitlab: `X-Gitlab-Token` must equal the token; event from `X-Gitlab-Event`.
 * - generic: no check beyond knowing the secret path.
 * - generic-hmac: `X-Signature: <sha1|sha256|sha512>=<hex>`, HMAC of the raw body.
 *
 * @example verifyWebhook("github", token, { headers: req.headers, body }) // → { ok: true, event: "push", push }
 */
export function verifyWebhook(kind: ReceiverKind, secretToken: string, req: WebhookRequest): WebhookVerdict {
  try {
    return verifyInner(kind, secretToken, req);
  } catch {
    return { ok: false, reason: "malformed request" };
  }
}

function verifyInner(kind: ReceiverKind, secretToken: string, req: WebhookRequest): WebhookVerdict {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const r: WebhookRequest = { headers: req.headers ?? {}, body };
  if (kind === "generic") return { ok: true };
  if (typeof secretToken !== "string" || secretToken === "") {
    return { ok: false, reason: "receiver has no secret token configured" };
  }
  switch (kind) {
    case "github": {
      const raw256 = header(r.headers, "x-hub-signature-256");
      const raw1 = header(r.headers, "x-hub-signature");
      if (raw256 === undefined && raw1 === undefined) {
        return { ok: false, reason: "missing X-Hub-Signature-256 header" };
      }
      const sig = parseSignature(raw256 ?? raw1);
      if (!sig) return { ok: false, reason: "malformed signature header" };
      if (!hmacMatches(secretToken, body, sig)) return { ok: false, reason: "signature mismatch" };
      const event = str(header(r.headers, "x-github-event"));
      const deliveryId = str(header(r.headers, "x-github-delivery"));
      const push = event === "push" ? githubPush(parseJsonBody(r)) : undefined;
      return {
        ok: true,
        ...(event ? { event } : {}),
        ...(deliveryId ? { deliveryId } : {}),
        ...(push ? { push } : {}),
      };
    }
    case "gitlab": {
      const token = header(r.headers, "x-gitlab-token");
      if (token === undefined) return { ok: false, reason: "missing X-Gitlab-Token header" };
      if (!safeEqual(token, secretToken)) return { ok: false, reason: "token mismatch" };
      const event = str(header(r.headers, "x-gitlab-event"));
      const deliveryId =
        str(header(r.headers, "x-gitlab-event-uuid")) ?? str(header(r.headers, "idempotency-key"));
      const push =
        event === "Push Hook" || event === "Tag Push Hook" ? gitlabPush(parseJsonBody(r)) : undefined;
      return {
        ok: true,
        ...(event ? { event } : {}),
        ...(deliveryId ? { deliveryId } : {}),
        ...(push ? { push } : {}),
      };
    }
    case "generic-hmac": {
      const raw = header(r.headers, "x-signature");
      if (raw === undefined) return { ok: false, reason: "missing X-Signature header" };
      const sig = parseSignature(raw);
      if (!sig) return { ok: false, reason: "malformed signature header" };
      if (!hmacMatches(secretToken, body, sig)) return { ok: false, reason: "signature mismatch" };
      return { ok: true };
    }
    default:
      return { ok: false, reason: "unsupported receiver type" };
  }
}

/** Signs a body as a sender would (`sha256=<hex>`), for tests, the demo and the bench. */
export function signBody(secretToken: string, body: Buffer | string, algo: Algo = "sha256"): string {
  return `${algo}=${createHmac(algo, secretToken).update(body).digest("hex")}`;
}

/** Flux's webhook path: `/hook/` + hex SHA-256 of token + name + namespace. */
export function receiverPath(namespace: string, name: string, token: string): string {
  return `/hook/${createHash("sha256").update(`${token}${name}${namespace}`, "utf8").digest("hex")}`;
}

/**
 * Remembers delivery ids (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) for `windowMs`, at most `max`
 * of them (oldest forgotten first), so a captured, validly signed request cannot be replayed within
 * the window. Signatures carry no timestamp, so replays older than the window are not detected;
 * they can only re-trigger an idempotent fetch.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  private readonly windowMs: number;
  private readonly max: number;

  constructor(opts: { windowMs?: number; max?: number } = {}) {
    this.windowMs = opts.windowMs ?? 24 * 60 * 60 * 1000;
    this.max = opts.max ?? 10_000;
  }

  /** Records `id`; returns true when it was already seen within the window (a replay). */
  isReplay(id: string, now: number = Date.now()): boolean {
    this.expire(now);
    // A digest: bounded memory for long ids, and distinct ids never collide (a length and a
    // 256-character prefix made two long ids sharing a prefix look like one replayed).
    const key = createHash("sha256").update(id, "utf8").digest("base64");
    const at = this.seen.get(key);
    if (at !== undefined && now - at < this.windowMs) return true;
    this.seen.set(key, now);
    while (this.seen.size > this.max) {
      const oldest = this.seen.keys().next().value;
      if (oldest === undefined) break;
      this.seen.delete(oldest);
    }
    return false;
  }

  get size(): number {
    return this.seen.size;
  }

  private expire(now: number): void {
    // Insertion order is time order: stop at the first entry still inside the window.
    for (const [k, at] of this.seen) {
      if (now - at < this.windowMs) break;
      this.seen.delete(k);
    }
  }
}
