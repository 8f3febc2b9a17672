/**
 * Test support for the server and the CLI tests (not part of the module's API): a fake agent
 * that implements only what the server calls, over a real store, and a configuration loaded
 * from real YAML with two Git sources and Receivers of each type.
 */
import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino, { type Logger } from "pino";
import { type Config, loadConfig } from "../config/index.js";
import { SluiceError } from "../core/index.js";
import { AgentMetrics } from "../reconcile/index.js";
import { openStore, type Store } from "../store/index.js";
import type { ApiAgent } from "./_types.js";

export const WEBHOOK_TOKEN = "wh-7f3c1e9a2b8d4c6e0a5f9b3d7c1e8a2f";
export const GITLAB_TOKEN = "gl-2b9e6c4a1d8f3e7b0c5a9d2e6f1b4c8a";
export const GENERIC_TOKEN = "gen-5d1a8c3f7e2b9d6a0c4f8e1b5a9d3c7e";
export const GIT_PASSWORD = "git-pw-9c2e7a4f1b8d3e6c";

const CONFIG = `
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: app, namespace: flux-system }
spec:
  url: https://git.example.com/org/app.git
  interval: 1m
  ref: { branch: main }
  secretRef: { name: git-auth }
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: infra, namespace: flux-system }
spec:
  url: https://git.example.com/org/infra.git
  interval: 1m
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: other, namespace: flux-system }
spec:
  url: https://git.example.com/org/other.git
  interval: 1m
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: { name: github-receiver, namespace: flux-system }
spec:
  type: github
  events: [ping, push]
  resources:
    - { kind: GitRepository, name: app }
    - { kind: GitRepository, name: infra }
    - { kind: Kustomization, name: api }
  secretRef: { name: webhook-token }
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: { name: gitlab-receiver, namespace: flux-system }
spec:
  type: gitlab
  resources:
    - { kind: GitRepository, name: other }
  secretRef: { name: gitlab-token }
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: { name: generic-receiver, namespace: flux-system }
spec:
  type: generic
  resources:
    - { kind: GitRepository, name: app }
  secretRef: { name: generic-token }
---
apiVersion: v1
kind: Secret
metadata: { name: webhook-token, namespace: flux-system }
stringData: { token: ${WEBHOOK_TOKEN} }
---
apiVersion: v1
kind: Secret
metadata: { name: gitlab-token, namespace: flux-system }
stringData: { token: ${GITLAB_TOKEN} }
---
apiVersion: v1
kind: Secret
metadata: { name: generic-token, namespace: flux-system }
stringData: { token: ${GENERIC_TOKEN} }
---
apiVersion: v1
kind: Secret
metadata: { name: git-auth, namespace: flux-system }
stringData: { username: deploy, password: ${GIT_PASSWORD} }
`;

/** Everything the server calls, answered from a real store; actions are recorded. */
export class FakeAgent extends EventEmitter implements ApiAgent {
  readonly metrics = new AgentMetrics();
  started = true;
  readonly reconciles: { env: string; unit: string; withSource: boolean }[] = [];
  readonly pushes: { sources?: string[]; repoUrls?: string[] }[] = [];
  /** What listSources answers; a test may put a leaky message here. */
  sourceMessage = "2 branch(es) listed";

  constructor(
    private readonly store: Store,
    readonly configuration: Config,
  ) {
    super();
  }

  listEnvironments() {
    return this.store.listEnvironments();
  }

  listUnits(env?: string) {
    return this.store.listUnitStatus(env);
  }

  listSources(): ReturnType<ApiAgent["listSources"]> {
    return [
      {
        name: "flux-system/app",
        url: "https://***@git.example.com/org/app.git",
        ok: true,
        message: this.sourceMessage,
        lastFetchAt: new Date().toISOString(),
        branches: { main: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "feature/x": "6113728f27ae82c7" },
      },
      {
        name: "flux-system/infra",
        url: "https://git.example.com/org/infra.git",
        ok: false,
        message: "not fetched yet",
        lastFetchAt: null,
        branches: {},
      },
    ];
  }

  async requestReconcile(env: string, unit: string, opts: { withSource?: boolean } = {}) {
    if (!this.store.getUnitStatus(env, unit))
      throw new SluiceError("NotFound", `unit ${unit} of environment ${env} does not exist`);
    this.reconciles.push({ env, unit, withSource: opts.withSource ?? false });
  }

  setSuspended(env: string, unit: string, suspended: boolean) {
    const cur = this.store.getUnitStatus(env, unit);
    if (!cur) throw new SluiceError("NotFound", `unit ${unit} of environment ${env} does not exist`);
    const { updatedAt: _, ...rest } = cur;
    this.store.setUnitStatus({ ...rest, suspended });
  }

  async notifyPush(opts: { sources?: string[]; repoUrls?: string[] }) {
    this.pushes.push(opts);
    return opts.sources ?? [];
  }
}

export interface Fixture {
  dir: string;
  store: Store;
  agent: FakeAgent;
  config: Config;
  operator: string;
  viewer: string;
  log: Logger;
  /** Everything logged so far (pino JSON lines). */
  logText(): string;
  cleanup(): void;
}

/** A temp dir with the configuration, a real store holding two environments, units, runs, events. */
export function makeFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "sluice-server-"));
  mkdirSync(join(dir, "config"));
  writeFileSync(join(dir, "config", "sluice.yaml"), CONFIG);
  const config = loadConfig(dir, "config");
  const store = openStore(join(dir, "state"));
  const operator = store.addToken("ops", "operator");
  const viewer = store.addToken("dash", "viewer");
  const rev = "main@sha1:0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
  for (const [name, branch] of [
    ["main", "main"],
    ["preview-x", "feature/x"],
  ] as const) {
    store.upsertEnvironment({
      name,
      branch,
      rule: null,
      target: "local",
      protected: name === "main",
      ttlSeconds: null,
      expiresAt: null,
      state: "active",
      revision: rev,
    });
  }
  const unit = (env: string, unit: string, ready: "True" | "False", reason: string, message: string) =>
    store.setUnitStatus({
      env,
      unit,
      ready,
      reason,
      message,
      revision: rev,
      lastAppliedRevision: ready === "True" ? rev : null,
      lastAppliedAt: ready === "True" ? new Date().toISOString() : null,
      drift: false,
      suspended: false,
    });
  unit("main", "api", "True", "ReconciliationSucceeded", `Applied revision: ${rev}`);
  unit("main", "db", "True", "ReconciliationSucceeded", `Applied revision: ${rev}`);
  unit("preview-x", "api", "False", "BuildFailed", "kustomize build failed:\nline 3: bad\u001b[31m red");
  const id = store.startRun({ env: "main", unit: "api", revision: rev, trigger: "webhook" });
  store.finishRun(id, {
    result: "succeeded",
    stages: [{ name: "apply", result: "succeeded", ms: 12 }],
    summary: { created: 2, unchanged: 1 },
  });
  store.addEvent({
    env: "main",
    unit: "api",
    severity: "info",
    reason: "ReconciliationSucceeded",
    message: "ok",
  });
  store.addEvent({ env: "preview-x", unit: "api", severity: "error", reason: "BuildFailed", message: "bad" });
  const agent = new FakeAgent(store, config);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const log = pino({ level: "debug" }, sink);
  return {
    dir,
    store,
    agent,
    config,
    operator,
    viewer,
    log,
    logText: () => lines.join(""),
    cleanup: () => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
