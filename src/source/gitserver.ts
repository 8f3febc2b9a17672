/**
 * A real Git HTTP server on 127.0.0.1 for the demo and the tests: node:http in front of the real
 * `git http-backend` run as a CGI program, the way Apache or nginx would run it. Clones, fetches
 * (protocol v2 included) and pushes are exactly what a Git host does. Push notifications compare
 * the repository's refs before and after a successful receive-pack, so they report exactly what
 * changed (created, updated, deleted refs) whatever the client sent.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { SluiceError } from "../core/index.js";
import { runGit } from "./_git.js";

export interface RefUpdate {
  ref: string;
  before: string;
  after: string;
}

export interface GitServerOptions {
  /** Directory holding the bare repositories (`<root>/<name>.git`). */
  root: string;
  host?: "127.0.0.1";
  /** 0 (default) picks a free port. */
  port?: number;
  /** Called after every successful push with the refs it changed. */
  onPush?: (repo: string, refs: RefUpdate[]) => void;
  /** Called when a request completes (for tests and demo logs). */
  onRequest?: (r: {
    method: string;
    path: string;
    status: number;
    contentEncoding?: string;
    chunked: boolean;
  }) => void;
  /** Require HTTP basic auth for every request. */
  auth?: { username: string; password: string };
}

export interface GitServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `http://127.0.0.1:PORT/<name>.git` */
  repoUrl(name: string): string;
  /** Creates a bare repository with one initial commit of `files` (a README if none) on `branch`. */
  createRepo(name: string, files?: Record<string, string>, branch?: string): Promise<void>;
  /** Path of a repository's bare directory on disk. */
  repoPath(name: string): string;
  stop(): Promise<void>;
  /** While down, every request is answered 503 (an outage). */
  setDown(down: boolean): void;
}

const ZERO = "0000000000000000000000000000000000000000";
const REPO_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;
const GIT_TIMEOUT = 30_000;

export const testIdentity: Record<string, string> = {
  GIT_AUTHOR_NAME: "Sluice Test",
  GIT_AUTHOR_EMAIL: "test@sluice.invalid",
  GIT_COMMITTER_NAME: "Sluice Test",
  GIT_COMMITTER_EMAIL: "test@sluice.invalid",
};

function checkName(name: string): string {
  const n = name.replace(/\.git$/, "");
  if (!REPO_NAME.test(n) || n.split("/").some((p) => p === ".." || p === ".")) {
    throw new SluiceError("ConfigInvalid", `invalid repository name ${JSON.stringify(name)}`, {
      hint: "Use letters, digits, '.', '_', '-' and '/' separators.",
    });
  }
  return n;
}

async function readRefs(gitDir: string): Promise<Map<string, string>> {
  const refs = new Map<string, string>();
  try {
    const { stdout } = await runGit(
      ["--git-dir", gitDir, "for-each-ref", "--format=%(objectname) %(refname)"],
      {
        timeoutMs: GIT_TIMEOUT,
      },
    );
    for (const line of stdout.toString("utf8").split("\n")) {
      const sp = line.indexOf(" ");
      if (sp > 0) refs.set(line.slice(sp + 1), line.slice(0, sp));
    }
  } catch {
    // A missing repository has no refs; http-backend reports the 404 itself.
  }
  return refs;
}

function diffRefs(before: Map<string, string>, after: Map<string, string>): RefUpdate[] {
  const out: RefUpdate[] = [];
  for (const [ref, sha] of after) {
    const old = before.get(ref) ?? ZERO;
    if (old !== sha) out.push({ ref, before: old, after: sha });
  }
  for (const [ref, sha] of before) if (!after.has(ref)) out.push({ ref, before: sha, after: ZERO });
  return out.sort((a, b) => a.ref.localeCompare(b.ref));
}

/** Splits a CGI response: headers (with `Status:`) up to the first blank line, then the body. */
function parseCgiHead(
  buf: Buffer,
): { status: number; headers: [string, string][]; bodyStart: number } | undefined {
  let end = buf.indexOf("\r\n\r\n");
  let sepLen = 4;
  const lf = buf.indexOf("\n\n");
  if (end === -1 || (lf !== -1 && lf < end)) {
    end = lf;
    sepLen = 2;
  }
  if (end === -1) return undefined;
  const head = buf.subarray(0, end).toString("latin1");
  let status = 200;
  const headers: [string, string][] = [];
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key.toLowerCase() === "status") status = Number.parseInt(value, 10) || 500;
    else headers.push([key, value]);
  }
  return { status, headers, bodyStart: end + sepLen };
}

