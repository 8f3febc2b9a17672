/**
 * `sluice bootstrap` and `sluice uninstall`.
 *
 * Bootstrap, like `flux bootstrap`: clone the branch, write Sluice's manifests under
 * `<path>/sluice-system` (manifests.ts), commit and push them if they changed, render that
 * directory exactly as the agent will (kustomize), and apply it with the Kubernetes target as the
 * unit `sluice-system` of the environment `<cluster>` — the same unit the Sluice in the cluster
 * reconciles from Git afterwards, so it adopts these objects (same owner labels, same inventory).
 * The Git credentials Secret is applied as a second unit (`sluice-credentials`): it is not in Git,
 * so the self-reconcile must never prune it. Every step compares before it writes: a second run
 * makes no commit and changes no resourceVersion.
 *
 * Uninstall destroys exactly those two units (their inventories, objects carrying their owner
 * label), the replicas' member Leases, and the Namespace only when nothing else is left in it.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { type GitAuth, gitRunner } from "../automation/index.js";
import { type KubeObject, SluiceError, subject } from "../core/index.js";
import type { ChangeEntry, ChangeSet } from "../plan/index.js";
import { render } from "../render/index.js";
import { LABEL_OWNER, ownerOf, type Target } from "../targets/index.js";
import { createKubernetesTarget, inventoryName } from "../targets/kubernetes/index.js";
import { apiError, KubeApi, kubeconfigConnection } from "./kube.js";
import { LABEL_MEMBER, leasesPath } from "./leases.js";
import {
  CREDENTIALS_SECRET,
  CREDENTIALS_UNIT,
  clusterName,
  credentialsSecret,
  type ManifestSpec,
  manifestFiles,
  SELF_UNIT,
  SYSTEM_NAMESPACE,
} from "./manifests.js";
import { generateSshKey, publicKeyOf } from "./sshkey.js";

const run = promisify(execFile);

export type GitCredentials =
  /** HTTP(S) basic auth with a token (GitHub: any username, GitLab: `oauth2`). */
  | { kind: "token"; token: string; username?: string }
  /** An SSH deploy key generated for the cluster (kept across re-runs); known_hosts from a file or ssh-keyscan. */
  | { kind: "ssh"; knownHosts?: string }
  /** A public repository: no credentials Secret. */
  | { kind: "none" };

export interface BootstrapOptions {
  repo: string;
  branch: string;
  /** `clusters/<name>`: where the cluster's configuration lives in the repository. */
  path: string;
  kubeconfig: string;
  context?: string;
  credentials: GitCredentials;
  /** Bind cluster-admin instead of the least-privilege ClusterRole (for units with CRDs, RBAC, …). */
  clusterAdmin?: boolean;
  /** Sluice's image (default `localhost/sluice/sluice:<version>`); push it where the cluster pulls from. */
  image?: string;
  replicas?: number;
  interval?: string;
  author?: { name: string; email: string };
  log?: (line: string) => void;
}

export interface BootstrapResult {
  cluster: string;
  /** The commit pushed, or null when the repository already had these manifests. */
  commit: string | null;
  files: string[];
  changeSet: ChangeSet;
  /** The public deploy key to register with the Git host (SSH mode). */
  deployKey?: string;
}

