/**
 * Sluice's own manifests for a cluster, as the files `sluice bootstrap` commits under
 * `<path>/sluice-system/`:
 *
 * - `sluice-components.yaml`: Namespace, ServiceAccount, RBAC, the Deployment, the Service for
 *   the API and webhooks, a NetworkPolicy, and the in-cluster kubeconfig;
 * - `sluice-sync.yaml`: Sluice's configuration in the cluster — the GitRepository of this
 *   repository, an Environments rule mapping the branch to the cluster, and the Kustomization
 *   that reconciles `<path>/sluice-system` itself (add your own Kustomizations here);
 * - `kustomization.yaml`: the components plus a ConfigMap generated from `sluice-sync.yaml`, so a
 *   change of configuration rolls the Deployment (the ConfigMap's name carries a content hash).
 *
 * Everything is deterministic (no timestamps, stable order): rendering twice gives the same bytes,
 * which is what makes bootstrap idempotent.
 */
import { stringify } from "yaml";
import { SluiceError } from "../core/index.js";

export const SYSTEM_NAMESPACE = "sluice-system";
export const SELF_UNIT = "sluice-system";
export const CREDENTIALS_UNIT = "sluice-credentials";
export const CREDENTIALS_SECRET = "sluice-git-credentials";
/** The Secret's key that holds itself as a manifest, for the file-based configuration loader. */
export const CREDENTIALS_MANIFEST_KEY = "git-credentials.yaml";
export const API_PORT = 7070;
export const APP_LABELS = { "app.kubernetes.io/name": "sluice", "app.kubernetes.io/part-of": "sluice" };

export interface ManifestSpec {
  /** The cluster's name (last segment of `--path`): its environment name in Sluice. */
  cluster: string;
  /** `clusters/<name>`, relative to the repository root, no leading `./`. */
  path: string;
  repo: string;
  branch: string;
  image: string;
  replicas: number;
  /** Bind the `cluster-admin` ClusterRole instead of Sluice's own least-privilege one. */
  clusterAdmin: boolean;
  /** Whether the GitRepository references the credentials Secret. */
  withCredentials: boolean;
  /** GitRepository interval (default 1m). */
  interval?: string;
}

const doc = (o: unknown) => stringify(o, { lineWidth: 0, sortMapEntries: false });
const stream = (objs: unknown[]) => objs.map(doc).join("---\n");

export function clusterName(path: string): string {
  const clean = path.replace(/^\.\//, "").replace(/\/+$/, "");
  const name = clean.split("/").pop() ?? "";
  if (
    !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name) ||
    clean.split("/").some((s) => s === ".." || s === "")
  ) {
    throw new SluiceError(
      "ConfigInvalid",
      `--path ${path}: the last segment must be a DNS label (the cluster's name)`,
      {
        hint: "use e.g. --path clusters/production",
      },
    );
  }
  return name;
}

/**
 * Least privilege for applying ordinary application manifests: the workload, networking and
 * configuration kinds (all verbs), read-only pods and events, and — by name only — Sluice's own
 * RBAC objects (it holds the rights it grants itself, so no `escalate`/`bind`). Not included:
 * CustomResourceDefinitions, other RBAC, nodes, PersistentVolumes, admission webhooks, storage
 * classes, impersonation. Units that need those run with `--cluster-admin`.
 */
export function clusterRules(): object[] {
  const all = ["get", "list", "watch", "create", "update", "patch", "delete"];
  return [
    {
      apiGroups: [""],
      resources: [
        "namespaces",
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "persistentvolumeclaims",
        "resourcequotas",
        "limitranges",
      ],
      verbs: all,
    },
    {
      apiGroups: [""],
      resources: ["pods", "pods/log", "events", "endpoints"],
      verbs: ["get", "list", "watch"],
    },
    {
      apiGroups: ["apps"],
      resources: ["deployments", "statefulsets", "daemonsets", "replicasets"],
      verbs: all,
    },
    { apiGroups: ["batch"], resources: ["jobs", "cronjobs"], verbs: all },
    { apiGroups: ["networking.k8s.io"], resources: ["ingresses", "networkpolicies"], verbs: all },
    { apiGroups: ["policy"], resources: ["poddisruptionbudgets"], verbs: all },
    { apiGroups: ["autoscaling"], resources: ["horizontalpodautoscalers"], verbs: all },
    { apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["get", "list", "watch"] },
    {
      apiGroups: ["rbac.authorization.k8s.io"],
      resources: ["clusterroles", "clusterrolebindings"],
      resourceNames: ["sluice"],
      verbs: ["get", "update", "patch"],
    },
  ];
}

