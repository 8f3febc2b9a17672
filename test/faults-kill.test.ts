/**
 * Nothing lost, at 50 kill points: an agent in its own process is SIGKILLed at a random moment
 * after each push or registry change, and a final restart must converge with nothing lost,
 * doubled or orphaned and a sound store. The kill points are split three ways:
 *
 * - reconciles (60%): each push changes the Deployment and adds or removes a ConfigMap, so kills
 *   land in fetches, renders, rolling updates and prunes; exactly the desired pods and objects,
 *   consistent inventories, every interrupted run recorded;
 * - image-update commits (20%): `sluice serve` (whose automation working copy persists in the state
 *   directory) is killed with its whole process group, git included, after each new tag in a real
 *   registry (and, every third round, someone else's push), so kills land in scans, clones,
 *   commits, rebases and pushes of an ImageUpdateAutomation — plus one kill made certain while git
 *   holds its index lock; no commit is lost (everyone's commits are on the branch) or doubled (each
 *   automation commit moves the image to a newer tag), and the last tag is deployed;
 * - blue/green rollouts (20%): each push is a new candidate slot, smoke-tested and switched, so
 *   kills land between slot, check and switch; the right version serves from one slot.
 *
 * `SLUICE_KILL_POINTS` raises the total (the split stays the same).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Registry, startRegistry } from "../src/demo/index.js";
import { defaultContainersConf } from "../src/targets/local/index.js";
import { eventually, fluxConfig, harness, httpText, webApp } from "./support/agent.js";
import { pushTags } from "./support/registries.js";

const child = fileURLToPath(new URL("./support/agent-child.ts", import.meta.url));
const KILLS = Number(process.env.SLUICE_KILL_POINTS ?? 50);
const IMAGE_KILLS = Math.max(5, Math.round(KILLS / 5));
const ROLLOUT_KILLS = Math.max(5, Math.round(KILLS / 5));
const RECONCILE_KILLS = Math.max(5, KILLS - IMAGE_KILLS - ROLLOUT_KILLS);
const ENV = "killpoints";
const PORT = 18496;

function podsOf(env: string): string[] {
  const out = execFileSync(
    "podman",
    ["pod", "ps", "--filter", `label=sluice.dev/env=${env}`, "--format", "{{.Name}}"],
    {
      env: { ...process.env, CONTAINERS_CONF: defaultContainersConf() },
      encoding: "utf8",
    },
  );
  return out.split("\n").filter(Boolean);
}

const pods = () => podsOf(ENV);

/** Starts an agent child on `state` and SIGKILLs it after `ms`; resolves with its pid once dead. */
async function killAfter(state: string, ms: number): Promise<number> {
  const proc = spawn(process.execPath, ["--import", "tsx", child, state], { stdio: "ignore" });
  const exited = new Promise((r) => proc.once("exit", r));
  await new Promise((r) => setTimeout(r, ms));
  proc.kill("SIGKILL");
  await exited;
  return proc.pid ?? 0;
}

const cli = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));

/**
 * Starts `sluice serve` on `state` (config in `state/config`) in its own process group and
 * SIGKILLs the whole group after `ms` — the agent and the git, kustomize and podman processes it
 * runs, as when a container or machine dies — so their locks and half-written files stay behind.
 */
async function killServeAfter(state: string, ms: number): Promise<void> {
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      cli,
      "serve",
      "--config",
      join(state, "config"),
      "--state-dir",
      state,
      "--listen",
      "127.0.0.1:0",
    ],
    { stdio: "ignore", detached: true, env: { ...process.env, SLUICE_LOG_LEVEL: "silent" } },
  );
  const exited = new Promise((r) => proc.once("exit", r));
  await new Promise((r) => setTimeout(r, ms));
  if (proc.pid !== undefined) process.kill(-proc.pid, "SIGKILL");
  await exited;
}

