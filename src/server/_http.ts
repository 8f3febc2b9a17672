/** Small HTTP plumbing shared by the routes: errors with a status, JSON answers, bounded bodies. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type ErrorCode, isSluiceError } from "../core/index.js";

/** The largest request body any route reads. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** A failure that already knows its HTTP status (request-level problems: 400, 405, 413, …). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  NotFound: 404,
  Unauthorized: 401,
  Forbidden: 403,
  ConfigInvalid: 400,
  Conflict: 409,
};

/** Status, code and a message safe to show for any thrown value (unknown errors are not echoed). */
export function describeError(e: unknown): {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
} {
  if (e instanceof HttpError)
    return { status: e.status, code: e.code, message: e.message, headers: e.headers };
  if (isSluiceError(e))
    return { status: STATUS_BY_CODE[e.code] ?? 500, code: e.code, message: e.message, headers: {} };
  return { status: 500, code: "Internal", message: "internal error (see the agent's log)", headers: {} };
}

/** Headers every answer of ours carries; JSON and text answers are never rendered as documents. */
export function securityHeaders(res: ServerResponse): void {
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  res.setHeader("Referrer-Policy", "no-referrer");
  res.setHeader("X-Frame-Options", "DENY");
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value)}\n`;
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(body);
}

export function sendText(res: ServerResponse, status: number, text: string, contentType?: string): void {
  res.statusCode = status;
  res.setHeader("Content-Type", contentType ?? "text/plain; charset=utf-8");
  res.setHeader("Content-Length", Buffer.byteLength(text));
  res.end(text);
}

export function sendError(res: ServerResponse, e: unknown): void {
  const d = describeError(e);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const [k, v] of Object.entries(d.headers)) res.setHeader(k, v);
  sendJson(res, d.status, { error: { code: d.code, message: d.message } });
}

/**
 * Reads a request body of at most `limit` bytes. A larger one (by Content-Length or by what
 * arrives) is a 413; the connection is then closed rather than drained, so an oversized upload
 * costs us nothing more.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const tooLarge = () =>
    new HttpError(413, "PayloadTooLarge", `request body is larger than ${limit} bytes`, {
      Connection: "close",
    });
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    res.shouldKeepAlive = false;
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        res.shouldKeepAlive = false;
        req.pause();
        finish(tooLarge());
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => finish(null);
    const onError = (e: Error) => finish(e);
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

/** Parses an optional JSON object body: empty → `{}`; anything but an object → 400. */
export function parseJsonObject(body: Buffer): Record<string, unknown> {
  const text = body.toString("utf8").trim();
  if (text === "") return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, "BadRequest", `request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new HttpError(400, "BadRequest", "request body must be a JSON object");
  return v as Record<string, unknown>;
}

export function methodNotAllowed(allowed: string[]): HttpError {
  return new HttpError(405, "MethodNotAllowed", `method not allowed; use ${allowed.join(" or ")}`, {
    Allow: allowed.join(", "),
  });
}

/** An optional non-negative whole number from the query string, or a 400 naming the parameter. */
export function intParam(
  q: URLSearchParams,
  name: string,
  opts: { min: number; max: number },
): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === "") return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < opts.min || n > opts.max)
    throw new HttpError(
      400,
      "BadRequest",
      `query parameter ${name}=${JSON.stringify(raw.slice(0, 40))}: expected a whole number from ${opts.min} to ${opts.max}`,
    );
  return n;
}
