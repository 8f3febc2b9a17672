/**
 * The demo end to end, through the real reconciler: Git server, docker-registry, podman build and
 * push, sluice serve with webhooks, production and staging on the local target. Then a push to
 * staging that changes behaviour goes live on staging only, while clients of both environments
 * see no failed request, and stopping the demo leaves nothing behind.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startDemo } from "../src/demo/index.js";
import { defaultContainersConf } from "../src/targets/local/index.js";
import { eventually } from "./support/agent.js";
import { ensureWebBuilt, launchBrowser, signedInContext, watchPage } from "./support/dashboard.js";

const run = promisify(execFile);
const example = fileURLToPath(new URL("../examples/replace-api", import.meta.url));
const CASE1 = "The analysts of ABN did a great job!";
const CASE2 =
  "Abn is one of the largest banks in Netherlands. aBN amro's annual budget is ... ING is a global organization. InG Bank is in fortune 500 companies. VolksBank , TriodoS and raBo are anothers as aBn";
const WANT2 =
  "ABN Amro is one of the largest banks in Netherlands. ABN Amro's annual budget is ... ING Bank is a global organization. ING Bank is in fortune 500 companies. de Volksbank , Triodos Bank and Rabobank are anothers as ABN Amro";

async function replace(url: string, text: string): Promise<string> {
  const r = await fetch(`${url}/api/replace`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ test: text }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(r.status, 200);
  return ((await r.json()) as { result: string }).result;
}

/** Sends requests back to back until stopped; counts failures. */
function hammer(url: string) {
  let stop = false;
  const stats = { ok: 0, failed: 0, errors: [] as string[] };
  const done = (async () => {
    while (!stop) {
      try {
        const r = await fetch(`${url}/api/replace`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ test: "ING" }),
          signal: AbortSignal.timeout(5000),
        });
        await r.text();
        if (r.status === 200) stats.ok++;
        else {
          stats.failed++;
          stats.errors.push(`status ${r.status}`);
        }
      } catch (e) {
        stats.failed++;
        stats.errors.push((e as Error).message);
      }
    }
  })();
  return {
    stats,
    stop: async () => {
      stop = true;
      await done;
      return stats;
    },
  };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

test("the demo: seed cases, a staging-only push with zero failed requests, and a clean stop", async (t) => {
  const state = mkdtempSync(join(tmpdir(), "sluice-demo-"));
  t.after(() => rmSync(state, { recursive: true, force: true }));
  const lines: string[] = [];
  const demo = await startDemo({
    stateDir: state,
    exampleDir: example,
    listen: "127.0.0.1:0",
    say: (l) => lines.push(l),
  });
  let stopped = false;
  t.after(async () => {
    if (!stopped) await demo.stop();
  });
  const prod = demo.urls.production!;
  const staging = demo.urls.staging!;
  assert.ok(prod && staging, `urls: ${JSON.stringify(demo.urls)}`);
  assert.ok(
    lines.some((l) => /\[production\] ✓ every bank name is normalised/.test(l)),
    "the smoke tests ran and were printed",
  );

  // The seed's two cases, exactly.
  assert.equal(await replace(prod, CASE1), "The analysts of ABN Amro did a great job!");
  assert.equal(await replace(prod, CASE2), WANT2);
  assert.equal(await replace(staging, CASE2), WANT2);

  // The dashboard of the running demo, in Chromium: both environments Healthy, a viewer sees no actions.
  ensureWebBuilt();
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await (
    await signedInContext(browser, demo.running.store.addToken("demo-viewer", "viewer"))
  ).newPage();
  const problems = watchPage(page);
  await page.goto(`${demo.apiUrl}/`);
  for (const env of ["production", "staging"])
    await eventually(
      async () =>
        (await page.locator(`tr[data-env="${env}"] td[data-unit="replace-api"]`).textContent())?.includes(
          "Healthy",
        ),
      `${env} Healthy on the dashboard`,
      60_000,
    );
  assert.equal(await page.getByRole("button", { name: /Roll back|Reconcile|Promote/ }).count(), 0);
  assert.deepEqual(problems.problems, []);
  await browser.close();

  // A push to staging that changes behaviour (a new bank: Bunq → bunq Bank). Both environments are under load.
  const prodLoad = hammer(prod);
  const stagingLoad = hammer(staging);
  const git = (...args: string[]) =>
    run("git", args, {
      cwd: demo.workdir,
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: "t",
        GIT_AUTHOR_EMAIL: "t@x",
        GIT_COMMITTER_NAME: "t",
        GIT_COMMITTER_EMAIL: "t@x",
      },
    });
  await git("checkout", "-q", "-B", "staging", "origin/staging");
  writeFileSync(
    join(demo.workdir, "deploy/base/replacements.json"),
    `${JSON.stringify({ ABN: "ABN Amro", ING: "ING Bank", Bunq: "bunq Bank", Volksbank: "de Volksbank", Triodos: "Triodos Bank", Rabo: "Rabobank" }, null, 2)}\n`,
  );
  await git("commit", "-qam", "Know bunq");
  let p: Awaited<ReturnType<typeof prodLoad.stop>>;
  let s: typeof p;
  try {
    await git("push", "-q", "origin", "HEAD:staging");
    const sha = (await git("rev-parse", "HEAD")).stdout.trim();
    await eventually(
      async () => (await replace(staging, "Bunq")) === "bunq Bank",
      "staging to answer with the new table",
      120_000,
    );
    // Let the rollout finish (old pods drained and removed) while the clients keep going.
    const applied = () => demo.running.agent.listUnits("staging").find((u) => u.unit === "replace-api");
    await eventually(
      () => applied()?.ready === "True" && applied()?.lastAppliedRevision === `staging@sha1:${sha}`,
      "staging to record the new revision",
      120_000,
      () => applied(),
    );
  } finally {
    p = await prodLoad.stop();
    s = await stagingLoad.stop();
  }
  assert.equal(p.failed, 0, `production failures: ${p.errors.slice(0, 3).join("; ")}`);
  assert.equal(s.failed, 0, `staging failures during its rolling update: ${s.errors.slice(0, 3).join("; ")}`);
  assert.ok(p.ok > 10 && s.ok > 10, `requests sent: ${p.ok}, ${s.ok}`);
  assert.equal(await replace(prod, "Bunq"), "Bunq", "production unchanged");

  // Stopping leaves no pods, ports or processes.
  const registryPid = Number(/127\.0\.0\.1:(\d+)/.exec(demo.registry)?.[1]);
  await demo.stop();
  stopped = true;
  const pods = await run("podman", ["pod", "ps", "-q", "--filter", "label=sluice.dev/env=production"], {
    env: { ...process.env, CONTAINERS_CONF: defaultContainersConf() },
  });
  assert.equal(pods.stdout.trim(), "");
  for (const url of [prod, staging, demo.apiUrl, demo.registry]) {
    assert.equal(await portOpen(Number(new URL(url).port)), false, `${url} still open`);
  }
  assert.ok(registryPid > 0);
});