export async function startGitServer(opts: GitServerOptions): Promise<GitServer> {
  const root = opts.root;
  await mkdir(root, { recursive: true });
  let down = false;
  const sockets = new Set<Socket>();
  const children = new Set<number>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (down) {
      res.writeHead(503, { "content-type": "text/plain" }).end("service unavailable (simulated outage)\n");
      req.resume();
      return;
    }
    let remoteUser = "";
    if (opts.auth) {
      const h = req.headers.authorization ?? "";
      const m = /^Basic\s+(.+)$/i.exec(h);
      const decoded = m ? Buffer.from(m[1] ?? "", "base64").toString("utf8") : "";
      if (decoded !== `${opts.auth.username}:${opts.auth.password}`) {
        res
          .writeHead(401, { "www-authenticate": 'Basic realm="sluice-git"', "content-type": "text/plain" })
          .end("authentication required\n");
        req.resume();
        return;
      }
      remoteUser = opts.auth.username;
    }
    const u = new URL(req.url ?? "/", "http://127.0.0.1");
    const pathInfo = decodeURIComponent(u.pathname);
    if (pathInfo.split("/").some((p) => p === "..")) {
      res.writeHead(403).end();
      req.resume();
      return;
    }
    const repoMatch = /^\/(.+?\.git)(?:\/|$)/.exec(pathInfo);
    const repoDir = repoMatch ? join(root, repoMatch[1] ?? "") : undefined;
    const isPush = req.method === "POST" && pathInfo.endsWith("/git-receive-pack");
    const before = isPush && repoDir ? await readRefs(repoDir) : undefined;

    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: "1",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_COUNT: "2",
      GIT_CONFIG_KEY_0: "http.receivepack",
      GIT_CONFIG_VALUE_0: "true",
      GIT_CONFIG_KEY_1: "uploadpack.allowReachableSHA1InWant",
      GIT_CONFIG_VALUE_1: "true",
      GATEWAY_INTERFACE: "CGI/1.1",
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      REQUEST_METHOD: req.method ?? "GET",
      QUERY_STRING: u.search.replace(/^\?/, ""),
      PATH_INFO: pathInfo,
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      REMOTE_USER: remoteUser || "anonymous",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
    };
    if (req.headers["content-length"] !== undefined) env.CONTENT_LENGTH = req.headers["content-length"];
    const enc = req.headers["content-encoding"];
    if (enc) env.HTTP_CONTENT_ENCODING = enc;
    const proto = req.headers["git-protocol"];
    if (typeof proto === "string") env.GIT_PROTOCOL = proto;

    const child = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] });
    if (child.pid !== undefined) children.add(child.pid);
    req.pipe(child.stdin);
    child.stdin.on("error", () => {});
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString("utf8");
    });
    let head: Buffer = Buffer.alloc(0);
    let headerDone = false;
    child.stdout.on("data", (d: Buffer) => {
      if (headerDone) {
        if (!res.write(d)) {
          child.stdout.pause();
          res.once("drain", () => child.stdout.resume());
        }
        return;
      }
      head = Buffer.concat([head, d]);
      const parsed = parseCgiHead(head);
      if (!parsed) return;
      headerDone = true;
      res.statusCode = parsed.status;
      for (const [k, v] of parsed.headers) res.appendHeader(k, v);
      res.write(head.subarray(parsed.bodyStart));
    });
    child.on("error", () => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
    child.on("close", (code) => {
      if (child.pid !== undefined) children.delete(child.pid);
      try {
        opts.onRequest?.({
          method: req.method ?? "GET",
          path: pathInfo,
          status: headerDone ? res.statusCode : 500,
          ...(enc ? { contentEncoding: enc } : {}),
          chunked: req.headers["transfer-encoding"] === "chunked",
        });
      } catch {
        // observers must not break the server
      }
      if (!headerDone) {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(`git http-backend failed: ${stderr.split("\n")[0] ?? ""}\n`);
        return;
      }
      res.end();
      if (isPush && code === 0 && repoDir && before && opts.onPush) {
        const repo = (repoMatch?.[1] ?? "").replace(/\.git$/, "");
        void readRefs(repoDir).then((after) => {
          const changed = diffRefs(before, after);
          if (changed.length === 0) return;
          try {
            opts.onPush?.(repo, changed);
          } catch {
            // A failing listener must not break the server.
          }
        });
      }
    });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolveListen());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const repoPath = (name: string) => join(root, `${checkName(name)}.git`);

  return {
    url,
    repoUrl: (name) => `${url}/${checkName(name)}.git`,
    repoPath,
    setDown: (d) => {
      down = d;
    },
    async createRepo(name, files, branch = "main") {
      const bare = repoPath(name);
      await mkdir(dirname(bare), { recursive: true });
      await runGit(["init", "--quiet", "--bare", `--initial-branch=${branch}`, bare], {
        timeoutMs: GIT_TIMEOUT,
      });
      const work = await mkdtemp(join(tmpdir(), "sluice-seed-"));
      try {
        const content = files && Object.keys(files).length > 0 ? files : { "README.md": `# ${name}\n` };
        for (const [rel, text] of Object.entries(content)) {
          const p = join(work, rel);
          await mkdir(dirname(p), { recursive: true });
          await writeFile(p, text);
        }
        const g = (args: string[]) => runGit(args, { cwd: work, timeoutMs: GIT_TIMEOUT, env: testIdentity });
        await g(["init", "--quiet", `--initial-branch=${branch}`]);
        await g(["add", "--all"]);
        await g(["commit", "--quiet", "--message", "initial commit"]);
        await g(["-c", "protocol.file.allow=always", "push", "--quiet", bare, `HEAD:refs/heads/${branch}`]);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
    async stop() {
      for (const pid of children) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
      await new Promise<void>((resolveClose) => {
        server.close(() => resolveClose());
        for (const s of sockets) s.destroy();
      });
    },
  };
}
