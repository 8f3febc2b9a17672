/**
 * `sluice demo`: the whole job on one machine. Brings up, on 127.0.0.1 only, a Git server with the
 * example repository (branches main and staging), a real OCI registry, the image built from the
 * example's Containerfile and tagged by the seed's rule, and the real reconciler (`sluice serve`
 * in-process) deploying main → production and staging → staging on the local podman target. The
 * Git server calls Sluice's push webhook (a signed GitHub payload) after every push, so a push is
 * live in seconds. Smoke tests (the seed's test.sh) run after each deploy and are printed.
 *
 * Everything it starts is recorded in `<state>/demo.json`; Ctrl-C, SIGTERM or `sluice demo down`
 * stops it and removes every pod, port and process it made.
 */
import { execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import pino from "pino";
import { buildImage, imageTags } from "../builds/index.js";
import { type Running, startServe } from "../cli/serve.js";
import { SluiceError } from "../core/index.js";
import { receiverPath } from "../receivers/index.js";
import { type GitServer, startGitServer } from "../source/index.js";
import { ensureBaseImages, Podman } from "../targets/local/index.js";
import { type Registry, startRegistry } from "./registry.js";

const run = promisify(execFile);
const APP = "replace-api";
const ENVS = [
  { name: "production", branch: "main" },
  { name: "staging", branch: "staging" },
];

export interface DemoOptions {
  stateDir: string;
  /** The example to deploy (examples/replace-api). */
  exampleDir: string;
  listen?: string;
  say?: (line: string) => void;
}

export interface Demo {
  apiUrl: string;
  gitUrl: string;
  registry: string;
  /** Working clone with push access, for trying changes: `git -C <workdir> push`. */
  workdir: string;
  urls: Record<string, string>;
  running: Running;
  stop(): Promise<void>;
}

const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "Sluice Demo",
  GIT_AUTHOR_EMAIL: "demo@sluice.invalid",
  GIT_COMMITTER_NAME: "Sluice Demo",
  GIT_COMMITTER_EMAIL: "demo@sluice.invalid",
  GIT_TERMINAL_PROMPT: "0",
};

async function git(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await run("git", args, { cwd, env: gitEnv, timeout: 60_000 });
  return stdout.trim();
}

/** Files of the example that belong in its repository (no tests, no build output). */
function exampleFiles(dir: string, out: string): void {
  cpSync(dir, out, {
    recursive: true,
    filter: (src) => !/(^|\/)(node_modules|dist)(\/|$)|\.test\.ts$/.test(src.slice(dir.length)),
  });
}

