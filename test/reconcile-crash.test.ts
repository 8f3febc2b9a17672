/**
 * `kill -9` of the agent in the middle of an apply, then a restart: the environment converges,
 * the interrupted run is recorded as interrupted, inventories agree, and no pod is duplicated.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { openStore } from "../src/store/index.js";
import { defaultContainersConf } from "../src/targets/local/index.js";
import { eventually, fluxConfig, harness, httpText, webApp } from "./support/agent.js";

const child = fileURLToPath(new URL("./support/agent-child.ts", import.meta.url));

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

const config = fluxConfig({ env: "crash", units: ["web"] });

test("kill -9 mid-apply, restart: converges with no duplicates and the run marked interrupted", async (t) => {
  const h = await harness("app", {
    "web/app.yaml": webApp({ name: "web", message: "one", port: 18490, replicas: 2 }),
  });
  t.after(() => h.cleanup());
  const state = h.writeConfig(config);
  const proc = spawn(process.execPath, ["--import", "tsx", child, state], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise((r) => proc.once("exit", r));
  // Kill it once the apply has started: a run is open and at least one pod exists.
  await eventually(
    () => {
      const ro = openStore(state, { readOnly: true });
      try {
        return (
          ro.listRuns({ env: "crash", unit: "web", result: "running" }).length > 0 &&
          podsOf("crash").length > 0
        );
      } finally {
        ro.close();
      }
    },
    "the apply to start",
    60_000,
  );
  proc.kill("SIGKILL");
  await exited;

  const { store, local } = await h.startAgent(config);
  await eventually(
    () => store.getUnitStatus("crash", "web")?.ready === "True",
    "Ready after restart",
    90_000,
  );
  assert.equal(await httpText(18490), "one");
  const runs = store.listRuns({ env: "crash", unit: "web" });
  assert.ok(
    runs.some((r) => r.result === "interrupted"),
    `runs: ${runs.map((r) => r.result).join(",")}`,
  );
  assert.ok(runs.some((r) => r.result === "succeeded"));
  assert.equal(podsOf("crash").length, 2, "exactly the two replicas, no duplicates");
  const inv = store.getInventory("crash", "web")!;
  const targetInv = await local.inventory({ env: "crash", unit: "web" });
  assert.deepEqual(
    inv.refs.map((r) => `${r.kind}/${r.name}`).sort(),
    targetInv!.entries.map((r) => `${r.kind}/${r.name}`).sort(),
  );
  assert.deepEqual(store.integrityCheck(), []);
});