function lcg(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

const extra = (i: number) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra-${i}}\ndata: {i: "${i}"}\n`;

test(`${RECONCILE_KILLS} kill -9 points across reconciles, rolling updates and prunes; the restart converges`, {
  timeout: 15 * 60_000,
}, async (t) => {
  const h = await harness("app", {
    "web/app.yaml": webApp({ name: "web", message: "v0", port: PORT, replicas: 2 }),
  });
  t.after(() => h.cleanup());
  const config = fluxConfig({ env: ENV, units: ["web"], sourceInterval: "1s" });
  const state = h.writeConfig(config);
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  let head = "";
  for (let i = 1; i <= RECONCILE_KILLS; i++) {
    // Every push changes the pods (a rollout); every other push adds an object, the next prunes it.
    const changes: Record<string, string> = {
      "web/app.yaml": webApp({ name: "web", message: `v${i}`, port: PORT, replicas: 2 }),
    };
    if (i % 2 === 1) changes[`web/extra-${i}.yaml`] = extra(i);
    else changes[`web/extra-${i - 1}.yaml`] = "";
    head = await h.commitAndPush(changes, "main", `v${i}`);
    const proc = spawn(process.execPath, ["--import", "tsx", child, state], { stdio: "ignore" });
    const exited = new Promise((r) => proc.once("exit", r));
    await new Promise((r) => setTimeout(r, 300 + random() * 2500));
    proc.kill("SIGKILL");
    await exited;
  }

  const { store, local } = await h.startAgent(config);
  await eventually(
    () =>
      store.getUnitStatus(ENV, "web")?.ready === "True" &&
      store.getUnitStatus(ENV, "web")?.lastAppliedRevision === `main@sha1:${head}`,
    "convergence to the last commit",
    180_000,
    () => store.getUnitStatus(ENV, "web"),
  );
  assert.equal(await httpText(PORT), `v${RECONCILE_KILLS}`);
  assert.equal(pods().length, 2, `exactly the desired pods: ${pods().join(", ")}`);
  const want = [
    "Deployment/web",
    "Service/web",
    ...(RECONCILE_KILLS % 2 === 1 ? [`ConfigMap/extra-${RECONCILE_KILLS}`] : []),
  ].sort();
  const inv = store
    .getInventory(ENV, "web")!
    .refs.map((r) => `${r.kind}/${r.name}`)
    .sort();
  const targetInv = (await local.inventory({ env: ENV, unit: "web" }))!.entries
    .map((r) => `${r.kind}/${r.name}`)
    .sort();
  assert.deepEqual(inv, want, "store inventory: nothing orphaned, nothing duplicated");
  assert.deepEqual(targetInv, want, "target inventory agrees");
  const runs = store.listRuns({ env: ENV, unit: "web", limit: 10_000 });
  assert.equal(runs.filter((r) => r.result === "running").length, 0);
  const interrupted = runs.filter((r) => r.result === "interrupted").length;
  assert.ok(interrupted > 0, "kills landed in the middle of runs and were recorded");
  assert.deepEqual(store.integrityCheck(), []);
  process.stdout.write(
    `kill points (reconciles): ${RECONCILE_KILLS}, interrupted runs recorded: ${interrupted}, runs in all: ${runs.length}\n`,
  );
});

test(`${IMAGE_KILLS} kill -9 points in image-update commits; no commit lost or doubled`, {
  timeout: 10 * 60_000,
}, async (t) => {
  const env = "killimages";
  const data = mkdtempSync(join(tmpdir(), "sluice-kill-registry-"));
  const registry: Registry = await startRegistry({ dataDir: data });
  await pushTags(registry.url, "web", ["1.0.0"]);
  const marked = (tag: string) =>
    `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: image}\ndata:\n  image: ${registry.host}/web:${tag} # {"$imagepolicy": "flux-system:web"}\n`;
  const h = await harness("imgkill", { "conf/image.yaml": marked("1.0.0") });
  t.after(async () => {
    await h.cleanup();
    await registry.stop();
    rmSync(data, { recursive: true, force: true });
  });
  const config = `${fluxConfig({ env, units: ["conf"], sourceInterval: "1s" })}---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: web}
spec: {image: "${registry.host}/web", interval: 1s, insecure: true}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: web}
spec:
  imageRepositoryRef: {name: web}
  policy: {semver: {range: ">=1.0.0"}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata: {name: web}
spec:
  interval: 1s
  sourceRef: {kind: GitRepository, name: app}
  git:
    checkout: {ref: {branch: main}}
    commit:
      author: {name: fluxcdbot, email: fluxcdbot@users.noreply.github.com}
      messageTemplate: "image update"
    push: {branch: main}
  update: {path: ./conf, strategy: Setters}
`;
  const state = h.writeConfig(config);
  const random = lcg(7);
  const notes: string[] = [];
  for (let i = 1; i <= IMAGE_KILLS; i++) {
    await pushTags(registry.url, "web", [`1.0.${i}`]);
    // Someone else pushes too: the automation must rebase onto it, never push it away.
    if (i % 3 === 0) {
      for (let attempt = 1; ; attempt++) {
        await h.git("fetch", "-q", "origin");
        try {
          notes.push(await h.commitAndPush({ [`notes/${i}.txt`]: `note ${i}\n` }, "main", `note ${i}`));
          break;
        } catch (e) {
          if (attempt >= 5) throw e; // the automation pushed in between: fetch and try again
        }
      }
    }
    // `sluice serve` keeps the automation's working copy in the state directory across restarts.
    await killServeAfter(state, 1500 + random() * 4000);
  }

  // One more kill point, made certain: the machine dies while git holds the working copy's index
  // lock (random kills rarely land in those milliseconds). The lock file stays behind.
  const workDir = join(state, "automation");
  for (const d of existsSync(workDir) ? readdirSync(workDir) : [])
    if (existsSync(join(workDir, d, ".git"))) writeFileSync(join(workDir, d, ".git", "index.lock"), "");
  // …and a newer image, which only the restarted agent can commit.
  const final = IMAGE_KILLS + 1;
  await pushTags(registry.url, "web", [`1.0.${final}`]);
  const last = `1.0.${final}`;
  const { store } = await h.startAgent(config, { workDir });
  await h.git("fetch", "-q", "origin");
  const head = await eventually(
    async () => {
      await h.git("fetch", "-q", "origin");
      const text = await h.git("show", "origin/main:conf/image.yaml");
      return text.includes(`web:${last} `) ? h.git("rev-parse", "origin/main") : undefined;
    },
    `the last tag ${last} committed`,
    120_000,
  );
  await eventually(
    () => store.getUnitStatus(env, "conf")?.lastAppliedRevision === `main@sha1:${head}`,
    "the environment runs the last commit",
    120_000,
    () => store.getUnitStatus(env, "conf"),
  );
  // Nothing lost: every other push is still on the branch.
  for (const n of notes) await h.git("merge-base", "--is-ancestor", n, "origin/main");
  // Nothing doubled: each automation commit moves the image to a strictly newer tag.
  const commits = (await h.git("log", "--format=%H %an", "origin/main"))
    .split("\n")
    .filter((l) => l.endsWith(" fluxcdbot"))
    .map((l) => l.split(" ")[0]!)
    .reverse();
  const tags: number[] = [];
  for (const c of commits) {
    const diff = await h.git("show", "--format=", "--unified=0", c, "--", "conf/image.yaml");
    const to = /^\+ {2}image: .*web:1\.0\.(\d+) /m.exec(diff);
    assert.ok(to, `automation commit ${c.slice(0, 10)} changes the image: ${diff}`);
    tags.push(Number(to[1]));
  }
  assert.ok(tags.length >= 1 && tags.length <= final, `${tags.length} automation commits`);
  for (let i = 1; i < tags.length; i++)
    assert.ok(tags[i]! > tags[i - 1]!, `doubled or backwards: ${tags.join(", ")}`);
  assert.equal(tags.at(-1), final);
  const runs = store.listRuns({ env, limit: 10_000 });
  assert.equal(runs.filter((r) => r.result === "running").length, 0);
  assert.deepEqual(store.integrityCheck(), []);
  process.stdout.write(
    `kill points (image updates): ${IMAGE_KILLS}, automation commits: ${tags.length} (tags ${tags.join(", ")}), other pushes kept: ${notes.length}\n`,
  );
});

