import { readFileSync } from "node:fs";
import https from "node:https";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { groupOf, SluiceError } from "../../core/index.js";

/** A minimal Kubernetes API client over node's https: kubeconfig, discovery, JSON requests. */

export interface KubeResponse {
  status: number;
  headers?: Record<string, string | string[] | undefined>;
  // biome-ignore lint/suspicious/noExplicitAny: API answers are untyped JSON
  body: any;
}

export interface ResourceInfo {
  plural: string;
  namespaced: boolean;
}

interface Connection {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
  insecure: boolean;
  namespace: string;
}

/** A kubeconfig's context as read, before any token file is read. */
export interface KubeconfigConnection extends Connection {
  /** The user's `tokenFile`, resolved against the kubeconfig's directory (read by the caller). */
  tokenFile?: string;
}

type Dict = Record<string, unknown>;

function named(list: unknown, name: string | undefined, what: string, file: string): Dict {
  const arr = Array.isArray(list) ? (list as Dict[]) : [];
  const hit = arr.find((e) => e.name === name);
  if (!hit || typeof hit[what] !== "object" || hit[what] === null) {
    throw new SluiceError("ConfigInvalid", `kubeconfig ${file}: ${what} "${name ?? ""}" not found`, {
      hint: "check the kubeconfig's contexts, clusters and users (or pass --context)",
    });
  }
  return hit[what] as Dict;
}

function bytes(data: unknown, path: unknown, base: string): Buffer | undefined {
  if (typeof data === "string" && data) return Buffer.from(data, "base64");
  if (typeof path === "string" && path) return readFileSync(resolve(base, path));
  return undefined;
}

export interface KubeClientOptions {
  /** `Impersonate-User` on every request (a service account: `system:serviceaccount:<ns>:<name>`). */
  impersonate?: string;
  /** The kubeconfig's YAML itself (e.g. from a Secret) instead of reading the file; paths in it resolve against the file's directory. */
  kubeconfigData?: string;
}

/** A connection with its token read (the target reads a token file once, at connect). */
export function loadKubeconfig(file: string, context?: string, data?: string): Connection {
  const { tokenFile, ...conn } = parseKubeconfig(file, context, data);
  if (tokenFile) conn.token = readFileSync(tokenFile, "utf8").trim();
  return conn;
}

