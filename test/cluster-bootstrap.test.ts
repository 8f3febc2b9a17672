/**
 * `sluice bootstrap` / `sluice uninstall` against a real kube-apiserver (+ controller manager)
 * and a real Git server that requires a token: the objects are created and the cluster config is
 * committed; a second run commits nothing and changes no resourceVersion; the ServiceAccount's
 * RBAC is least-privilege yet enough for Sluice's Leases and for Sluice to reconcile itself from
 * Git (a real Agent, with the configuration the pod would mount and the ServiceAccount's token,
 * adopts every object unchanged); uninstall removes exactly what bootstrap made.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import { stringify } from "yaml";
import { bootstrap, uninstall } from "../src/cluster/bootstrap.js";
import { inClusterConnection, KubeApi, kubeconfigConnection, Membership } from "../src/cluster/index.js";
import { byKind, loadConfig } from "../src/config/index.js";
import type { ObjectRef } from "../src/core/index.js";
import { Agent } from "../src/reconcile/index.js";
import { GitSource } from "../src/source/index.js";
import { openStore } from "../src/store/index.js";
import { createKubernetesTarget } from "../src/targets/kubernetes/index.js";
import { sluice } from "./support/cli.js";
import { type ControlPlane, startControlPlane } from "./support/controlplane.js";
import { type GitServer, git, startTestGitServer } from "./support/gitserver.js";

const TOKEN = "s3cr3t-t0ken-for-the-fleet";
let cp: ControlPlane;
let admin: KubeApi;
let srv: GitServer & { root: string };
let work: string;
let tokenFile: string;

const PATHS: Record<string, (r: ObjectRef) => string> = {
  Namespace: (r) => `/api/v1/namespaces/${r.name}`,
  ServiceAccount: (r) => `/api/v1/namespaces/${r.namespace}/serviceaccounts/${r.name}`,
  ConfigMap: (r) => `/api/v1/namespaces/${r.namespace}/configmaps/${r.name}`,
  Secret: (r) => `/api/v1/namespaces/${r.namespace}/secrets/${r.name}`,
  Service: (r) => `/api/v1/namespaces/${r.namespace}/services/${r.name}`,
  Deployment: (r) => `/apis/apps/v1/namespaces/${r.namespace}/deployments/${r.name}`,
  NetworkPolicy: (r) => `/apis/networking.k8s.io/v1/namespaces/${r.namespace}/networkpolicies/${r.name}`,
  Role: (r) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${r.namespace}/roles/${r.name}`,
  RoleBinding: (r) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${r.namespace}/rolebindings/${r.name}`,
  ClusterRole: (r) => `/apis/rbac.authorization.k8s.io/v1/clusterroles/${r.name}`,
  ClusterRoleBinding: (r) => `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${r.name}`,
};

async function get(path: string, api = admin): Promise<any> {
  const r = await api.request("GET", path);
  return r.status === 200 ? r.body : undefined;
}

async function versions(refs: ObjectRef[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const r of refs)
    out[`${r.kind}/${r.namespace ?? ""}/${r.name}`] = (
      await get(PATHS[r.kind]!(r))
    )?.metadata.resourceVersion;
  return out;
}

async function until<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(async () => {
  cp = await startControlPlane({ controllerManager: true });
  admin = new KubeApi(kubeconfigConnection(cp.kubeconfigPath));
  srv = await startTestGitServer({ auth: { username: "git", password: TOKEN } });
  await srv.createRepo("fleet", { "README.md": "the fleet\n" }, "main");
  work = mkdtempSync(join(tmpdir(), "sluice-bootstrap-test-"));
  tokenFile = join(work, "token");
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  // Things bootstrap did not make and uninstall must leave alone.
  await admin.request("POST", "/api/v1/namespaces", { body: { metadata: { name: "bystander" } } });
  await admin.request("POST", "/api/v1/namespaces/bystander/configmaps", {
    body: { metadata: { name: "keep-me" }, data: { a: "b" } },
  });
  await admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
    body: { metadata: { name: "bystander" }, rules: [] },
  });
});

after(async () => {
  admin?.close();
  await cp?.stop();
  await srv?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function authedUrl(): string {
  return srv.repoUrl("fleet").replace("http://", `http://git:${TOKEN}@`);
}

async function remoteHead(): Promise<string> {
  return (await git(work, ["ls-remote", authedUrl(), "refs/heads/main"])).split("\t")[0]!;
}

test("bootstrap applies Sluice, commits the cluster config, is idempotent; Sluice then reconciles itself; uninstall removes only its own", async (t) => {
  const opts = {
    repo: srv.repoUrl("fleet"),
    branch: "main",
    path: "clusters/staging",
    kubeconfig: cp.kubeconfigPath,
    credentials: { kind: "token" as const, token: TOKEN },
    image: "localhost/sluice/sluice:test",
    log: (l: string) => t.diagnostic(l),
  };
  const before1 = await remoteHead();
  const first = await bootstrap(opts);
  assert.equal(first.cluster, "staging");
  assert.ok(first.commit, "a commit was pushed");
  assert.equal(await remoteHead(), first.commit);
  const kinds = first.changeSet.entries.map((e) => `${e.action} ${e.subject}`);
  t.diagnostic(kinds.join("; "));
  // The target makes the inventory's Namespace first, so bootstrap finds it and labels it.
  assert.ok(
    kinds.includes("configured Namespace/sluice-system") || kinds.includes("created Namespace/sluice-system"),
  );
  for (const want of [
    "created ServiceAccount/sluice-system/sluice",
    "created ClusterRole/sluice",
    "created ClusterRoleBinding/sluice",
    "created Role/sluice-system/sluice-leases",
    "created RoleBinding/sluice-system/sluice-leases",
    "created Deployment/sluice-system/sluice",
    "created Service/sluice-system/sluice",
    "created NetworkPolicy/sluice-system/sluice",
    "created ConfigMap/sluice-system/sluice-kubeconfig",
    "created Secret/sluice-system/sluice-git-credentials",
  ]) {
    assert.ok(kinds.includes(want), `${want} in ${kinds.join(", ")}`);
  }
  const dep = await get("/apis/apps/v1/namespaces/sluice-system/deployments/sluice");
  assert.equal(dep.spec.template.spec.containers[0].image, "localhost/sluice/sluice:test");
  assert.equal(dep.spec.template.spec.securityContext.runAsNonRoot, true);
  assert.equal(dep.metadata.labels["sluice.dev/owner"], "staging.sluice-system");
  // The secret never reaches Git; the config does.
  const clone = join(work, "clone");
  await git(work, ["clone", "--quiet", authedUrl(), clone]);
  const sync = readFileSync(join(clone, "clusters/staging/sluice-system/sluice-sync.yaml"), "utf8");
  assert.match(sync, /kind: GitRepository/);
  assert.doesNotMatch((await git(clone, ["grep", "-I", "-c", TOKEN, "HEAD"]).catch(() => "")) || "", /\d/);
  const cfg = loadConfig(join(clone, "clusters/staging/sluice-system"), "sluice-sync.yaml");
  assert.equal(byKind(cfg, "GitRepository")[0]!.spec.url, srv.repoUrl("fleet"));
  assert.equal(byKind(cfg, "Kustomization")[0]!.spec.path, "./clusters/staging/sluice-system");
  assert.notEqual(before1, first.commit);

  // Second run: no commit, nothing applied, no resourceVersion moves.
  const refs = first.changeSet.entries.map((e) => e.ref);
  const rv1 = await versions(refs);
  // Second run, through the CLI.
  const cli = await sluice([
    "bootstrap",
    "--repo",
    opts.repo,
    "--branch",
    "main",
    "--path",
    opts.path,
    "--kubeconfig",
    cp.kubeconfigPath,
    "--token-file",
    tokenFile,
    "--image",
    opts.image,
    "-o",
    "json",
  ]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.ok(!cli.stdout.includes(TOKEN) && !cli.stderr.includes(TOKEN), "the token is never printed");
  const second = JSON.parse(cli.stdout) as {
    commit: string | null;
    changes: { subject: string; action: string }[];
  };
  assert.equal(second.commit, null);
  assert.equal(second.changes.length, first.changeSet.entries.length);
  assert.deepEqual(
    second.changes.filter((e) => e.action !== "unchanged").map((e) => `${e.action} ${e.subject}`),
    [],
  );
  assert.deepEqual(await versions(refs), rv1);
  assert.equal(await remoteHead(), first.commit);

  // The ServiceAccount: a token, as a pod would have it.
  const tok = await admin.request("POST", "/api/v1/namespaces/sluice-system/serviceaccounts/sluice/token", {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  });
  const saDir = join(work, "sa");
  mkdirSync(saDir);
  writeFileSync(join(saDir, "token"), tok.body.status.token);
  writeFileSync(join(saDir, "ca.crt"), cp.ca);
  writeFileSync(join(saDir, "namespace"), "sluice-system");
  const sa = new KubeApi(
    inClusterConnection({
      env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: new URL(cp.server).port },
      serviceAccountDir: saDir,
    }),
  );
  try {
    const can = async (attrs: Record<string, string>) => {
      const r = await sa.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: { resourceAttributes: attrs },
        },
      });
      return r.body.status.allowed === true;
    };
    assert.equal(
      await can({ verb: "patch", group: "apps", resource: "deployments", namespace: "bystander" }),
      true,
    );
    assert.equal(
      await can({
        verb: "update",
        group: "coordination.k8s.io",
        resource: "leases",
        namespace: "sluice-system",
      }),
      true,
    );
    assert.equal(
      await can({ verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "bystander" }),
      false,
    );
    assert.equal(
      await can({ verb: "create", group: "apiextensions.k8s.io", resource: "customresourcedefinitions" }),
      false,
    );
    assert.equal(
      await can({ verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterroles" }),
      false,
    );
    assert.equal(
      await can({
        verb: "patch",
        group: "rbac.authorization.k8s.io",
        resource: "clusterroles",
        name: "bystander",
      }),
      false,
    );
    assert.equal(await can({ verb: "delete", group: "", resource: "nodes" }), false);
    assert.equal(await can({ verb: "impersonate", group: "", resource: "users" }), false);
    // Membership with the pod's identity.
    const m = new Membership({
      api: sa,
      namespace: "sluice-system",
      id: "sluice-0",
      leaseDurationMs: 2000,
      pollIntervalMs: 200,
    });
    await m.start();
    await until(async () => m.acting(), "the replica to act", 10_000);
    assert.equal(m.owns("staging"), true);
    await m.stop();
  } finally {
    sa.close();
  }

  // Sluice reconciles itself: the configuration the pod mounts (ConfigMap + the Secret's manifest
  // key), the ServiceAccount's token as kubeconfig, a real Agent. Everything is adopted unchanged.
  const cms = await get(
    "/api/v1/namespaces/sluice-system/configmaps?labelSelector=app.kubernetes.io%2Fname%3Dsluice",
  );
  const configMap = cms.items.find((c: any) => c.metadata.name.startsWith("sluice-config-"));
  const secret = await get("/api/v1/namespaces/sluice-system/secrets/sluice-git-credentials");
  const confDir = join(work, "pod-config");
  mkdirSync(confDir);
  writeFileSync(join(confDir, "sluice.yaml"), configMap.data["sluice.yaml"]);
  writeFileSync(
    join(confDir, "git-credentials.yaml"),
    Buffer.from(secret.data["git-credentials.yaml"], "base64").toString("utf8"),
  );
  const podKubeconfig = join(work, "pod-kubeconfig");
  writeFileSync(
    podKubeconfig,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "c", cluster: { server: cp.server, "certificate-authority": join(saDir, "ca.crt") } },
      ],
      users: [{ name: "u", user: { tokenFile: join(saDir, "token") } }],
      contexts: [{ name: "c", context: { cluster: "c", user: "u", namespace: "sluice-system" } }],
      "current-context": "c",
    }),
  );
  const kube = await createKubernetesTarget({ kubeconfig: podKubeconfig });
  const state = join(work, "agent");
  const store = openStore(state);
  const agent = new Agent({
    configPath: confDir,
    configRoot: confDir,
    store,
    source: new GitSource({ cacheDir: join(state, "git") }),
    target: () => kube,
    log: pino({ level: "silent" }),
  });
  try {
    await agent.start();
    await until(
      async () =>
        store.listRuns({ env: "staging", unit: "sluice-system" }).find((r) => r.result !== "running"),
      "the self-reconcile",
      90_000,
    );
    const runs = store.listRuns({ env: "staging", unit: "sluice-system" });
    const done = runs.find((r) => r.result !== "running")!;
    t.diagnostic(`self-reconcile: ${done.result} ${JSON.stringify(done.summary)} ${done.message ?? ""}`);
    assert.equal(done.result, "succeeded", done.message ?? "");
    assert.deepEqual(
      Object.keys(done.summary).filter((k) => k !== "unchanged" && done.summary[k]! > 0),
      [],
    );
    assert.deepEqual(await versions(refs), rv1, "the self-reconcile adopted everything unchanged");
  } finally {
    await agent.stop();
    store.close();
    await kube.close();
  }

  // Uninstall: dry run lists, then everything bootstrap made goes; bystanders stay.
  const dry = await uninstall({ kubeconfig: cp.kubeconfigPath, dryRun: true });
  assert.ok(dry.removed.some((e) => e.subject === "ClusterRole/sluice"));
  assert.ok(await get("/apis/rbac.authorization.k8s.io/v1/clusterroles/sluice"), "dry run changes nothing");
  const gone = await uninstall({ kubeconfig: cp.kubeconfigPath, log: (l) => t.diagnostic(l) });
  assert.deepEqual(gone.clusters, ["staging"]);
  assert.deepEqual(gone.kept, []);
  assert.equal(gone.namespaceDeleted, true);
  for (const r of refs) {
    if (r.kind === "Namespace") continue;
    assert.equal(await get(PATHS[r.kind]!(r)), undefined, `${r.kind}/${r.name} is gone`);
  }
  await until(
    async () => !(await get("/api/v1/namespaces/sluice-system")),
    "sluice-system to finish terminating",
    90_000,
  );
  assert.ok(await get("/api/v1/namespaces/bystander/configmaps/keep-me"));
  assert.ok(await get("/apis/rbac.authorization.k8s.io/v1/clusterroles/bystander"));
  assert.ok(await get("/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin"));
  const again = await uninstall({ kubeconfig: cp.kubeconfigPath });
  assert.deepEqual(again.removed, []);
});