export async function startDemo(opts: DemoOptions): Promise<Demo> {
  const say = opts.say ?? ((l: string) => process.stderr.write(`${l}\n`));
  const state = resolve(opts.stateDir);
  const pidFile = join(state, "demo.json");
  if (existsSync(pidFile)) {
    const prev = JSON.parse(readFileSync(pidFile, "utf8")) as { pid: number };
    if (isAlive(prev.pid))
      throw new SluiceError(
        "Locked",
        `a demo is already running (pid ${prev.pid}); stop it with \`sluice demo down\``,
      );
  }
  rmSync(state, { recursive: true, force: true });
  mkdirSync(state, { recursive: true });
  writeFileSync(pidFile, JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }));

  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        say(`  (clean-up: ${(e as Error).message})`);
      }
    }
    rmSync(pidFile, { force: true });
  };
  try {
    say("==> base images (podman)");
    await ensureBaseImages({ log: (m: string) => say(`    ${m}`) });

    say("==> OCI registry (docker-registry)");
    const registry: Registry = await startRegistry({ dataDir: join(state, "registry") });
    cleanups.push(() => registry.stop());
    say(`    ${registry.url}`);
    // Plain HTTP on loopback: tell podman (only through Sluice's own environment) it may use it.
    const regConf = join(state, "registries.conf");
    writeFileSync(regConf, `[[registry]]\nlocation = "${registry.host}"\ninsecure = true\n`);
    process.env.CONTAINERS_REGISTRIES_CONF = regConf;

    say("==> Git server (git http-backend)");
    let onPush: (repo: string, refs: { ref: string; before: string; after: string }[]) => void = () => {};
    const server: GitServer = await startGitServer({
      root: join(state, "git-server"),
      onPush: (r, refs) => onPush(r, refs),
    });
    cleanups.push(() => server.stop());
    const gitUrl = server.repoUrl(APP);
    say(`    ${gitUrl}`);

    // The example repository: main with the app, staging branched from it.
    const seedDir = join(state, "seed");
    exampleFiles(resolve(opts.exampleDir), seedDir);
    const files: Record<string, string> = {};
    collectFiles(seedDir, "", files);
    await server.createRepo(APP, files, "main");
    const workdir = join(state, "work");
    await git(state, ["clone", "-q", gitUrl, workdir]);
    const buildCommit = await git(workdir, ["rev-parse", "HEAD"]);

    say("==> image build (seed rule: first 10 characters of the commit)");
    await build({
      entryPoints: [join(workdir, "app", "server.ts")],
      outfile: join(workdir, "dist", "server.mjs"),
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "warning",
    });
    const podman = new Podman();
    const repository = `${registry.host}/${APP}`;
    const tags = imageTags({ commit: buildCommit });
    const built = await buildImage(podman, {
      contextDir: workdir,
      repository,
      tags,
      push: true,
      tlsVerify: false,
      onProgress: (l) => say(`    ${l}`),
    });
    say(`    built and pushed ${built.images.join(", ")} in ${(built.ms / 1000).toFixed(1)} s`);

    // What image automation does: record the new image in Git, on every environment branch.
    const rootVars = JSON.parse(readFileSync(join(workdir, "replace.json"), "utf8")) as Record<
      string,
      unknown
    >;
    rootVars.IMAGE_URL = `${repository}:${tags[0]}`;
    writeFileSync(join(workdir, "replace.json"), `${JSON.stringify(rootVars, null, 2)}\n`);
    await git(workdir, ["commit", "-qam", `Deploy image ${repository}:${tags[0]}`]);
    await git(workdir, ["push", "-q", "origin", "main"]);
    await git(workdir, ["push", "-q", "origin", "main:staging"]);

    say("==> sluice serve");
    const token = randomBytes(24).toString("hex");
    const configDir = join(state, "config");
    mkdirSync(configDir, { recursive: true });
    const apps = readFileSync(join(seedDir, "sluice", "apps.yaml"), "utf8").replace(
      /url: .*/,
      `url: ${gitUrl}`,
    );
    writeFileSync(join(configDir, "apps.yaml"), apps);
    writeFileSync(
      join(configDir, "receiver.yaml"),
      [
        "apiVersion: notification.toolkit.fluxcd.io/v1",
        "kind: Receiver",
        "metadata: {name: git-push, namespace: flux-system}",
        "spec:",
        "  type: github",
        "  events: [push]",
        "  resources: [{kind: GitRepository, name: replace-api}]",
        "  secretRef: {name: webhook-token}",
        "---",
        "apiVersion: v1",
        "kind: Secret",
        "metadata: {name: webhook-token, namespace: flux-system}",
        `stringData: {token: ${token}}`,
        "",
      ].join("\n"),
    );
    const log = pino(
      { level: process.env.SLUICE_LOG_LEVEL ?? "warn" },
      pino.destination({ dest: join(state, "sluice.log"), sync: false }),
    );
    const running = await startServe({
      config: configDir,
      stateDir: join(state, "agent"),
      listen: opts.listen ?? "127.0.0.1:0",
      log,
      onCheck: (env, _unit, line) => say(`    [${env}] ${line}`),
    });
    cleanups.push(async () => {
      // Remove what the environments run, then stop the agent.
      for (const e of ENVS)
        for (const u of running.agent.unitsOf(e.name)) await running.local?.destroy({ env: e.name, unit: u });
      await running.stop();
    });
    const hook = `${running.url}${receiverPath("flux-system", "git-push", token)}`;
    onPush = (_repo, refs) => void sendGithubPush(hook, token, gitUrl, refs);

    say("==> waiting for production and staging to be deployed and pass their smoke tests");
    await waitReady(
      running,
      ENVS.map((e) => e.name),
      8 * 60_000,
      say,
    );
    const urls: Record<string, string> = {};
    for (const e of ENVS) {
      const addr = running.local?.serviceAddress({ env: e.name, unit: APP }, `${APP}-${e.name}`, APP);
      if (addr) urls[e.name] = `http://${addr.host}:${addr.port}`;
    }
    return { apiUrl: running.url, gitUrl, registry: registry.url, workdir, urls, running, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

function collectFiles(dir: string, prefix: string, out: Record<string, string>): void {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    const rel = prefix ? `${prefix}/${ent.name}` : ent.name;
    if (ent.isDirectory()) collectFiles(p, rel, out);
    else out[rel] = readFileSync(p, "utf8");
  }
}

async function sendGithubPush(
  hook: string,
  token: string,
  repoUrl: string,
  refs: { ref: string; before: string; after: string }[],
): Promise<void> {
  for (const r of refs) {
    const body = JSON.stringify({
      ref: r.ref,
      before: r.before,
      after: r.after,
      repository: { name: APP, full_name: `demo/${APP}`, clone_url: repoUrl, html_url: repoUrl },
      pusher: { name: "demo" },
    });
    const sig = `sha256=${createHmac("sha256", token).update(body).digest("hex")}`;
    try {
      await fetch(hook, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "X-GitHub-Event": "push",
          "X-GitHub-Delivery": randomBytes(16).toString("hex"),
          "X-Hub-Signature-256": sig,
        },
        body,
        signal: AbortSignal.timeout(10_000),
      });
    } catch {
      // The agent also polls; a lost webhook only costs latency.
    }
  }
}

async function waitReady(
  running: Running,
  envs: string[],
  timeoutMs: number,
  say: (l: string) => void,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Map<string, string>();
  for (;;) {
    const units = running.agent.listUnits().filter((u) => envs.includes(u.env));
    for (const u of units) {
      const line = `${u.ready === "True" ? "ready" : u.reason}: ${u.message}`;
      if (seen.get(`${u.env}/${u.unit}`) !== line) {
        seen.set(`${u.env}/${u.unit}`, line);
        say(`    [${u.env}] ${u.unit} ${line}`);
      }
    }
    if (envs.every((e) => units.some((u) => u.env === e && u.ready === "True"))) return;
    if (Date.now() > deadline) {
      throw new SluiceError(
        "HealthCheckFailed",
        `the demo environments were not ready within ${timeoutMs / 1000} s`,
        {
          hint: "see .sluice/demo/sluice.log and `podman ps -a`",
        },
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `sluice demo down`: stops a demo running in another terminal, and waits for it. */
export async function stopDemo(stateDir: string, say: (l: string) => void): Promise<boolean> {
  const pidFile = join(resolve(stateDir), "demo.json");
  if (!existsSync(pidFile)) return false;
  const { pid } = JSON.parse(readFileSync(pidFile, "utf8")) as { pid: number };
  if (!isAlive(pid)) {
    rmSync(pidFile, { force: true });
    return false;
  }
  say(`stopping the demo (pid ${pid})…`);
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 120_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  return !isAlive(pid);
}
