/**
 * Nothing lost, at 50 kill points: an agent in its own process is SIGKILLed at a random moment
 * after each of 50 pushes (each push changes the Deployment and adds or removes a ConfigMap, so
 * kills land in fetches, renders, rolling updates and prunes). A final restart must converge to
 * the last commit with exactly the desired pods and objects, consistent inventories, every
 * interrupted run recorded, and a sound store. `SLUICE_KILL_POINTS` raises the count.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { defaultContainersConf } from "../src/targets/local/index.js";
import { eventually, fluxConfig, harness, httpText, webApp } from "./support/agent.js";

const child = fileURLToPath(new URL("./support/agent-child.ts", import.meta.url));
const KILLS = Number(process.env.SLUICE_KILL_POINTS ?? 50);
const ENV = "killpoints";
const PORT = 18496;

function pods(): string[] {
  const out = execFileSync(
    "podman",
    ["pod", "ps", "--filter", `label=sluice.dev/env=${ENV}`, "--format", "{{.Name}}"],
    {
      env: { ...process.env, CONTAINERS_CONF: defaultContainersConf() },
      encoding: "utf8",
    },
  );
  return out.split("\n").filter(Boolean);
}

const extra = (i: number) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra-${i}}\ndata: {i: "${i}"}\n`;

test(`${KILLS} kill -9 points across reconciles, rollouts and prunes; the restart converges`, {
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
  for (let i = 1; i <= KILLS; i++) {
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
  assert.equal(await httpText(PORT), `v${KILLS}`);
  assert.equal(pods().length, 2, `exactly the desired pods: ${pods().join(", ")}`);
  const want = [
    "Deployment/web",
    "Service/web",
    ...(KILLS % 2 === 1 ? [`ConfigMap/extra-${KILLS}`] : []),
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
    `kill points: ${KILLS}, interrupted runs recorded: ${interrupted}, runs in all: ${runs.length}\n`,
  );
});
