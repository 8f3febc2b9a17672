/**
 * The dashboard at scale, in real Chromium: a store seeded with 1,000 environments × 10 units
 * behind the real API server. The home page must show the first rows, render only what is in view,
 * page in the rest on scroll, and filter correctly on the server. Timings are printed (and
 * benchmarked by bench/scenarios/dashboard.ts), not asserted: a loaded CI machine must not fail them.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import type { Browser, BrowserContext } from "playwright-core";
import { loadConfig } from "../src/config/index.js";
import { FakeAgent } from "../src/server/_testkit.js";
import { type ApiServer, createApiServer } from "../src/server/index.js";
import { openStore, type Store } from "../src/store/index.js";
import {
  ensureWebBuilt,
  filterLatency,
  launchBrowser,
  scaleConfig,
  seedStore,
  signedInContext,
  timeToInteractive,
  watchPage,
} from "./support/dashboard.js";

const ENVS = 1000;
const UNITS = 10;

const IMAGES = {
  repositories: [
    {
      name: "flux-system/podinfo",
      image: "127.0.0.1:5000/stefanprodan/podinfo",
      ok: true,
      message: "successful scan: found 12 tags",
      count: 12,
      latestTags: ["6.5.4", "6.5.3", "6.5.2"],
      scannedAt: new Date(Date.now() - 90_000).toISOString(),
    },
  ],
  policies: [
    {
      name: "flux-system/podinfo",
      repository: "flux-system/podinfo",
      ok: true,
      message: "Latest image tag for 127.0.0.1:5000/stefanprodan/podinfo resolved to 6.5.4",
      latestImage: "127.0.0.1:5000/stefanprodan/podinfo:6.5.4",
      previousImage: "127.0.0.1:5000/stefanprodan/podinfo:6.5.3",
    },
  ],
  automations: [
    {
      name: "flux-system/podinfo-update",
      source: "flux-system/app",
      ok: false,
      message: "push rejected: main moved; retrying at the next interval",
      lastRunAt: new Date(Date.now() - 30_000).toISOString(),
      lastCommit: "4f1bbcd2a9e4c1d7b8a0f3e6c5d2b1a0e9f8c7d6",
      lastPushed: new Date(Date.now() - 3_600_000).toISOString(),
    },
  ],
};

let dir: string;
let store: Store;
let api: ApiServer;
let browser: Browser;
let ctx: BrowserContext;
let seeded: ReturnType<typeof seedStore>;

before(async () => {
  ensureWebBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-dash-scale-"));
  mkdirSync(join(dir, "config"));
  writeFileSync(join(dir, "config", "sluice.yaml"), scaleConfig(UNITS));
  store = openStore(join(dir, "state"));
  seeded = seedStore(store, ENVS, UNITS);
  const viewer = store.addToken("viewer", "viewer");
  const agent = new FakeAgent(store, loadConfig(dir, "config"));
  // The image loop's status, as the real agent reports it (src/reconcile/images.ts).
  Object.assign(agent, { imageStatus: () => IMAGES });
  api = await createApiServer({ agent, store, log: pino({ level: "silent" }) });
  browser = await launchBrowser();
  ctx = await signedInContext(browser, viewer);
});

after(async () => {
  await ctx?.close();
  await browser?.close();
  await api?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("1,000 × 10: the first rows are interactive, only the rows in view are rendered", async () => {
  const { page, ms } = await timeToInteractive(ctx, `${api.url}/`);
  const watch = watchPage(page);
  try {
    process.stdout.write(`# time to interactive with ${ENVS} × ${UNITS}: ${ms.toFixed(0)} ms\n`);
    if (process.env.SLUICE_SCREENSHOTS)
      await page.screenshot({ path: join(process.env.SLUICE_SCREENSHOTS, "home-1000.png") });
    assert.ok(Number.isFinite(ms) && ms > 0, "the page marks when it is interactive");
    const table = page.locator("table.matrix");
    assert.equal(await table.getAttribute("data-total"), String(ENVS));
    assert.equal(await table.getAttribute("aria-rowcount"), String(ENVS + 1));
    // Windowing: a viewport's worth of rows, not a thousand.
    const rendered = await page.locator("table.matrix tr.row").count();
    assert.ok(rendered > 5 && rendered < 60, `rendered ${rendered} rows`);
    // Columns are the configuration's units, in its order.
    const heads = await page.locator("table.matrix thead th").allTextContents();
    assert.deepEqual(heads.slice(1), seeded.unitNames);
    // Counts over the whole fleet.
    const degraded = [...seeded.health.values()].filter((h) => h === "Degraded").length;
    const btn = page.getByRole("button", { name: /Degraded/ });
    assert.match(
      (await btn.textContent()) ?? "",
      new RegExp(`Degraded\\s*${degraded.toLocaleString("en-US")}`),
    );
    // The first cell of a seeded Degraded unit shows its reason.
    const [env, unit] = [...seeded.health.entries()]
      .find(([k, h]) => h === "Degraded" && k < "env-0002")![0]
      .split("/");
    const cell = page.locator(`tr[data-env="${env}"] td[data-unit="${unit}"]`);
    assert.equal(await cell.getAttribute("data-health"), "Degraded");
    assert.match((await cell.textContent()) ?? "", /HealthCheckFailed/);

    // Scrolling to the end pages in the last rows (the server's pages, on demand).
    await page.locator(".matrix-scroll").evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await page.locator('tr[data-env="env-0999"]').waitFor({ timeout: 10_000 });
    const after = await page.locator("table.matrix tr.row").count();
    assert.ok(after < 60, `still only the rows in view after scrolling (${after})`);
    assert.deepEqual(watch.problems, []);
  } finally {
    await page.close();
  }
});

test("1,000 × 10: filters answer from the server with the right rows", async () => {
  const { page } = await timeToInteractive(ctx, `${api.url}/`);
  try {
    const samples: number[] = [];
    for (const q of ["env-04", "env-0999", "topic-7", "", "nothing-matches-this"]) {
      const r = await filterLatency(page, q);
      samples.push(r.ms);
      const want = seeded.names.filter(
        (n, i) =>
          n.includes(q) || (i >= 10 ? `feature/topic-${i}` : i === 0 ? "main" : `release-${i}`).includes(q),
      ).length;
      assert.equal(r.total, want, `rows for "${q}"`);
    }
    process.stdout.write(`# filter latency (ms): ${samples.map((s) => s.toFixed(0)).join(", ")}\n`);
    assert.equal(await page.locator("tr.row").count(), 0, "no row for a query that matches nothing");
    assert.match((await page.locator(".home .empty").textContent()) ?? "", /No environment matches/);

    // Status and kind filters (selects) narrow on the server too.
    await filterLatency(page, "");
    await page.getByLabel("Status").selectOption("Failed");
    const failedEnvs = new Set(
      [...seeded.health.entries()].filter(([, h]) => h === "Failed").map(([k]) => k.split("/")[0]),
    );
    await page.waitForFunction(
      (n) =>
        (globalThis as any).document.querySelector("table.matrix")?.getAttribute("data-total") === String(n),
      failedEnvs.size,
      { timeout: 10_000 },
    );
    for (const env of await page
      .locator("tr.row")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-env"))))
      assert.ok(failedEnvs.has(env!), `${env} has a Failed unit`);
    assert.match(page.url(), /status=Failed/);
    await page.getByLabel("Environments").selectOption("long-lived");
    await page.waitForFunction(
      () =>
        Number((globalThis as any).document.querySelector("table.matrix")?.getAttribute("data-total")) <= 10,
      undefined,
      { timeout: 10_000 },
    );
  } finally {
    await page.close();
  }
});

test("the matrix route: pagination, filters and validation", async () => {
  const token = store.addToken("scale-reader", "viewer");
  const get = async (qs: string) => {
    const r = await fetch(`${api.url}/api/v1/matrix?${qs}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    return { status: r.status, body: (await r.json()) as any };
  };
  const page2 = await get("offset=50&limit=25");
  assert.equal(page2.status, 200);
  assert.equal(page2.body.total, ENVS);
  assert.equal(page2.body.rows.length, 25);
  assert.equal(page2.body.rows[0].env.name, "env-0050");
  assert.equal(page2.body.counts.cells, ENVS * UNITS);
  const previews = await get("kind=preview&limit=0");
  assert.equal(previews.body.total, ENVS - 10);
  assert.equal(previews.body.rows.length, 0);
  const both = await get("q=env-00%20topic-5&limit=500");
  assert.deepEqual(
    both.body.rows.map((r: any) => r.env.name),
    [
      "env-0050",
      "env-0051",
      "env-0052",
      "env-0053",
      "env-0054",
      "env-0055",
      "env-0056",
      "env-0057",
      "env-0058",
      "env-0059",
    ],
  );
  assert.equal((await get("status=Bogus")).status, 400);
  assert.equal((await get("kind=x")).status, 400);
  assert.equal((await get("limit=501")).status, 400);
  const unauth = await fetch(`${api.url}/api/v1/matrix`);
  assert.equal(unauth.status, 401);
});

test("the Images page lists repositories, policies and automations", async () => {
  const page = await ctx.newPage();
  const watch = watchPage(page);
  try {
    await page.goto(`${api.url}/images`);
    await page.getByRole("heading", { name: "Automations" }).waitFor();
    const text = (await page.locator("main").textContent()) ?? "";
    assert.match(text, /127\.0\.0\.1:5000\/stefanprodan\/podinfo:6\.5\.4/);
    assert.match(text, /6\.5\.4, 6\.5\.3, 6\.5\.2/);
    assert.match(text, /4f1bbcd2a9/);
    assert.match(text, /push rejected/);
    // A viewer gets no scan button.
    assert.equal(await page.getByRole("button", { name: /Scan/ }).count(), 0);
    if (process.env.SLUICE_SCREENSHOTS)
      await page.screenshot({ path: join(process.env.SLUICE_SCREENSHOTS, "images.png") });
    assert.deepEqual(watch.problems, []);
  } finally {
    await page.close();
  }
});
