/**
 * push-to-live (issues 3 and 4): time from `git push` to the new version answering on the local
 * target, through the whole real path: git http-backend → its push hook sends a signed GitHub
 * webhook to Sluice's API → the agent lists the branch, fetches, renders, applies a rolling update
 * of a 2-replica Deployment on podman, and the service proxy switches. No image build. No peer
 * runs here; their documented defaults are stated beside the result (Flux: GitRepository interval
 * 1m, Argo CD: 3m polling), both also accept webhooks.
 */
import { execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pino from "pino";
import { freePort } from "../../src/demo/index.js";
import { receiverPath } from "../../src/receivers/index.js";
import { Agent } from "../../src/reconcile/index.js";
import { createApiServer } from "../../src/server/index.js";
import { type GitServer, GitSource, startGitServer } from "../../src/source/index.js";
import { openStore, type Store } from "../../src/store/index.js";
import { createLocalTarget, ensureBaseImages, type LocalTarget } from "../../src/targets/local/index.js";
import { webApp } from "../../test/support/agent.js";
import type { Scenario } from "../lib/types.js";

const run = promisify(execFile);
const ENV = "bench-push";
const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "b",
  GIT_AUTHOR_EMAIL: "b@x",
  GIT_COMMITTER_NAME: "b",
  GIT_COMMITTER_EMAIL: "b@x",
};

interface State {
  server?: GitServer;
  agent?: Agent;
  store?: Store;
  local?: LocalTarget;
  api?: { close(): Promise<void> };
  work: string;
  port: number;
  n: number;
}
const s: State = { work: "", port: 0, n: 0 };

async function answer(port: number): Promise<string> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
    return (await r.text()).trim();
  } catch {
    return "";
  }
}

const scenario: Scenario = {
  name: "push-to-live",
  description:
    "A 2-replica busybox Deployment + Service on the local podman target, watched by `sluice serve`'s agent with a GitHub push webhook from the Git server's hook. Each sample: commit a new version, `git push`, poll the service until it answers with the new version. Peers (not run here): Flux polls a GitRepository every 1m by default, Argo CD every 3m; both take webhooks.",
  goal: {
    text: "median under 2 s from git push to the new version answering (issues 3, 4)",
    met: (r) => (r.sluice?.medianMs ?? Number.POSITIVE_INFINITY) < 2000,
  },
  pairs: 20,
  async available() {
    try {
      await run("podman", ["--version"]);
      return undefined;
    } catch {
      return "podman is not installed (scripts/setup.sh installs it)";
    }
  },
  async setup(ctx) {
    await ensureBaseImages();
    s.port = await freePort();
    const token = randomBytes(16).toString("hex");
    let hook = "";
    s.server = await startGitServer({
      root: join(ctx.dir, "git"),
      onPush: (_repo, refs) => {
        for (const r of refs) {
          const body = JSON.stringify({
            ref: r.ref,
            before: r.before,
            after: r.after,
            repository: { clone_url: s.server!.repoUrl("app") },
          });
          void fetch(hook, {
            method: "POST",
            headers: {
              "X-GitHub-Event": "push",
              "X-GitHub-Delivery": randomBytes(8).toString("hex"),
              "X-Hub-Signature-256": `sha256=${createHmac("sha256", token).update(body).digest("hex")}`,
              "Content-Type": "application/json",
            },
            body,
          }).catch(() => {});
        }
      },
    });
    await s.server.createRepo(
      "app",
      { "web/app.yaml": webApp({ name: "web", message: "v0", port: s.port, replicas: 2 }) },
      "main",
    );
    s.work = join(ctx.dir, "work");
    await run("git", ["clone", "-q", s.server.repoUrl("app"), s.work], { env: gitEnv });
    const state = join(ctx.dir, "state");
    mkdirSync(join(state, "config"), { recursive: true });
    writeFileSync(
      join(state, "config", "sluice.yaml"),
      `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: ${s.server.repoUrl("app")}, interval: 1h, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./web, interval: 1h, prune: true, timeout: 60s}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec: {sourceRef: {name: app}, rules: [{branch: main, name: ${ENV}}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: push}
spec: {type: github, events: [push], resources: [{kind: GitRepository, name: app}], secretRef: {name: hook}}
---
apiVersion: v1
kind: Secret
metadata: {name: hook}
stringData: {token: ${token}}
`,
    );
    s.store = openStore(state);
    s.local = await createLocalTarget({ stateDir: join(state, "local") });
    const local = s.local;
    s.agent = new Agent({
      configPath: join(state, "config"),
      configRoot: join(state, "config"),
      store: s.store,
      source: new GitSource({ cacheDir: join(state, "git") }),
      target: () => local,
      log: pino({ level: "silent" }),
    });
    await s.agent.start();
    const api = await createApiServer({ agent: s.agent, store: s.store, log: pino({ level: "silent" }) });
    s.api = api;
    hook = `${api.url}${receiverPath("flux-system", "push", token)}`;
    const deadline = Date.now() + 120_000;
    while ((await answer(s.port)) !== "v0") {
      if (Date.now() > deadline) throw new Error("the first version never answered");
      await new Promise((r) => setTimeout(r, 100));
    }
    ctx.log("v0 is live; pushing versions");
  },
  async warmup() {
    await scenario.sluice.run();
  },
  sluice: {
    label: "git push → new version answering (webhook, local target)",
    rss: "in-process:maxRSS",
    async run() {
      s.n++;
      const version = `v${s.n}`;
      writeFileSync(
        join(s.work, "web/app.yaml"),
        webApp({ name: "web", message: version, port: s.port, replicas: 2 }),
      );
      await run("git", ["commit", "-qam", version], { cwd: s.work, env: gitEnv });
      const t0 = performance.now();
      await run("git", ["push", "-q", "origin", "HEAD:main"], { cwd: s.work, env: gitEnv });
      const deadline = Date.now() + 60_000;
      while ((await answer(s.port)) !== version) {
        if (Date.now() > deadline) throw new Error(`${version} did not answer within 60 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const ms = performance.now() - t0;
      // Let the rollout finish (old pods removed) so samples do not overlap.
      const want = (await run("git", ["rev-parse", "HEAD"], { cwd: s.work })).stdout.trim();
      while (!s.store!.getUnitStatus(ENV, "web")?.lastAppliedRevision?.endsWith(want)) {
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      return { ms, rssKb: process.resourceUsage().maxRSS };
    },
  },
  async teardown() {
    await s.api?.close();
    await s.agent?.stop();
    if (s.local) {
      await s.local.destroy({ env: ENV, unit: "web" }).catch(() => {});
      await s.local.close();
    }
    s.store?.close();
    await s.server?.stop();
    Object.assign(s, {
      server: undefined,
      agent: undefined,
      store: undefined,
      local: undefined,
      api: undefined,
      n: 0,
    });
  },
};

export default scenario;
