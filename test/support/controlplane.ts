/**
 * A real Kubernetes control plane for tests: etcd + kube-apiserver (built by scripts/peers/kube.sh
 * into ${SLUICE_BIN:-~/.cache/sluice/bin}) on free 127.0.0.1 ports, in a temp dir, with a static
 * token for a `system:masters` user and the apiserver's self-signed serving certificate.
 * With SLUICE_TEST_KUBECONFIG set, that cluster is used instead and nothing is started.
 * No kubelet. By default no controllers either: tests set status through the status subresource;
 * `controllerManager: true` adds kube-controller-manager, `kwok: true` also kube-scheduler and
 * kwok with fake nodes, so Deployments roll out through the real controllers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify as toYaml } from "yaml";

export const KUBE_VERSION = process.env.KUBE_VERSION ?? "v1.34.4";
export const ETCD_VERSION = process.env.ETCD_VERSION ?? "v3.6.16";
export const KWOK_VERSION = process.env.KWOK_VERSION ?? "v0.7.0";
/** The fake nodes of `kwok: true` carry this annotation (kwok manages only them). */
export const KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node";

export interface ControlPlane {
  kubeconfigPath: string;
  server: string;
  token?: string;
  /** PEM of the CA that signed the serving certificate. */
  ca: string;
  stop(): Promise<void>;
  /**
   * Stops kube-apiserver only (SIGTERM, or SIGKILL with `kill`); etcd and its data stay. Only on
   * the control plane started here (absent with SLUICE_TEST_KUBECONFIG).
   */
  stopApiServer?(opts?: { kill?: boolean }): Promise<void>;
  /** Starts kube-apiserver again on the same port and certificates; resolves once /readyz answers. */
  startApiServer?(): Promise<void>;
}

const binDir = () => process.env.SLUICE_BIN ?? join(homedir(), ".cache", "sluice", "bin");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function binary(name: string, version: string): string {
  const p = join(binDir(), `${name}-${version}`);
  if (!existsSync(p)) {
    throw new Error(`${p} is missing: run \`bash scripts/peers/kube.sh\` (or scripts/setup.sh) to build it`);
  }
  return p;
}