function kubeconfigText(): string {
  return doc({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "in-cluster",
        cluster: {
          server: "https://kubernetes.default.svc",
          "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        },
      },
    ],
    users: [{ name: "sluice", user: { tokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token" } }],
    contexts: [
      { name: "in-cluster", context: { cluster: "in-cluster", user: "sluice", namespace: SYSTEM_NAMESPACE } },
    ],
    "current-context": "in-cluster",
  });
}

export function components(s: ManifestSpec): object[] {
  const ns = SYSTEM_NAMESPACE;
  const meta = (name: string, namespaced = true) => ({
    name,
    ...(namespaced ? { namespace: ns } : {}),
    labels: { ...APP_LABELS },
  });
  const objs: object[] = [
    {
      apiVersion: "v1",
      kind: "Namespace",
      // Never pruned nor destroyed with the unit: it may hold state Sluice keeps for other units.
      metadata: { ...meta(ns, false), annotations: { "sluice.dev/prune": "disabled" } },
    },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: meta("sluice") },
  ];
  if (s.clusterAdmin) {
    objs.push({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: meta("sluice", false),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
      subjects: [{ kind: "ServiceAccount", name: "sluice", namespace: ns }],
    });
  } else {
    objs.push(
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        metadata: meta("sluice", false),
        rules: clusterRules(),
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: meta("sluice", false),
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "sluice" },
        subjects: [{ kind: "ServiceAccount", name: "sluice", namespace: ns }],
      },
    );
  }
  objs.push(
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: meta("sluice-leases"),
      rules: [
        {
          apiGroups: ["coordination.k8s.io"],
          resources: ["leases"],
          verbs: ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {
          apiGroups: ["rbac.authorization.k8s.io"],
          resources: ["roles", "rolebindings"],
          resourceNames: ["sluice-leases"],
          verbs: ["get", "update", "patch"],
        },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: meta("sluice-leases"),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "sluice-leases" },
      subjects: [{ kind: "ServiceAccount", name: "sluice", namespace: ns }],
    },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: meta("sluice-kubeconfig"),
      data: { config: kubeconfigText() },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: meta("sluice"),
      spec: {
        type: "ClusterIP",
        selector: { "app.kubernetes.io/name": "sluice" },
        ports: [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }],
      },
    },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: meta("sluice"),
      spec: {
        // In: only the API/webhook port. Out: open (Git hosts, registries, the API server).
        podSelector: { matchLabels: { "app.kubernetes.io/name": "sluice" } },
        policyTypes: ["Ingress"],
        ingress: [{ ports: [{ protocol: "TCP", port: API_PORT }] }],
      },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: meta("sluice"),
      spec: {
        replicas: s.replicas,
        selector: { matchLabels: { "app.kubernetes.io/name": "sluice" } },
        template: {
          metadata: { labels: { ...APP_LABELS } },
          spec: {
            serviceAccountName: "sluice",
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              runAsGroup: 65532,
              fsGroup: 65532,
              seccompProfile: { type: "RuntimeDefault" },
            },
            containers: [
              {
                name: "sluice",
                image: s.image,
                imagePullPolicy: "IfNotPresent",
                args: [
                  "serve",
                  "--config",
                  "/etc/sluice/config",
                  "--state-dir",
                  "/var/lib/sluice/state",
                  "--listen",
                  `0.0.0.0:${API_PORT}`,
                  "--kubeconfig",
                  "/etc/sluice/kubeconfig/config",
                  "--shard-namespace",
                  ns,
                  "--replica-id",
                  "$(POD_NAME)",
                ],
                env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
                ports: [{ name: "http", containerPort: API_PORT, protocol: "TCP" }],
                readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 10 },
                livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 30 },
                resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ["ALL"] },
                },
                volumeMounts: [
                  { name: "config", mountPath: "/etc/sluice/config", readOnly: true },
                  { name: "kubeconfig", mountPath: "/etc/sluice/kubeconfig", readOnly: true },
                  { name: "state", mountPath: "/var/lib/sluice" },
                  { name: "tmp", mountPath: "/tmp" },
                ],
              },
            ],
            volumes: [
              {
                name: "config",
                projected: {
                  sources: [
                    {
                      configMap: {
                        name: "sluice-config",
                        items: [{ key: "sluice.yaml", path: "sluice.yaml" }],
                      },
                    },
                    ...(s.withCredentials
                      ? [
                          {
                            secret: {
                              name: CREDENTIALS_SECRET,
                              items: [{ key: CREDENTIALS_MANIFEST_KEY, path: CREDENTIALS_MANIFEST_KEY }],
                            },
                          },
                        ]
                      : []),
                  ],
                },
              },
              { name: "kubeconfig", configMap: { name: "sluice-kubeconfig" } },
              { name: "state", emptyDir: {} },
              { name: "tmp", emptyDir: {} },
            ],
          },
        },
      },
    },
  );
  return objs;
}

