/**
 * Deterministic inputs (seeded; never downloaded): Kubernetes objects as YAML text with some
 * `${VAR}` placeholders, laid out as a kustomize base with overlays, or as a plain directory.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "./rng.js";

const TEAMS = ["payments", "catalog", "search", "checkout", "identity", "platform", "growth"];
const WORDS = ["cart", "order", "user", "price", "stock", "email", "image", "queue", "report", "audit"];

/** Variables every placeholder in the generated objects needs (REGION and CLUSTER have defaults). */
export type EnvVars = Record<
  "APP_ENV" | "LOG_LEVEL" | "DB_HOST" | "NAMESPACE" | "TEAM_EMAIL" | "REPLICAS",
  string
>;

export function baseVars(env: string): EnvVars {
  return {
    APP_ENV: env,
    LOG_LEVEL: env === "production" ? "info" : "debug",
    DB_HOST: `db.${env}.internal`,
    NAMESPACE: `shop-${env}`,
    TEAM_EMAIL: `sre+${env}@example.com`,
    REPLICAS: "3",
  };
}

export interface App {
  name: string;
  docs: string[];
}

/** Three objects for app i: Deployment, Service, ConfigMap (realistic fields, some placeholders). */
export function appObjects(rng: Rng, i: number): App {
  const name = `${rng.pick(WORDS)}-${rng.word(4)}-${String(i).padStart(4, "0")}`;
  const team = rng.pick(TEAMS);
  const port = 8000 + rng.int(0, 99);
  const image = `registry.example.com/shop/${name}:1.${rng.int(0, 20)}.${rng.int(0, 9)}`;
  const owner = rng.chance(0.5) ? `\n  annotations:\n    owner: \${TEAM_EMAIL}` : "";
  const replicas = rng.chance(0.3) ? "${REPLICAS}" : String(rng.int(1, 4));
  const flags = Array.from({ length: rng.int(1, 4) }, () => rng.word(6)).join(",");
  const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/name: ${name}
    app.kubernetes.io/part-of: shop
    team: ${team}${owner}
spec:
  replicas: ${replicas}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: ${name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${name}
        team: ${team}
    spec:
      containers:
        - name: app
          image: ${image}
          args:
            - --port=${port}
            - --log-level=\${LOG_LEVEL}
          ports:
            - name: http
              containerPort: ${port}
            - name: metrics
              containerPort: 9090
          env:
            - name: APP_ENV
              value: \${APP_ENV}
            - name: DATABASE_URL
              value: postgres://\${DB_HOST}:5432/${name.replaceAll("-", "_")}
            - name: FEATURE_FLAGS
              value: "${flags}"
          envFrom:
            - configMapRef:
                name: ${name}-config
          resources:
            requests:
              cpu: ${rng.int(1, 9) * 50}m
              memory: ${rng.int(1, 8) * 64}Mi
            limits:
              memory: ${rng.int(4, 16) * 64}Mi
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
          livenessProbe:
            httpGet:
              path: /livez
              port: http
            initialDelaySeconds: 15
          securityContext:
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
`;
  const service = `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/name: ${name}
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "9090"
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: ${name}
  ports:
    - name: http
      port: 80
      targetPort: http
    - name: metrics
      port: 9090
      targetPort: metrics
`;
  const upstream = `${rng.pick(WORDS)}-${rng.word(4)}`;
  const configMap = `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${name}-config
  labels:
    app.kubernetes.io/name: ${name}
data:
  LOG_LEVEL: \${LOG_LEVEL}
  REGION: \${REGION:=eu-west-1}
  CACHE_TTL: "${rng.int(1, 60) * 10}"
  UPSTREAM_URL: http://${upstream}.\${NAMESPACE}.svc.cluster.local
  config.yaml: |
    server:
      port: ${port}
      timeout: ${rng.int(1, 30)}s
    features: [${flags}]
`;
  return { name, docs: [deployment, service, configMap] };
}

/** `n` apps (3n objects) in base/, one file per app, with a kustomization listing them. */
export function writeBase(dir: string, apps: number, seed: number): App[] {
  const rng = new Rng(seed);
  const base = join(dir, "base");
  mkdirSync(join(base, "apps"), { recursive: true });
  const out: App[] = [];
  for (let i = 0; i < apps; i++) {
    const app = appObjects(rng, i);
    out.push(app);
    writeFileSync(join(base, "apps", `${app.name}.yaml`), app.docs.join("---\n"));
  }
  const resources = out.map((a) => `  - apps/${a.name}.yaml`).join("\n");
  writeFileSync(
    join(base, "kustomization.yaml"),
    `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
labels:
  - pairs:
      app.kubernetes.io/managed-by: sluice
resources:
${resources}
`,
  );
  return out;
}

/**
 * An overlay of base/ at `rel` (e.g. "envs/production"): namespace, name prefix, labels,
 * annotations, image tags, a JSON 6902 patch on every Deployment, a strategic-merge patch,
 * a generated ConfigMap (one more object), and the environment's variables in vars.yaml.
 */
export function writeOverlay(dir: string, rel: string, env: string, apps: App[], seed: number): void {
  const rng = new Rng(seed);
  const o = join(dir, rel);
  mkdirSync(o, { recursive: true });
  const up = rel
    .split("/")
    .map(() => "..")
    .join("/");
  const images = apps
    .filter((_, i) => i % 10 === 0)
    .map(
      (a) => `  - name: registry.example.com/shop/${a.name}\n    newTag: 2.${rng.int(0, 9)}.${rng.int(0, 9)}`,
    )
    .join("\n");
  const scaled = apps[0]!;
  writeFileSync(
    join(o, "kustomization.yaml"),
    `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shop-${env}
namePrefix: ${env}-
resources:
  - ${up}/base
labels:
  - pairs:
      environment: ${env}
commonAnnotations:
  sluice.dev/environment: ${env}
images:
${images}
patches:
  - target:
      kind: Deployment
    patch: |-
      - op: add
        path: /spec/template/spec/nodeSelector
        value:
          kubernetes.io/os: linux
  - path: scale.yaml
configMapGenerator:
  - name: environment
    literals:
      - ENVIRONMENT=${env}
      - CLUSTER=\${CLUSTER:=${env}-1}
`,
  );
  writeFileSync(
    join(o, "scale.yaml"),
    `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${scaled.name}
spec:
  replicas: ${rng.int(2, 6)}
`,
  );
  const { TEAM_EMAIL: _fromFlag, ...vars } = baseVars(env); // TEAM_EMAIL: given with --var, the top layer
  writeFileSync(
    join(o, "vars.yaml"),
    Object.entries(vars)
      .map(([k, v]) => `${k}: "${v}"`)
      .join("\n")
      .concat("\n"),
  );
}

/**
 * A plain directory of `objects` objects spread over `files` files, with a vars.yaml at its root.
 * Returns the object count written.
 */
export function writePlain(dir: string, objects: number, files: number, seed: number, env: string): number {
  const rng = new Rng(seed);
  const docs: string[] = [];
  for (let i = 0; docs.length < objects; i++) docs.push(...appObjects(rng, i).docs);
  docs.length = objects;
  const perFile = Math.ceil(objects / files);
  for (let f = 0; f * perFile < objects; f++) {
    const sub = join(dir, `team-${String(f % 10).padStart(2, "0")}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(
      join(sub, `objects-${String(f).padStart(3, "0")}.yaml`),
      docs.slice(f * perFile, (f + 1) * perFile).join("---\n"),
    );
  }
  const vars = baseVars(env);
  writeFileSync(
    join(dir, "vars.yaml"),
    Object.entries(vars)
      .map(([k, v]) => `${k}: "${v}"`)
      .join("\n")
      .concat("\n"),
  );
  return objects;
}