test(`${ROLLOUT_KILLS} kill -9 points in blue/green rollouts; the restart serves the last version from one slot`, {
  timeout: 10 * 60_000,
}, async (t) => {
  const env = "killrollouts";
  const port = 18497;
  const manifests = (v: string) => `${webApp({ name: "web", message: v, port, replicas: 1 })}---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  workloadRef: {name: web}
  service: {name: web, port: ${port}}
  smokeTest: web-smoke
  strategy:
    blueGreen: {previewService: web-preview, autoPromote: true, scaleDownDelay: 2s}
---
apiVersion: sluice.dev/v1alpha1
kind: SmokeTest
metadata: {name: web-smoke}
spec:
  service: {name: web-preview, port: ${port}}
  checks:
    - {name: answers, http: {path: /, expect: {status: 200, contains: "${v}"}}}
`;
  const h = await harness("rokill", { "web/app.yaml": manifests("r0") });
  t.after(() => h.cleanup());
  const config = fluxConfig({ env, units: ["web"], sourceInterval: "1s" });
  const state = h.writeConfig(config);
  const random = lcg(99);
  let head = "";
  for (let i = 1; i <= ROLLOUT_KILLS; i++) {
    head = await h.commitAndPush({ "web/app.yaml": manifests(`r${i}`) }, "main", `r${i}`);
    // A switch takes seconds (new slot, smoke test, traffic): kill anywhere in it.
    await killAfter(state, 1000 + random() * 4000);
  }

  const { agent, store, local } = await h.startAgent(config);
  await eventually(
    async () =>
      store.getUnitStatus(env, "web")?.ready === "True" &&
      store.getUnitStatus(env, "web")?.lastAppliedRevision === `main@sha1:${head}` &&
      (await httpText(port).catch(() => "")) === `r${ROLLOUT_KILLS}`,
    "the last version serves",
    240_000,
    () => [store.getUnitStatus(env, "web"), agent.rolloutStatus(env)],
  );
  // The standby slot scales down after its delay: one pod, one slot.
  await eventually(
    () => podsOf(env).length === 1,
    "exactly one pod",
    90_000,
    () => podsOf(env),
  );
  const inv = store.getInventory(env, "web")!.refs.map((r) => `${r.kind}/${r.name}`);
  const targetInv = (await local.inventory({ env, unit: "web" }))!.entries.map((r) => `${r.kind}/${r.name}`);
  assert.equal(new Set(inv).size, inv.length, `no duplicates: ${inv.join(", ")}`);
  assert.deepEqual([...inv].sort(), [...targetInv].sort(), "target inventory agrees");
  // The live agent requeues the unit (the standby's scale-down): let it finish, then no run may
  // be left running — the killed agents' ones were all marked interrupted.
  await agent.idle();
  const runs = store.listRuns({ env, unit: "web", limit: 10_000 });
  assert.equal(runs.filter((r) => r.result === "running").length, 0);
  assert.deepEqual(store.integrityCheck(), []);
  const interrupted = runs.filter((r) => r.result === "interrupted").length;
  assert.ok(interrupted > 0, "kills landed in the middle of rollouts and were recorded");
  process.stdout.write(
    `kill points (rollouts): ${ROLLOUT_KILLS}, interrupted runs recorded: ${interrupted}\n`,
  );
});
