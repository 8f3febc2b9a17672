/**
 * A real agent for integration tests: real git served by `git http-backend`, the real local
 * podman target, a real SQLite store. Everything is labelled and removed after the test file.
 */

import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pino from "pino";
import { Agent, type AgentOptions } from "../../src/reconcile/index.js";
import { type GitServer, GitSource, startGitServer } from "../../src/source/index.js";
import { openStore, type Store } from "../../src/store/index.js";
import type { Target } from "../../src/targets/index.js";
import { createLocalTarget, type LocalTarget } from "../../src/targets/local/index.js";

export const WEB_IMAGE = "localhost/sluice/busybox:latest";

/** A Deployment of busybox httpd answering `message`, plus its Service on `port`. */
export function webApp(opts: {
  name: string;
  message: string;
  port: number | string;
  replicas?: number;
}): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${opts.name}}
spec:
  replicas: ${opts.replicas ?? 1}
  selector: {matchLabels: {app: ${opts.name}}}
  template:
    metadata: {labels: {app: ${opts.name}}}
    spec:
      containers:
        - name: web
          image: ${WEB_IMAGE}
          command: ["sh", "-c", "mkdir -p /www && echo ${opts.message} > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: ${opts.name}}
spec:
  selector: {app: ${opts.name}}
  ports:
    - port: ${opts.port}
      targetPort: 8080
`;
}

/**
 * The usual test configuration: GitRepository `app` (GIT_URL, filled in by the harness), one
 * Kustomization per unit (`name` → path `./name`), and main → environment `env` on `target`.
 */
export function fluxConfig(opts: {
  env: string;
  units: string[];
  target?: string;
  extra?: string;
  unitSpec?: string;
  sourceInterval?: string;
}): string {
  let out = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: ${opts.sourceInterval ?? "1h"}, ref: {branch: main}}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec: {sourceRef: {name: app}, rules: [{branch: main, name: ${opts.env}${opts.target ? `, target: ${opts.target}` : ""}}]}
`;
  for (const u of opts.units) {
    out += `---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: ${u}}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./${u}
  interval: 1h
  prune: true
  timeout: 60s
${opts.unitSpec ?? ""}`;
  }
  return out + (opts.extra ?? "");
}

/** A started agent on state directory `state` (config in `state/config`), on the local target. */
export async function openAgent(
  state: string,
  extra: Partial<AgentOptions> = {},
  wrap?: (local: LocalTarget) => Target,
) {
  const store = openStore(state);
  const local = await createLocalTarget({ stateDir: join(state, "local") });
  const target = wrap ? wrap(local) : local;
  const agent = new Agent({
    configPath: join(state, "config"),
    configRoot: join(state, "config"),
    store,
    source: new GitSource({ cacheDir: join(state, "git") }),
    target: () => target,
    log: pino({ level: "silent" }),
    concurrency: 2,
    backoff: { baseMs: 200, maxMs: 2000 },
    ...extra,
  });
  await agent.start();
  return {
    agent,
    store,
    local,
    stop: async () => {
      await agent.stop();
      await local.close();
      store.close();
    },
  };
}

export interface Harness {
  dir: string;
  server: GitServer;
  work: string;
  git(...args: string[]): Promise<string>;
  commitAndPush(files: Record<string, string>, branch: string, message?: string): Promise<string>;
  /** Writes the configuration (GIT_URL replaced) into the state directory; returns that directory. */
  writeConfig(config: string): string;
  startAgent(
    config: string,
    extra?: Partial<AgentOptions>,
    wrap?: (local: LocalTarget) => Target,
  ): Promise<{ agent: Agent; store: Store; local: LocalTarget; stop(): Promise<void> }>;
  cleanup(): Promise<void>;
}

const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@sluice.invalid",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@sluice.invalid",
};

export async function harness(repo: string, files: Record<string, string>): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-agent-"));
  const server = await startGitServer({ root: join(dir, "git") });
  await server.createRepo(repo, files, "main");
  const work = join(dir, "work");
  // Asynchronous on purpose: the Git server runs in this process and must keep answering.
  const run = promisify(execFile);
  await run("git", ["clone", "-q", server.repoUrl(repo), work], { env: gitEnv });
  const git = async (...args: string[]) =>
    (await run("git", args, { cwd: work, env: gitEnv, encoding: "utf8" })).stdout.trim();
  const agents: { stop(): Promise<void>; local: LocalTarget }[] = [];
  const writeConfig = (config: string) => {
    const state = join(dir, "state");
    mkdirSync(join(state, "config"), { recursive: true });
    writeFileSync(join(state, "config", "sluice.yaml"), config.replaceAll("GIT_URL", server.repoUrl(repo)));
    return state;
  };
  return {
    dir,
    server,
    work,
    git,
    async commitAndPush(changes, branch, message = "change") {
      await git("checkout", "-q", "-B", branch, `origin/${branch}`);
      for (const [p, c] of Object.entries(changes)) {
        mkdirSync(join(work, p, ".."), { recursive: true });
        if (c === "") rmSync(join(work, p), { force: true });
        else writeFileSync(join(work, p), c);
      }
      await git("add", "-A");
      await git("commit", "-q", "-m", message);
      await git("push", "-q", "origin", `HEAD:${branch}`);
      return git("rev-parse", "HEAD");
    },
    writeConfig,
    async startAgent(config, extra = {}, wrap) {
      const h = await openAgent(writeConfig(config), extra, wrap);
      agents.push(h);
      return h;
    },
    async cleanup() {
      for (const a of agents) {
        try {
          await a.stop();
        } catch {
          // already stopped
        }
      }
      // Remove every pod the agents made: every unit any environment ever had, from the store.
      const state = join(dir, "state");
      if (!existsSync(join(state, "sluice.db"))) {
        await server.stop();
        rmSync(dir, { recursive: true, force: true });
        return;
      }
      const store = openStore(state, { readOnly: true });
      const units = new Set<string>();
      for (const u of store.listUnitStatus()) units.add(`${u.env}\t${u.unit}`);
      for (const i of store.listInventories()) units.add(`${i.env}\t${i.unit}`);
      store.close();
      const local = await createLocalTarget({ stateDir: join(state, "local") });
      for (const key of units) {
        const [env, unit] = key.split("\t") as [string, string];
        await local.destroy({ env, unit }).catch(() => {});
      }
      await local.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `fn` until it returns a truthy value or the time is up. */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 60_000,
  explain?: () => unknown,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last ? `: ${(last as Error).message}` : "";
      throw new Error(
        `timed out waiting for ${what}${why}${explain ? `\n${JSON.stringify(explain(), null, 1)}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function httpText(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
  return (await r.text()).trim();
}
