/**
 * Fault-injection soak: the agent on the local target follows two branches (two environments)
 * of a Git server it reaches only through the fault proxy, while a pusher commits every 1–2 s
 * (each push rolls the Deployment and adds or prunes a ConfigMap, half of them announced by a
 * webhook call) and an injector switches random faults on and off — slow links, resets at once
 * or in the middle of an answer, dropped and refused connections, blackholes — for
 * `SLUICE_SOAK_SECONDS` (default 90). Then the faults stop and every environment must converge
 * to the last commit pushed to its branch: the right version answering, exactly the desired pods,
 * inventories without orphans or duplicates, no run left running, and a sound store. It prints
 * the faults survived.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { defaultContainersConf } from "../src/targets/local/index.js";
import { eventually, harness, httpText, webApp } from "./support/agent.js";
import { type FaultMode, type FaultOptions, startFaultProxy } from "./support/faultproxy.js";

const SOAK_SECONDS = Number(process.env.SLUICE_SOAK_SECONDS ?? 90);
const BRANCHES = [
  { branch: "main", env: "soak-main", port: 18635 },
  { branch: "staging", env: "soak-staging", port: 18636 },
] as const;

function pods(env: string): string[] {
  const out = execFileSync(
    "podman",
    ["pod", "ps", "--filter", `label=sluice.dev/env=${env}`, "--format", "{{.Name}}"],
    { env: { ...process.env, CONTAINERS_CONF: defaultContainersConf() }, encoding: "utf8" },
  );
  return out.split("\n").filter(Boolean);
}

const extra = (i: number) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra-${i}}\ndata: {i: "${i}"}\n`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(`soak: ${SOAK_SECONDS} s of pushes under random network faults; every environment converges`, {
  timeout: (SOAK_SECONDS + 420) * 1000,
}, async (t) => {
  let seed = 1234;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const app = (message: string) => webApp({ name: "web", message, port: "${PORT}", replicas: 1 });
  const h = await harness("soak", { "web/app.yaml": app("start") });
  await h.git("push", "-q", "origin", "main:staging");
  const proxy = await startFaultProxy({ targetPort: Number(new URL(h.server.url).port) });
  t.after(async () => {
    await proxy.close();
    await h.cleanup();
  });
  const config = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: ${proxy.url}/soak.git, interval: 1s, timeout: 3s}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec:
  sourceRef: {name: app}
  rules:
${BRANCHES.map((b) => `    - {branch: ${b.branch}, name: ${b.env}, vars: {PORT: "${b.port}"}}`).join("\n")}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./web
  interval: 1h
  retryInterval: 2s
  prune: true
  timeout: 60s
`;
  const { agent, store, local } = await h.startAgent(config, { backoff: { baseMs: 200, maxMs: 2000 } });
  for (const b of BRANCHES)
    await eventually(() => store.getUnitStatus(b.env, "web")?.ready === "True", `${b.env} Ready`, 120_000);

  // Each branch's last pushed commit and message, and which extra ConfigMap it holds.
  const last = new Map<string, { sha: string; message: string; extra: number | null }>(
    BRANCHES.map((b) => [b.branch, { sha: "", message: "start", extra: null }]),
  );
  const faults: Record<string, number> = {};
  let pushes = 0;
  let webhooks = 0;
  const deadline = Date.now() + SOAK_SECONDS * 1000;

  const pusher = (async () => {
    let i = 0;
    while (Date.now() < deadline) {
      i++;
      const b = random() < 0.65 ? BRANCHES[0] : BRANCHES[1];
      const state = last.get(b.branch)!;
      const message = `${b.branch}-v${i}`;
      const changes: Record<string, string> = { "web/app.yaml": app(message) };
      let nextExtra = state.extra;
      if (state.extra === null) {
        changes[`web/extra-${i}.yaml`] = extra(i);
        nextExtra = i;
      } else {
        changes[`web/extra-${state.extra}.yaml`] = "";
        nextExtra = null;
      }
      const sha = await h.commitAndPush(changes, b.branch, message);
      last.set(b.branch, { sha, message, extra: nextExtra });
      pushes++;
      if (random() < 0.5) {
        webhooks++;
        void agent.notifyPush({ sources: ["app"] }).catch(() => {});
      }
      await sleep(1000 + random() * 1000);
    }
  })();

  const injector = (async () => {
    const kinds: [string, FaultMode, FaultOptions][] = [
      ["delays", "delay", { delayMs: 300 }],
      ["long delays", "delay", { delayMs: 1200 }],
      ["resets", "reset", {}],
      ["mid-answer resets", "reset", { afterBytes: 300 }],
      ["blackholes", "blackhole", {}],
      ["refusals", "refuse", {}],
      ["drops", "drop", {}],
    ];
    // Every kind in turn, in a random order each round, so a short soak still meets them all.
    let round: typeof kinds = [];
    while (Date.now() < deadline) {
      if (round.length === 0) round = [...kinds].sort(() => random() - 0.5);
      const [name, mode, opts] = round.shift()!;
      await proxy.set(mode, opts);
      faults[name] = (faults[name] ?? 0) + 1;
      await sleep(1000 + random() * 3000);
      await proxy.set("pass");
      await sleep(1000 + random() * 2000);
    }
  })();

  await Promise.all([pusher, injector]);
  await proxy.set("pass");
  const soakEnded = Date.now();

  for (const b of BRANCHES) {
    const want = last.get(b.branch)!;
    await eventually(
      async () =>
        store.getUnitStatus(b.env, "web")?.ready === "True" &&
        store.getUnitStatus(b.env, "web")?.lastAppliedRevision === `${b.branch}@sha1:${want.sha}` &&
        (await httpText(b.port).catch(() => "")) === want.message,
      `${b.env} converges to the last commit of ${b.branch}`,
      240_000,
      () => [store.getUnitStatus(b.env, "web"), agent.listSources()],
    );
  }
  const convergedIn = (Date.now() - soakEnded) / 1000;
  // Old pods of a rollout finish terminating after the unit is Ready; give them a moment.
  for (const b of BRANCHES)
    await eventually(
      () => pods(b.env).length === 1,
      `exactly one pod in ${b.env}`,
      60_000,
      () => pods(b.env),
    );

  for (const b of BRANCHES) {
    const want = last.get(b.branch)!;
    const expected = [
      "Deployment/web",
      "Service/web",
      ...(want.extra !== null ? [`ConfigMap/extra-${want.extra}`] : []),
    ].sort();
    const inv = store
      .getInventory(b.env, "web")!
      .refs.map((r) => `${r.kind}/${r.name}`)
      .sort();
    const targetInv = (await local.inventory({ env: b.env, unit: "web" }))!.entries
      .map((r) => `${r.kind}/${r.name}`)
      .sort();
    assert.deepEqual(inv, expected, `${b.env}: store inventory, nothing orphaned or duplicated`);
    assert.deepEqual(targetInv, expected, `${b.env}: target inventory agrees`);
    assert.equal(store.getEnvironment(b.env)?.state, "active", `${b.env} never destroyed by an outage`);
  }
  const runs = store.listRuns({ limit: 100_000 });
  assert.equal(runs.filter((r) => r.result === "running").length, 0, "no run left running");
  assert.deepEqual(store.integrityCheck(), []);
  assert.ok(agent.started);
  assert.ok(Object.values(faults).reduce((a, b) => a + b, 0) > 0);

  const episodes = Object.entries(faults)
    .map(([k, n]) => `${n} ${k}`)
    .join(", ");
  const failed = runs.filter((r) => r.result === "failed").length;
  const faulted = Object.entries(proxy.counts)
    .filter(([k]) => k !== "pass")
    .reduce((a, [, n]) => a + n, 0);
  process.stdout.write(
    `faults survived: ${episodes} (${faulted} connections faulted); soak ${SOAK_SECONDS} s, ${pushes} pushes (${webhooks} webhooks), ${runs.length} runs (${failed} failed), converged ${convergedIn.toFixed(1)} s after the faults stopped\n`,
  );
});