/** Parses a kubeconfig (the file, or `data` named as `file`) for one context (default: the current one). */
export function parseKubeconfig(file: string, context?: string, data?: string): KubeconfigConnection {
  let doc: Dict;
  try {
    doc = parseYaml(data ?? readFileSync(file, "utf8")) as Dict;
    if (typeof doc !== "object" || doc === null) throw new Error("not a YAML mapping");
  } catch (e) {
    throw new SluiceError("ConfigInvalid", `cannot read kubeconfig ${file}: ${(e as Error).message}`, {
      cause: e,
      hint: "pass --kubeconfig or set KUBECONFIG",
    });
  }
  const ctxName = context ?? (doc["current-context"] as string | undefined);
  const ctx = named(doc.contexts, ctxName, "context", file);
  const cluster = named(doc.clusters, ctx.cluster as string, "cluster", file);
  const user = named(doc.users, ctx.user as string, "user", file);
  const base = dirname(file);
  const conn: KubeconfigConnection = {
    server: String(cluster.server ?? "").replace(/\/+$/, ""),
    insecure: cluster["insecure-skip-tls-verify"] === true,
    namespace: typeof ctx.namespace === "string" && ctx.namespace ? ctx.namespace : "default",
  };
  const ca = bytes(cluster["certificate-authority-data"], cluster["certificate-authority"], base);
  const cert = bytes(user["client-certificate-data"], user["client-certificate"], base);
  const key = bytes(user["client-key-data"], user["client-key"], base);
  if (ca) conn.ca = ca;
  if (cert) conn.cert = cert;
  if (key) conn.key = key;
  if (typeof user.token === "string") conn.token = user.token;
  else if (typeof user.tokenFile === "string") conn.tokenFile = resolve(base, user.tokenFile);
  if (!conn.server.startsWith("https://") && !conn.server.startsWith("http://")) {
    throw new SluiceError(
      "ConfigInvalid",
      `kubeconfig ${file}: cluster server "${conn.server}" is not a URL`,
    );
  }
  return conn;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class KubeClient {
  readonly defaultNamespace: string;
  private readonly conn: Connection;
  private readonly agent: https.Agent;
  private readonly discovery = new Map<string, Map<string, ResourceInfo>>();
  private readonly impersonate: string | undefined;

  constructor(kubeconfig: string, context?: string, opts: KubeClientOptions = {}) {
    this.conn = loadKubeconfig(kubeconfig, context, opts.kubeconfigData);
    this.impersonate = opts.impersonate;
    this.defaultNamespace = this.conn.namespace;
    const agentOpts: https.AgentOptions = { keepAlive: true, maxSockets: 16 };
    if (this.conn.ca) agentOpts.ca = this.conn.ca;
    if (this.conn.cert) agentOpts.cert = this.conn.cert;
    if (this.conn.key) agentOpts.key = this.conn.key;
    if (this.conn.insecure) agentOpts.rejectUnauthorized = false;
    this.agent = new https.Agent(agentOpts);
  }

  get server(): string {
    return this.conn.server;
  }

  close(): void {
    this.agent.destroy();
  }

  /** One request; network failures are retried a few times (every request we make is idempotent). */
  async request(
    method: string,
    path: string,
    opts: { body?: unknown; contentType?: string; timeoutMs?: number } = {},
  ): Promise<KubeResponse> {
    let lastErr: unknown;
    let busy = 0;
    for (let attempt = 0; attempt < 4; ) {
      let res: KubeResponse;
      try {
        res = await this.once(method, path, opts);
      } catch (e) {
        lastErr = e;
        await sleep(250 * 2 ** attempt);
        attempt++;
        continue;
      }
      // Busy or not ready yet (429 "storage is (re)initializing" right after a CRD is
      // established, 503 while starting): the API asks to come back; for up to about 10 s.
      if ((res.status === 429 || res.status === 503) && busy < 20) {
        const after = Number(res.headers?.["retry-after"]);
        await sleep(
          Math.min(Number.isFinite(after) && after > 0 ? after * 1000 : 250, 1000) / (busy < 4 ? 2 : 1),
        );
        busy++;
        continue;
      }
      return res;
    }
    throw new SluiceError(
      "TargetUnavailable",
      `Kubernetes API ${this.conn.server} unreachable (${method} ${path.split("?")[0]}): ${(lastErr as Error).message}`,
      { cause: lastErr, hint: "check the kubeconfig's server and that the cluster is running" },
    );
  }

  private once(
    method: string,
    path: string,
    opts: { body?: unknown; contentType?: string; timeoutMs?: number },
  ): Promise<KubeResponse> {
    return new Promise((resolveP, reject) => {
      const url = new URL(this.conn.server + path);
      const headers: Record<string, string> = { Accept: "application/json" };
      if (this.conn.token) headers.Authorization = `Bearer ${this.conn.token}`;
      if (this.impersonate) headers["Impersonate-User"] = this.impersonate;
      let payload: Buffer | undefined;
      if (opts.body !== undefined) {
        payload = Buffer.from(JSON.stringify(opts.body));
        headers["Content-Type"] = opts.contentType ?? "application/json";
        headers["Content-Length"] = String(payload.length);
      }
      const req = https.request(url, { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            /* keep text */
          }
          resolveP({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      });
      req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error("request timed out")));
      req.on("error", reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  private async loadGroupVersion(apiVersion: string): Promise<Map<string, ResourceInfo> | undefined> {
    const path = groupOf(apiVersion) === "" ? `/api/${apiVersion}` : `/apis/${apiVersion}`;
    const res = await this.request("GET", path);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw apiError(res, `discovery of ${apiVersion}`);
    const map = new Map<string, ResourceInfo>();
    for (const r of (res.body?.resources ?? []) as Array<{
      name: string;
      kind: string;
      namespaced: boolean;
    }>) {
      if (r.name.includes("/")) continue;
      map.set(r.kind, { plural: r.name, namespaced: r.namespaced });
    }
    this.discovery.set(apiVersion, map);
    return map;
  }

  /** Kind → resource, from discovery (cached; refreshed on a miss, e.g. a CRD applied just now). */
  async resource(apiVersion: string, kind: string, waitMs = 0): Promise<ResourceInfo | undefined> {
    const cached = this.discovery.get(apiVersion)?.get(kind);
    if (cached) return cached;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const info = (await this.loadGroupVersion(apiVersion))?.get(kind);
      if (info || Date.now() >= deadline) return info;
      await sleep(200);
    }
  }

  /** The URL path of a resource collection or object. */
  path(apiVersion: string, info: ResourceInfo, namespace: string | undefined, name?: string): string {
    const base = groupOf(apiVersion) === "" ? `/api/${apiVersion}` : `/apis/${apiVersion}`;
    const ns = info.namespaced ? `/namespaces/${encodeURIComponent(namespace ?? this.defaultNamespace)}` : "";
    return `${base}${ns}/${info.plural}${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;
  }
}

/** The API's own message for a failed request (a Status object), or the HTTP status. */
export function statusMessage(res: KubeResponse): string {
  if (res.body && typeof res.body === "object" && typeof res.body.message === "string")
    return res.body.message;
  return `HTTP ${res.status}${typeof res.body === "string" && res.body ? `: ${res.body.slice(0, 300)}` : ""}`;
}

export function apiError(res: KubeResponse, what: string): SluiceError {
  const code =
    res.status === 401
      ? "Unauthorized"
      : res.status === 403
        ? "Forbidden"
        : res.status === 409
          ? "Conflict"
          : res.status === 404
            ? "NotFound"
            : res.status >= 500
              ? "TargetUnavailable"
              : "ReconciliationFailed";
  return new SluiceError(code, `${what} failed: ${statusMessage(res)}`, {
    detail: { status: res.status, reason: res.body?.reason },
  });
}