/** Sluice's configuration in the cluster: its repository, the branch → cluster rule, itself. */
export function syncConfig(s: ManifestSpec): object[] {
  const ns = SYSTEM_NAMESPACE;
  return [
    {
      apiVersion: "source.toolkit.fluxcd.io/v1",
      kind: "GitRepository",
      metadata: { name: "sluice-system", namespace: ns },
      spec: {
        url: s.repo,
        interval: s.interval ?? "1m",
        ref: { branch: s.branch },
        ...(s.withCredentials ? { secretRef: { name: CREDENTIALS_SECRET } } : {}),
      },
    },
    {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "Environments",
      metadata: { name: "sluice-system", namespace: ns },
      spec: {
        sourceRef: { name: "sluice-system" },
        rules: [{ branch: s.branch, name: s.cluster, target: "kubernetes", protected: true }],
      },
    },
    {
      apiVersion: "kustomize.toolkit.fluxcd.io/v1",
      kind: "Kustomization",
      metadata: { name: SELF_UNIT, namespace: ns },
      spec: {
        sourceRef: { kind: "GitRepository", name: "sluice-system" },
        path: `./${s.path}/sluice-system`,
        interval: "10m",
        prune: true,
        // Its own Deployment rolls the pod applying it: do not wait for that rollout.
        wait: false,
        timeout: "5m",
      },
    },
  ];
}

/** The files bootstrap commits, relative to the repository root. */
export function manifestFiles(s: ManifestSpec): Record<string, string> {
  const dir = `${s.path}/sluice-system`;
  const header = (what: string) =>
    `# ${what}\n# Generated by \`sluice bootstrap\`; Sluice reconciles this directory from Git.\n`;
  return {
    [`${dir}/kustomization.yaml`]:
      header("Sluice in this cluster.") +
      doc({
        apiVersion: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: ["sluice-components.yaml"],
        configMapGenerator: [
          {
            name: "sluice-config",
            namespace: SYSTEM_NAMESPACE,
            files: ["sluice.yaml=sluice-sync.yaml"],
            options: { labels: { ...APP_LABELS } },
          },
        ],
      }),
    [`${dir}/sluice-components.yaml`]: header("Sluice's components.") + stream(components(s)),
    [`${dir}/sluice-sync.yaml`]:
      header("Sluice's configuration in this cluster: add your Kustomizations here.") + stream(syncConfig(s)),
  };
}

/** The credentials Secret (not committed): Flux's keys, plus itself as a manifest for the config loader. */
export function credentialsSecret(data: Record<string, string>): object {
  const manifest = doc({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: CREDENTIALS_SECRET, namespace: SYSTEM_NAMESPACE },
    stringData: data,
  });
  const all: Record<string, string> = { ...data, [CREDENTIALS_MANIFEST_KEY]: manifest };
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: CREDENTIALS_SECRET, namespace: SYSTEM_NAMESPACE, labels: { ...APP_LABELS } },
    type: "Opaque",
    data: Object.fromEntries(
      Object.keys(all)
        .sort()
        .map((k) => [k, Buffer.from(all[k]!, "utf8").toString("base64")]),
    ),
  };
}