function version(): string {
  let dir = dirname(new URL(import.meta.url).pathname);
  for (let i = 0; i < 6; i++) {
    const p = join(dir, "package.json");
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "sluice" && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return "latest";
}

function isSshUrl(url: string): boolean {
  return url.startsWith("ssh://") || /^[^/:@]+@[^/:]+:/.test(url);
}

/** host and port of an ssh URL, for ssh-keyscan. */
function sshHost(url: string): { host: string; port: string } {
  if (url.startsWith("ssh://")) {
    const u = new URL(url);
    return { host: u.hostname, port: u.port || "22" };
  }
  const m = /^[^@]+@([^:]+):/.exec(url);
  return { host: m?.[1] ?? "", port: "22" };
}

async function keyscan(url: string): Promise<string> {
  const { host, port } = sshHost(url);
  try {
    const r = await run("ssh-keyscan", ["-p", port, "-T", "10", host], { timeout: 20_000 });
    if (r.stdout.trim()) return r.stdout;
  } catch {
    // below
  }
  throw new SluiceError(
    "ArtifactFailed",
    `could not read the SSH host keys of ${host}:${port} with ssh-keyscan`,
    {
      hint: "pass --known-hosts FILE with the Git host's known_hosts lines",
    },
  );
}

/** Reads the current credentials Secret, if any (to keep an SSH deploy key across runs). */
async function existingSecret(api: KubeApi): Promise<Record<string, string> | undefined> {
  const res = await api.request(
    "GET",
    `/api/v1/namespaces/${SYSTEM_NAMESPACE}/secrets/${CREDENTIALS_SECRET}`,
    {
      retries: 2,
    },
  );
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw apiError(res, `reading Secret ${SYSTEM_NAMESPACE}/${CREDENTIALS_SECRET}`);
  const data = (res.body?.data ?? {}) as Record<string, string>;
  return Object.fromEntries(
    Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
  );
}

/** The Secret's data for the chosen credentials (Flux's keys), and the deploy key to show. */
export async function gitCredentialData(
  repo: string,
  cred: GitCredentials,
  cluster: string,
  existing: Record<string, string> | undefined,
): Promise<{ data: Record<string, string>; deployKey?: string } | undefined> {
  if (cred.kind === "none") return undefined;
  if (cred.kind === "token") {
    if (isSshUrl(repo))
      throw new SluiceError("ConfigInvalid", `--token-file needs an http(s) repository URL, not ${repo}`, {
        hint: "use --ssh-key for ssh:// URLs",
      });
    return { data: { username: cred.username ?? "git", password: cred.token } };
  }
  if (!isSshUrl(repo))
    throw new SluiceError(
      "ConfigInvalid",
      `--ssh-key needs an ssh repository URL (ssh://… or git@host:…), not ${repo}`,
      {
        hint: "use --token-file for http(s) URLs",
      },
    );
  const comment = `sluice@${cluster}`;
  let identity = existing?.identity;
  let pub: string;
  if (identity?.includes("OPENSSH PRIVATE KEY")) {
    pub = existing?.["identity.pub"]?.trim() || publicKeyOf(identity, comment);
  } else {
    const k = generateSshKey(comment);
    identity = k.privateKey;
    pub = k.publicKey;
  }
  const knownHosts = cred.knownHosts ?? existing?.known_hosts ?? (await keyscan(repo));
  return { data: { identity, "identity.pub": `${pub}\n`, known_hosts: knownHosts }, deployKey: pub };
}

const IDENTITY = { name: "Sluice", email: "sluice@localhost" };

/** Clones (or starts) the branch, writes the files, commits and pushes when anything changed. */
async function commitManifests(
  opts: BootstrapOptions,
  files: Record<string, string>,
  dir: string,
  log: (l: string) => void,
): Promise<{ commit: string | null; workdir: string }> {
  const auth: GitAuth | undefined =
    opts.credentials.kind === "token"
      ? { username: opts.credentials.username ?? "git", password: opts.credentials.token }
      : undefined;
  const env: Record<string, string> = {};
  if (process.env.SSH_AUTH_SOCK) env.SSH_AUTH_SOCK = process.env.SSH_AUTH_SOCK;
  const outside = gitRunner(dir, auth, 120_000);
  const wc = join(dir, "repo");
  const heads = await outside.run(["ls-remote", "--heads", opts.repo, `refs/heads/${opts.branch}`], { env });
  if (heads.trim()) {
    await outside.run(["clone", "--quiet", "--single-branch", "--branch", opts.branch, opts.repo, wc], {
      env,
    });
  } else {
    log(`branch ${opts.branch} does not exist: creating it`);
    mkdirSync(wc);
    const g0 = gitRunner(wc, auth, 120_000);
    await g0.run(["init", "--quiet"]);
    await g0.run(["remote", "add", "origin", opts.repo]);
    await g0.run(["checkout", "--quiet", "--orphan", opts.branch]);
  }
  const git = gitRunner(wc, auth, 120_000);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(wc, rel)), { recursive: true });
    writeFileSync(join(wc, rel), text);
  }
  const managed = `${opts.path}/sluice-system`;
  await git.run(["add", "--all", "--", managed]);
  const status = await git.run(["status", "--porcelain", "--", managed]);
  if (!status.trim()) return { commit: null, workdir: wc };
  const who = opts.author ?? IDENTITY;
  await git.run(
    ["commit", "--quiet", "-m", `Add Sluice to cluster ${clusterName(opts.path)}`, "--", managed],
    {
      env: {
        ...env,
        GIT_AUTHOR_NAME: who.name,
        GIT_AUTHOR_EMAIL: who.email,
        GIT_COMMITTER_NAME: who.name,
        GIT_COMMITTER_EMAIL: who.email,
      },
    },
  );
  await git.run(["push", "--quiet", "origin", `HEAD:refs/heads/${opts.branch}`], { env });
  const commit = (await git.run(["rev-parse", "HEAD"])).trim();
  log(`pushed ${commit.slice(0, 10)} to ${opts.branch}: ${managed}`);
  return { commit, workdir: wc };
}

