/**
 * Counting what a client sends to the Kubernetes API, two ways:
 *
 * - `recordingProxy(cp)`: a TLS proxy on 127.0.0.1 (its own self-signed certificate, made with
 *   `openssl`) in front of the API server, with a kubeconfig pointing at it; every request is
 *   recorded (method, path, dry-run or not) before it is forwarded. Exact, per client.
 * - `apiRequestCounts(cp)`: the API server's own `apiserver_request_total` counters, by verb
 *   (`APPLY` is a server-side apply PATCH) and dry-run — for code paths that cannot be pointed at
 *   a proxy (benchmarks). Counts every client, so take deltas around the work being measured.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { KubeClient, loadKubeconfig } from "../../src/targets/kubernetes/client.js";
import type { ControlPlane } from "./controlplane.js";

export interface RecordedRequest {
  method: string;
  /** Path and query. */
  path: string;
  dryRun: boolean;
  /** `Impersonate-User`, when sent. */
  impersonate?: string;
}

export interface RecordingProxy {
  /** A kubeconfig like the control plane's, pointing at the proxy. */
  kubeconfigPath: string;
  requests: RecordedRequest[];
  /** Requests that change something: every method but GET/HEAD/OPTIONS, dry-runs excluded. */
  writes(): RecordedRequest[];
  clear(): void;
  stop(): Promise<void>;
}

const READS = new Set(["GET", "HEAD", "OPTIONS"]);

export async function recordingProxy(cp: ControlPlane): Promise<RecordingProxy> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-kproxy-"));
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      join(dir, "proxy.key"),
      "-out",
      join(dir, "proxy.crt"),
    ],
    { stdio: "ignore" },
  );
  const cert = readFileSync(join(dir, "proxy.crt"));
  const key = readFileSync(join(dir, "proxy.key"));
  const up = loadKubeconfig(cp.kubeconfigPath);
  const upstream = new URL(up.server);
  const agent = new https.Agent({
    keepAlive: true,
    ...(up.ca ? { ca: up.ca } : {}),
    ...(up.cert ? { cert: up.cert } : {}),
    ...(up.key ? { key: up.key } : {}),
    rejectUnauthorized: !up.insecure,
  });
  const requests: RecordedRequest[] = [];
  const server = https.createServer({ cert, key }, (req, res) => {
    const url = req.url ?? "/";
    const r: RecordedRequest = {
      method: req.method ?? "GET",
      path: url,
      dryRun: /[?&]dryRun=All\b/.test(url),
    };
    const imp = req.headers["impersonate-user"];
    if (typeof imp === "string") r.impersonate = imp;
    requests.push(r);
    const headers = { ...req.headers, host: upstream.host };
    const out = https.request(
      { hostname: upstream.hostname, port: upstream.port, path: url, method: req.method, headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    out.on("error", (e) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`proxy: ${e.message}`);
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  const doc = parseYaml(readFileSync(cp.kubeconfigPath, "utf8")) as {
    clusters: Array<{ name: string; cluster: Record<string, unknown> }>;
    "current-context"?: string;
  };
  for (const c of doc.clusters) {
    c.cluster = {
      server: `https://127.0.0.1:${port}`,
      "certificate-authority-data": cert.toString("base64"),
    };
  }
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, toYaml(doc));
  return {
    kubeconfigPath,
    requests,
    writes: () => requests.filter((r) => !READS.has(r.method) && !r.dryRun),
    clear: () => {
      requests.length = 0;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `apiserver_request_total` summed by `VERB` (or `VERB dry-run`), over the given resources (all when omitted). */
export async function apiRequestCounts(
  cp: ControlPlane,
  resources?: readonly string[],
): Promise<Map<string, number>> {
  const k = new KubeClient(cp.kubeconfigPath);
  try {
    const res = await k.request("GET", "/metrics");
    if (res.status !== 200) throw new Error(`GET /metrics: HTTP ${res.status}`);
    const out = new Map<string, number>();
    for (const line of String(res.body).split("\n")) {
      if (!line.startsWith("apiserver_request_total{")) continue;
      const label = (name: string) => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1] ?? "";
      if (resources && !resources.includes(label("resource"))) continue;
      const key = label("dry_run") ? `${label("verb")} dry-run` : label("verb");
      out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1)));
    }
    return out;
  } finally {
    k.close();
  }
}

/** What changed between two `apiRequestCounts`, zero counts left out. */
export function countDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

/** Write requests in a delta: every verb but GET/LIST/WATCH, dry-runs excluded. */
export function writeCount(delta: Record<string, number>): number {
  let n = 0;
  for (const [k, v] of Object.entries(delta))
    if (!/^(GET|LIST|WATCH)$/.test(k) && !k.endsWith("dry-run")) n += v;
  return n;
}
