/**
 * The few Kubernetes API calls the cluster module makes itself (Leases, SelfSubjectAccessReviews,
 * reading what bootstrap created), over node's https: a kubeconfig, or the in-cluster service
 * account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under
 * /var/run/secrets/kubernetes.io/serviceaccount). The token file is re-read when it changes, as
 * the kubelet rotates bound tokens. Everything else goes through the Kubernetes target.
 */
import { readFileSync, statSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { SluiceError } from "../core/index.js";
import { parseKubeconfig } from "../targets/kubernetes/index.js";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Where and as whom to talk to an API server. */
export interface KubeConnection {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
  /** Read on use (and again when it changes): bound service-account tokens rotate. */
  tokenFile?: string;
  insecure?: boolean;
  /** The context's (or the service account's) namespace. */
  namespace: string;
}

export interface KubeResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: API answers are untyped JSON
  body: any;
}

/** What a Membership or bootstrap needs from an API client (tests wrap it to inject faults). */
export interface KubeRequester {
  request(
    method: string,
    path: string,
    opts?: { body?: unknown; contentType?: string; timeoutMs?: number },
  ): Promise<KubeResponse>;
  close(): void;
}

/** A connection from a kubeconfig file and context (default: its current context). */
export function kubeconfigConnection(file: string, context?: string): KubeConnection {
  // The Kubernetes target's parser; the token file stays a path here, read on use (it rotates).
  return parseKubeconfig(file, context);
}

/**
 * The pod's own service account, as client-go's `rest.InClusterConfig`: the API server from
 * `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, token, CA and namespace from `dir`.
 */
export function inClusterConnection(
  opts: { env?: NodeJS.ProcessEnv; serviceAccountDir?: string } = {},
): KubeConnection {
  const env = opts.env ?? process.env;
  const dir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new SluiceError(
      "ConfigInvalid",
      "not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset",
      {
        hint: "pass --kubeconfig, or run Sluice in a pod",
      },
    );
  }
  let ca: Buffer;
  let namespace = "default";
  try {
    ca = readFileSync(join(dir, "ca.crt"));
    statSync(join(dir, "token"));
  } catch (e) {
    throw new SluiceError(
      "ConfigInvalid",
      `service account files missing in ${dir}: ${(e as Error).message}`,
      {
        cause: e,
        hint: "the pod needs automountServiceAccountToken: true",
      },
    );
  }
  try {
    namespace = readFileSync(join(dir, "namespace"), "utf8").trim() || namespace;
  } catch {
    // optional
  }
  const h = host.includes(":") ? `[${host}]` : host;
  return { server: `https://${h}:${port}`, ca, tokenFile: join(dir, "token"), namespace };
}

/** In-cluster when the service account is there, else the kubeconfig (KUBECONFIG or ~/.kube/config). */
export function defaultConnection(opts: { kubeconfig?: string; context?: string } = {}): KubeConnection {
  if (!opts.kubeconfig && process.env.KUBERNETES_SERVICE_HOST) return inClusterConnection();
  const file =
    opts.kubeconfig ??
    process.env.KUBECONFIG?.split(":")[0] ??
    join(process.env.HOME ?? "/", ".kube", "config");
  return kubeconfigConnection(file, opts.context);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small JSON client for one connection. */
export class KubeApi implements KubeRequester {
  private readonly agent: https.Agent;
  private token: { value: string; mtimeMs: number; checked: number } | undefined;

  constructor(readonly conn: KubeConnection) {
    const o: https.AgentOptions = { keepAlive: true, maxSockets: 8 };
    if (conn.ca) o.ca = conn.ca;
    if (conn.cert) o.cert = conn.cert;
    if (conn.key) o.key = conn.key;
    if (conn.insecure) o.rejectUnauthorized = false;
    this.agent = new https.Agent(o);
  }

  close(): void {
    this.agent.destroy();
  }

  private bearer(): string | undefined {
    if (this.conn.token) return this.conn.token;
    const f = this.conn.tokenFile;
    if (!f) return undefined;
    const now = Date.now();
    if (this.token && now - this.token.checked < 10_000) return this.token.value;
    const st = statSync(f);
    if (!this.token || st.mtimeMs !== this.token.mtimeMs)
      this.token = { value: readFileSync(f, "utf8").trim(), mtimeMs: st.mtimeMs, checked: now };
    else this.token.checked = now;
    return this.token.value;
  }

  /** One request, retried on network errors when `retries` > 0 (the default 0: callers decide). */
  async request(
    method: string,
    path: string,
    opts: { body?: unknown; contentType?: string; timeoutMs?: number; retries?: number } = {},
  ): Promise<KubeResponse> {
    let last: unknown;
    for (let attempt = 0; attempt <= (opts.retries ?? 0); attempt++) {
      try {
        return await this.once(method, path, opts);
      } catch (e) {
        last = e;
        if (attempt < (opts.retries ?? 0)) await sleep(200 * 2 ** attempt);
      }
    }
    throw new SluiceError(
      "TargetUnavailable",
      `Kubernetes API ${this.conn.server} unreachable (${method} ${path.split("?")[0]}): ${(last as Error).message}`,
      { cause: last, hint: "check the kubeconfig's server and that the cluster is running" },
    );
  }

  private once(
    method: string,
    path: string,
    opts: { body?: unknown; contentType?: string; timeoutMs?: number },
  ): Promise<KubeResponse> {
    return new Promise((resolveP, reject) => {
      const headers: Record<string, string> = { Accept: "application/json" };
      const token = this.bearer();
      if (token) headers.Authorization = `Bearer ${token}`;
      let payload: Buffer | undefined;
      if (opts.body !== undefined) {
        payload = Buffer.from(JSON.stringify(opts.body));
        headers["Content-Type"] = opts.contentType ?? "application/json";
        headers["Content-Length"] = String(payload.length);
      }
      const req = https.request(
        new URL(this.conn.server + path),
        { method, headers, agent: this.agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let body: unknown = text;
            try {
              body = text ? JSON.parse(text) : undefined;
            } catch {
              // keep the text
            }
            resolveP({ status: res.statusCode ?? 0, body });
          });
        },
      );
      req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error("request timed out")));
      req.on("error", reject);
      if (payload) req.write(payload);
      req.end();
    });
  }
}

/** The API's own message for a failed request (a Status object), or the HTTP status. */
export function statusMessage(res: KubeResponse): string {
  if (res.body && typeof res.body === "object" && typeof res.body.message === "string")
    return res.body.message;
  return `HTTP ${res.status}`;
}

export function apiError(res: KubeResponse, what: string, hint?: string): SluiceError {
  const code =
    res.status === 401
      ? "Unauthorized"
      : res.status === 403
        ? "Forbidden"
        : res.status === 409
          ? "Conflict"
          : res.status === 404
            ? "NotFound"
            : "TargetUnavailable";
  return new SluiceError(code, `${what} failed: ${statusMessage(res)}`, {
    detail: { status: res.status },
    ...(hint ? { hint } : {}),
  });
}
