/**
 * replace-api: the seed's demo API, dependency-free (node:http only).
 *
 * `POST /api/replace` with `{"test": "<text>"}` answers `{"result": "<text>"}` where every bank name of
 * the replacement table is normalised to its full form. The table maps a short name to its full form
 * (`{"ABN": "ABN Amro"}`); both the short and the full form are recognised — case-insensitively, as whole
 * words, with any run of whitespace between the words of the full form — and replaced by the full form,
 * so text that already says "abn  AMRO" becomes "ABN Amro", never "ABN Amro Amro". All names are matched
 * by one regular expression in one pass, so a replacement is never matched again.
 *
 * The table is read once at start from the JSON file named by `REPLACEMENTS_FILE` (a ConfigMap in the
 * manifests: changing it in Git changes the behaviour without a new image); without it the built-in
 * table applies. `PORT` selects the port (default 8000). SIGTERM/SIGINT stop accepting connections,
 * let in-flight requests finish and exit.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";

/** Short name → full form. */
export type ReplacementTable = Readonly<Record<string, string>>;

export const DEFAULT_REPLACEMENTS: ReplacementTable = Object.freeze({
  ABN: "ABN Amro",
  ING: "ING Bank",
  Volksbank: "de Volksbank",
  Triodos: "Triodos Bank",
  Rabo: "Rabobank",
});

/** Largest accepted request body, in bytes. */
export const MAX_BODY_BYTES = 1024 * 1024;

const MAX_TABLE_ENTRIES = 1000;
const MAX_NAME_LENGTH = 200;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A name as a pattern: regex-escaped, any whitespace run between its words matches any whitespace run. */
function namePattern(name: string): string {
  return name.trim().split(/\s+/u).map(escapeRegExp).join("\\s+");
}

/**
 * Builds the replacer for a table.
 * @example createReplacer(DEFAULT_REPLACEMENTS)("abn amro and Rabo") // "ABN Amro and Rabobank"
 */
export function createReplacer(table: ReplacementTable): (text: string) => string {
  const byName = new Map<string, string>();
  for (const [short, full] of Object.entries(table)) {
    for (const name of [full, short]) {
      const key = name.trim().split(/\s+/u).join(" ").toLowerCase();
      if (!byName.has(key)) byName.set(key, full);
    }
  }
  if (byName.size === 0) return (text) => text;
  // Longest first, so that "ABN Amro" wins over "ABN" and "Rabobank" over "Rabo".
  const names = [...byName.keys()].sort((a, b) => b.length - a.length || a.localeCompare(b));
  const pattern = new RegExp(
    `(?<![\\p{L}\\p{N}_])(?:${names.map(namePattern).join("|")})(?![\\p{L}\\p{N}_])`,
    "giu",
  );
  return (text) =>
    text.replace(pattern, (match) => byName.get(match.split(/\s+/u).join(" ").toLowerCase()) ?? match);
}

/** Validates a parsed replacement table; returns a human reason when it is not one. */
export function validateTable(value: unknown): { table: ReplacementTable } | { error: string } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { error: 'expected a JSON object mapping short names to full names, e.g. {"ABN": "ABN Amro"}' };
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_TABLE_ENTRIES) return { error: `more than ${MAX_TABLE_ENTRIES} entries` };
  const table: Record<string, string> = {};
  for (const [short, full] of entries) {
    if (typeof full !== "string") return { error: `the value of ${JSON.stringify(short)} is not a string` };
    for (const name of [short, full]) {
      if (name.trim() === "" || name.length > MAX_NAME_LENGTH) {
        return {
          error: `names must be 1 to ${MAX_NAME_LENGTH} non-blank characters (entry ${JSON.stringify(short)})`,
        };
      }
    }
    table[short] = full;
  }
  return { table };
}