function get(url: string, ca: string | undefined, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ca, headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: ca !== undefined },
      (res) => {
        let body = "";
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

function send(
  server: string,
  ca: string,
  token: string,
  method: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${server}${path}`,
      {
        method,
        ca,
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

function stopProcess(p: ChildProcess, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return resolve();
    const t = setTimeout(() => {
      try {
        process.kill(p.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
    }, timeoutMs);
    p.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    try {
      process.kill(p.pid, "SIGTERM");
    } catch {
      clearTimeout(t);
      resolve();
    }
  });
}

function external(path: string): ControlPlane {
  const doc = parseYaml(readFileSync(path, "utf8")) as {
    clusters: Array<{ cluster: { server: string; "certificate-authority-data"?: string } }>;
    users: Array<{ user: { token?: string } }>;
  };
  const cluster = doc.clusters[0]!.cluster;
  const cp: ControlPlane = {
    kubeconfigPath: path,
    server: cluster.server,
    ca: Buffer.from(cluster["certificate-authority-data"] ?? "", "base64").toString("utf8"),
    stop: async () => {},
  };
  const token = doc.users[0]?.user.token;
  if (token) cp.token = token;
  return cp;
}

export interface ControlPlaneOptions {
  /**
   * Also run kube-controller-manager (Deployments get ReplicaSets and Pods, Namespaces finish
   * terminating). Off by default: tests then own every status through the status subresource.
   */
  controllerManager?: boolean;
  /**
   * Simulated nodes (scripts/peers/kwok.sh): kube-scheduler binds Pods to `nodes` fake Nodes
   * (default 2) that kwok runs — their Pods become Running and Ready as a kubelet would report
   * them. Implies `controllerManager`. Ignored with SLUICE_TEST_KUBECONFIG (a real cluster).
   */
  kwok?: boolean;
  nodes?: number;
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const ext = process.env.SLUICE_TEST_KUBECONFIG;
  if (ext) return external(ext);
  // Free ports are picked before the processes bind them: on a busy machine another process can
  // take one in between. Start again on new ports then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function startOnce(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const etcdBin = binary("etcd", ETCD_VERSION);
  const apiBin = binary("kube-apiserver", KUBE_VERSION);
  const kcmBin =
    opts.controllerManager || opts.kwok ? binary("kube-controller-manager", KUBE_VERSION) : undefined;
  const schedBin = opts.kwok ? binary("kube-scheduler", KUBE_VERSION) : undefined;
  const kwokBin = opts.kwok ? binary("kwok", KWOK_VERSION) : undefined;
  const dir = mkdtempSync(join(tmpdir(), "sluice-kube-"));
  const [clientPort, peerPort, securePort] = [await freePort(), await freePort(), await freePort()];
  const token = randomBytes(24).toString("hex");
  writeFileSync(join(dir, "tokens.csv"), `${token},sluice-test,sluice-test,"system:masters"\n`);
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "sa.key"), privateKey.export({ type: "pkcs1", format: "pem" }));

  const procs: ChildProcess[] = [];
  const stop = async () => {
    for (const p of [...procs].reverse()) await stopProcess(p);
    rmSync(dir, { recursive: true, force: true });
  };
  const log = (name: string) => openSync(join(dir, `${name}.log`), "a");
  const etcdUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  try {
    procs.push(
      spawn(
        etcdBin,
        [
          "--name=default",
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=default=${peerUrl}`,
          "--unsafe-no-fsync=true",
          "--log-level=warn",
        ],
        { stdio: ["ignore", log("etcd"), log("etcd")] },
      ),
    );
    const certDir = join(dir, "certs");
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${securePort}`,
      `--cert-dir=${certDir}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(dir, "sa.key")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--authorization-mode=RBAC",
      "--allow-privileged=true",
      "--enable-priority-and-fairness=false",
      "--profiling=false",
      "--v=0",
    ];
    let api = spawn(apiBin, apiArgs, { stdio: ["ignore", log("kube-apiserver"), log("kube-apiserver")] });
    procs.push(api);
    const server = `https://127.0.0.1:${securePort}`;
    /** Until /readyz answers; the CA is read from the certificate directory once it is written. */
    const waitReady = async (ca: string | undefined): Promise<string> => {
      const deadline = Date.now() + 90_000;
      for (;;) {
        for (const p of [procs[0]!, api]) {
          if (p.exitCode !== null) {
            const name = p === procs[0] ? "etcd" : "kube-apiserver";
            const tail = readFileSync(join(dir, `${name}.log`), "utf8").slice(-2000);
            throw new Error(`${name} exited with ${p.exitCode} while starting:\n${tail}`);
          }
        }
        const crt = join(certDir, "apiserver.crt");
        if (!ca && existsSync(crt)) ca = readFileSync(crt, "utf8");
        if (ca) {
          const r = await get(`${server}/readyz`, ca, token).catch(() => undefined);
          if (r?.status === 200) return ca;
        }
        if (Date.now() > deadline) {
          const tail = readFileSync(join(dir, "kube-apiserver.log"), "utf8").slice(-2000);
          throw new Error(`kube-apiserver not ready after 90s:\n${tail}`);
        }
        await sleep(250);
      }
    };
    const ca = await waitReady(undefined);
    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfigPath,
      toYaml({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "test",
            cluster: { server, "certificate-authority-data": Buffer.from(ca).toString("base64") },
          },
        ],
        users: [{ name: "test", user: { token } }],
        contexts: [{ name: "test", context: { cluster: "test", user: "test" } }],
        "current-context": "test",
      }),
    );
    if (kcmBin) {
      procs.push(
        spawn(
          kcmBin,
          [
            `--kubeconfig=${kubeconfigPath}`,
            `--authentication-kubeconfig=${kubeconfigPath}`,
            `--authorization-kubeconfig=${kubeconfigPath}`,
            "--leader-elect=false",
            "--controllers=*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            `--service-account-private-key-file=${join(dir, "sa.key")}`,
            `--root-ca-file=${join(certDir, "apiserver.crt")}`,
            "--use-service-account-credentials=false",
            "--bind-address=127.0.0.1",
            `--secure-port=${await freePort()}`,
            `--cert-dir=${join(dir, "kcm-certs")}`,
          ],
          { stdio: ["ignore", log("kube-controller-manager"), log("kube-controller-manager")] },
        ),
      );
    }
    if (schedBin && kwokBin) {
      procs.push(
        spawn(
          schedBin,
          [
            `--kubeconfig=${kubeconfigPath}`,
            `--authentication-kubeconfig=${kubeconfigPath}`,
            `--authorization-kubeconfig=${kubeconfigPath}`,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            `--secure-port=${await freePort()}`,
          ],
          { stdio: ["ignore", log("kube-scheduler"), log("kube-scheduler")] },
        ),
        spawn(
          kwokBin,
          [
            `--kubeconfig=${kubeconfigPath}`,
            `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
            "--server-address=127.0.0.1:0",
            "--cidr=10.244.0.1/24",
            "--node-ip=127.0.0.1",
          ],
          { stdio: ["ignore", log("kwok"), log("kwok")] },
        ),
      );
      for (let i = 0; i < (opts.nodes ?? 2); i++) {
        const capacity = { cpu: "32", memory: "256Gi", pods: "110" };
        const r = await send(server, ca, token, "POST", "/api/v1/nodes", {
          apiVersion: "v1",
          kind: "Node",
          metadata: {
            name: `kwok-node-${i}`,
            annotations: { [KWOK_NODE_ANNOTATION]: "fake" },
            labels: { type: "kwok", "kubernetes.io/hostname": `kwok-node-${i}` },
          },
          status: { capacity, allocatable: capacity },
        });
        if (r.status !== 201)
          throw new Error(`creating fake node kwok-node-${i}: HTTP ${r.status} ${r.body}`);
      }
    }
    return {
      kubeconfigPath,
      server,
      token,
      ca,
      stop,
      async stopApiServer(o = {}) {
        if (api.exitCode !== null || api.signalCode !== null || api.pid === undefined) return;
        if (!o.kill) return stopProcess(api);
        const gone = new Promise<void>((r) => api.once("exit", () => r()));
        process.kill(api.pid, "SIGKILL");
        await gone;
      },
      async startApiServer() {
        if (api.exitCode === null && api.signalCode === null) return;
        const i = procs.indexOf(api);
        api = spawn(apiBin, apiArgs, { stdio: ["ignore", log("kube-apiserver"), log("kube-apiserver")] });
        procs[i] = api;
        await waitReady(ca);
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