export async function bootstrap(opts: BootstrapOptions): Promise<BootstrapResult> {
  const log = opts.log ?? (() => {});
  const cluster = clusterName(opts.path);
  const path = opts.path.replace(/^\.\//, "").replace(/\/+$/, "");
  const api = new KubeApi(kubeconfigConnection(opts.kubeconfig, opts.context));
  const dir = mkdtempSync(join(tmpdir(), "sluice-bootstrap-"));
  let target: Target | undefined;
  try {
    const cred = await gitCredentialData(opts.repo, opts.credentials, cluster, await existingSecret(api));
    const spec: ManifestSpec = {
      cluster,
      path,
      repo: opts.repo,
      branch: opts.branch,
      image: opts.image ?? `localhost/sluice/sluice:${version()}`,
      replicas: opts.replicas ?? 2,
      clusterAdmin: opts.clusterAdmin === true,
      withCredentials: cred !== undefined,
      ...(opts.interval ? { interval: opts.interval } : {}),
    };
    const files = manifestFiles(spec);
    const { commit, workdir } = await commitManifests({ ...opts, path }, files, dir, log);
    // Exactly what the agent in the cluster will render from this commit.
    const rendered = await render({ root: workdir, path: `${path}/sluice-system` });
    target = await createKubernetesTarget({
      kubeconfig: opts.kubeconfig,
      ...(opts.context ? { context: opts.context } : {}),
    });
    const entries: ChangeEntry[] = [];
    const self = await target.apply({ env: cluster, unit: SELF_UNIT }, rendered.objects, {
      prune: true,
      wait: false,
      timeoutMs: 120_000,
    });
    entries.push(...self.changeSet.entries);
    if (cred) {
      const creds = await target.apply(
        { env: cluster, unit: CREDENTIALS_UNIT },
        [credentialsSecret(cred.data) as KubeObject],
        { prune: true, wait: false, timeoutMs: 60_000 },
      );
      entries.push(...creds.changeSet.entries);
    }
    for (const e of entries) if (e.action !== "unchanged") log(`${e.action} ${e.subject}`);
    return {
      cluster,
      commit,
      files: Object.keys(files),
      changeSet: { entries },
      ...(cred?.deployKey ? { deployKey: cred.deployKey } : {}),
    };
  } finally {
    await target?.close();
    api.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface UninstallOptions {
  kubeconfig: string;
  context?: string;
  dryRun?: boolean;
  log?: (line: string) => void;
}

export interface UninstallResult {
  /** Clusters (environments) whose bootstrap units were found. */
  clusters: string[];
  removed: ChangeEntry[];
  /** What was left in sluice-system because bootstrap did not create it (kept, with the Namespace). */
  kept: string[];
  namespaceDeleted: boolean;
}

type Item = { metadata: { name: string; labels?: Record<string, string>; ownerReferences?: unknown[] } };

async function list(api: KubeApi, path: string): Promise<Item[]> {
  const res = await api.request("GET", path, { retries: 2 });
  if (res.status === 404) return [];
  if (res.status !== 200) throw apiError(res, `listing ${path}`);
  return (res.body?.items ?? []) as Item[];
}

export async function uninstall(opts: UninstallOptions): Promise<UninstallResult> {
  const log = opts.log ?? (() => {});
  const api = new KubeApi(kubeconfigConnection(opts.kubeconfig, opts.context));
  const ns = SYSTEM_NAMESPACE;
  let target: Target | undefined;
  try {
    const inventories = await list(
      api,
      `/api/v1/namespaces/${ns}/configmaps?labelSelector=${encodeURIComponent(
        `sluice.dev/inventory=true,sluice.dev/unit in (${SELF_UNIT},${CREDENTIALS_UNIT})`,
      )}`,
    );
    const units = inventories
      .map((c) => ({
        env: c.metadata.labels?.["sluice.dev/env"] ?? "",
        unit: c.metadata.labels?.["sluice.dev/unit"] ?? "",
      }))
      .filter((u) => u.env && u.unit)
      // Credentials after the components, so the Namespace is last to go.
      .sort((a, b) => (a.unit === b.unit ? 0 : a.unit === CREDENTIALS_UNIT ? -1 : 1));
    const clusters = [...new Set(units.map((u) => u.env))];
    const result: UninstallResult = { clusters, removed: [], kept: [], namespaceDeleted: false };
    if (units.length === 0) {
      log(`nothing to uninstall: no bootstrap inventory in ${ns}`);
      return result;
    }
    target = await createKubernetesTarget({
      kubeconfig: opts.kubeconfig,
      ...(opts.context ? { context: opts.context } : {}),
    });
    for (const u of units) {
      if (opts.dryRun) {
        const inv = await target.inventory(u);
        for (const ref of inv?.entries ?? [])
          result.removed.push({ subject: subject(ref), ref, action: "deleted", reason: "dry run" });
        continue;
      }
      const cs = await target.destroy(u);
      for (const e of cs.entries) {
        if (e.action === "deleted") result.removed.push(e);
        log(`${e.action} ${e.subject}${e.reason ? ` (${e.reason})` : ""}`);
      }
    }
    // The replicas' member Leases are Sluice's too.
    for (const l of await list(api, `${leasesPath(ns)}?labelSelector=${LABEL_MEMBER}%3Dtrue`)) {
      if (!opts.dryRun) await api.request("DELETE", leasesPath(ns, l.metadata.name), { retries: 2 });
      log(`deleted Lease/${ns}/${l.metadata.name}`);
    }
    // The Namespace goes only if bootstrap made it and nothing else lives there.
    const nsRes = await api.request("GET", `/api/v1/namespaces/${ns}`, { retries: 2 });
    const nsOwner = nsRes.body?.metadata?.labels?.[LABEL_OWNER] as string | undefined;
    const ours = clusters.map((c) => ownerOf({ env: c, unit: SELF_UNIT }));
    if (nsRes.status === 200 && nsOwner && ours.includes(nsOwner)) {
      const leftovers: string[] = [];
      for (const [kind, path] of [
        ["ConfigMap", `/api/v1/namespaces/${ns}/configmaps`],
        ["Secret", `/api/v1/namespaces/${ns}/secrets`],
        ["ServiceAccount", `/api/v1/namespaces/${ns}/serviceaccounts`],
        ["Service", `/api/v1/namespaces/${ns}/services`],
        ["Deployment", `/apis/apps/v1/namespaces/${ns}/deployments`],
        ["StatefulSet", `/apis/apps/v1/namespaces/${ns}/statefulsets`],
        ["Lease", leasesPath(ns)],
        ["PersistentVolumeClaim", `/api/v1/namespaces/${ns}/persistentvolumeclaims`],
      ] as const) {
        for (const o of await list(api, path)) {
          const n = o.metadata.name;
          if (
            (kind === "ConfigMap" && n === "kube-root-ca.crt") ||
            (kind === "ServiceAccount" && n === "default")
          )
            continue;
          if (o.metadata.ownerReferences?.length) continue; // goes with its owner
          if (
            opts.dryRun &&
            o.metadata.labels?.[LABEL_OWNER] &&
            ours.includes(o.metadata.labels[LABEL_OWNER]!)
          )
            continue;
          if (opts.dryRun && kind === "Lease" && o.metadata.labels?.[LABEL_MEMBER] === "true") continue;
          if (opts.dryRun && kind === "ConfigMap" && units.some((u) => n === inventoryName(u))) continue;
          leftovers.push(`${kind}/${ns}/${n}`);
        }
      }
      if (leftovers.length) {
        result.kept = leftovers;
        log(`kept Namespace ${ns}: it holds ${leftovers.length} object(s) bootstrap did not create`);
      } else if (!opts.dryRun) {
        const del = await api.request("DELETE", `/api/v1/namespaces/${ns}`, { retries: 2 });
        if (del.status >= 300 && del.status !== 404) throw apiError(del, `deleting Namespace ${ns}`);
        result.namespaceDeleted = true;
        result.removed.push({
          subject: `Namespace/${ns}`,
          ref: { apiVersion: "v1", kind: "Namespace", name: ns },
          action: "deleted",
        });
        log(`deleted Namespace/${ns}`);
      } else {
        result.removed.push({
          subject: `Namespace/${ns}`,
          ref: { apiVersion: "v1", kind: "Namespace", name: ns },
          action: "deleted",
          reason: "dry run",
        });
      }
    }
    return result;
  } finally {
    await target?.close();
    api.close();
  }
}