/** Reads and validates the table file; throws an Error naming the file and the reason. */
export function loadReplacements(file: string): ReplacementTable {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read REPLACEMENTS_FILE ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`REPLACEMENTS_FILE ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const result = validateTable(parsed);
  if ("error" in result) throw new Error(`REPLACEMENTS_FILE ${file}: ${result.error}`);
  return result.table;
}

export interface ServerOptions {
  /** Replacement table; defaults to DEFAULT_REPLACEMENTS. */
  replacements?: ReplacementTable;
  /** One line per request; defaults to stdout. Never receives bodies. */
  log?: (line: string) => void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  value: unknown,
  headers: http.OutgoingHttpHeaders = {},
): void {
  const body = `${JSON.stringify(value, null, 2)}\n`;
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
      req.resume();
      reject(new HttpError(400, `request body is larger than ${MAX_BODY_BYTES} bytes (1 MiB)`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        chunks.length = 0;
        reject(new HttpError(400, `request body is larger than ${MAX_BODY_BYTES} bytes (1 MiB)`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on("error", (err) => {
      if (!failed) reject(err);
    });
  });
}

async function replaceHandler(
  req: http.IncomingMessage,
  replace: (text: string) => string,
): Promise<unknown> {
  const raw = await readBody(req);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON; send {"test": "<text>"}');
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new HttpError(400, 'request body must be a JSON object: {"test": "<text>"}');
  }
  if (!Object.hasOwn(parsed, "test")) throw new HttpError(400, 'missing field "test"');
  const text = (parsed as { test: unknown }).test;
  if (typeof text !== "string") throw new HttpError(400, 'field "test" must be a string');
  return { result: replace(text) };
}

/**
 * Creates the (not yet listening) HTTP server.
 * @example const server = createServer(); server.listen(0, "127.0.0.1");
 */
export function createServer(opts: ServerOptions = {}): http.Server {
  const replace = createReplacer(opts.replacements ?? DEFAULT_REPLACEMENTS);
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));

  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    // While draining, every answer closes its connection: the client reconnects, through the
    // service, to a pod that is not stopping — instead of losing a request on a closed socket.
    if (draining.has(server)) res.setHeader("connection", "close");
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    res.on("finish", () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log(`${new Date().toISOString()} ${method} ${path} ${res.statusCode} ${ms.toFixed(1)}ms`);
    });

    const fail = (err: unknown): void => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : "internal error";
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // An oversized body is not read to its end: close the connection rather than drain it.
      sendJson(res, status, { error: message }, req.complete ? {} : { connection: "close" });
    };

    if (path === "/healthz") {
      if (method !== "GET" && method !== "HEAD") {
        fail(new HttpError(405, "use GET /healthz"));
        return;
      }
      sendJson(res, 200, { status: "ok" });
      return;
    }
    if (path === "/api/replace") {
      if (method !== "POST") {
        res.setHeader("allow", "POST");
        fail(new HttpError(405, 'use POST /api/replace with {"test": "<text>"}'));
        return;
      }
      replaceHandler(req, replace).then((value) => sendJson(res, 200, value), fail);
      return;
    }
    fail(new HttpError(404, `no route ${method} ${path}; try POST /api/replace or GET /healthz`));
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

const draining = new WeakSet<http.Server>();

/**
 * Stops gracefully: first `drainMs` of answering with `Connection: close` (busy keep-alive clients
 * move to other pods on their next request; closing their idle sockets at once would race with
 * that request), then stops accepting and lets in-flight requests finish (bounded by `graceMs`).
 */
export async function shutdown(server: http.Server, graceMs = 10_000, drainMs = 1_000): Promise<void> {
  draining.add(server);
  if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs).unref());
  return new Promise((resolve) => {
    // Keep-alive connections become idle once their in-flight response is sent; close them as they do.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const timer = setTimeout(() => {
      clearInterval(sweep);
      server.closeAllConnections();
      resolve();
    }, graceMs);
    timer.unref();
    sweep.unref();
    server.close(() => {
      clearTimeout(timer);
      clearInterval(sweep);
      resolve();
    });
  });
}

function parsePort(value: string | undefined): number {
  if (value === undefined || value === "") return 8000;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be an integer from 0 to 65535, got ${JSON.stringify(value)}`);
  }
  return port;
}

function main(): void {
  let port: number;
  let replacements: ReplacementTable = DEFAULT_REPLACEMENTS;
  try {
    port = parsePort(process.env.PORT);
    const file = process.env.REPLACEMENTS_FILE;
    if (file) replacements = loadReplacements(file);
  } catch (err) {
    process.stderr.write(`replace-api: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const server = createServer({ replacements });
  server.on("error", (err) => {
    process.stderr.write(`replace-api: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(port, () => {
    const { port: actual } = server.address() as AddressInfo;
    const source = process.env.REPLACEMENTS_FILE || "built-in table";
    process.stdout.write(
      `replace-api listening on :${actual} (${Object.keys(replacements).length} replacements from ${source})\n`,
    );
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`replace-api: ${signal} received, finishing in-flight requests\n`);
    shutdown(server).then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) main();
