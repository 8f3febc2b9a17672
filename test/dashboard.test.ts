/**
 * The dashboard end to end, in Debian's Chromium (playwright-core), against the real API server
 * over a real agent: Git served by `git http-backend`, the local podman target, smoke tests after
 * each deploy — the demo's shape (main → production, staging → staging; units db ← api).
 *
 * - a viewer signs in with a token and sees production and staging Healthy, and no action button;
 * - a push turns a cell Progressing and then Healthy, without a reload, and the Events page
 *   shows the new events live;
 * - a broken push shows Degraded with its reason, in the matrix and on the environment page;
 * - an operator reconciles and rolls the broken push back from the environment page (each
 *   confirmed; the rollback reverts the commit in Git and is recorded with the operator's name).
 * Screenshots of every page go to $SLUICE_SCREENSHOTS (docs/screenshots when refreshing the docs)
 * or a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { assertPassed, runSmokeTest } from "../src/checks/index.js";
import { SluiceError } from "../src/core/index.js";
import { type ApiServer, createApiServer } from "../src/server/index.js";
import type { LocalTarget } from "../src/targets/local/index.js";
import { ensureBaseImages } from "../src/targets/local/index.js";
import { eventually, type Harness, harness, WEB_IMAGE } from "./support/agent.js";
import { ensureWebBuilt, launchBrowser, watchPage } from "./support/dashboard.js";

/** A busybox web server; its readiness probe waits `delay` s and asks for `path`. */
function app(name: string, message: string, opts: { delay?: number; path?: string } = {}): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}}
spec:
  replicas: 1
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers:
        - name: web
          image: ${WEB_IMAGE}
          command: ["sh", "-c", "mkdir -p /www && echo ${message} > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: ${opts.path ?? "/"}, port: 8080}, periodSeconds: 1, initialDelaySeconds: ${opts.delay ?? 0}}
---
apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  selector: {app: ${name}}
  ports: [{port: 80, targetPort: 8080}]
`;
}

const SMOKE = `apiVersion: sluice.dev/v1alpha1
kind: SmokeTest
metadata: {name: api}
spec:
  service:
    name: api
    port: 80
  timeout: 5s
  checks:
    - name: port open
      tcp: {}
    - name: answers
      http: {path: /, expect: {status: 200}}
`;

const CONFIG = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: main, name: production, protected: true}
    - {branch: staging, name: staging}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: db}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./db, interval: 1h, prune: true, timeout: 40s}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: api}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./api
  interval: 1h
  prune: true
  timeout: 20s
  dependsOn: [{name: db}]
`;

const shots = resolve(process.env.SLUICE_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), "sluice-shots-")));

describe("the dashboard on a running agent", { timeout: 900_000 }, () => {
  let h: Harness;
  let local: LocalTarget | undefined;
  let agentStop: () => Promise<void>;
  let notify: () => Promise<unknown>;
  let api: ApiServer;
  let browser: Browser;
  let viewer: string;
  let operator: string;
  const contexts: BrowserContext[] = [];
  const watched: { problems: string[] }[] = [];

  before(async () => {
    ensureWebBuilt();
    mkdirSync(shots, { recursive: true });
    await ensureBaseImages({ log: () => {} });
    h = await harness("dash", {
      "db/app.yaml": app("db", "db-v1"),
      "api/app.yaml": app("api", "api-v1"),
      "api/smoke.yaml": SMOKE,
      "api/kustomization.yaml": "resources: [app.yaml, smoke.yaml]\n",
    });
    await h.git("push", "-q", "origin", "main:staging");
    const started = await h.startAgent(CONFIG, {
      // What `sluice serve` does after a unit is healthy: the smoke tests, against the Service.
      postApply: async ({ env, unit, smokeTests }) => {
        for (const st of smokeTests) {
          const addr = local
            ?.serviceAddresses({ env: env.name, unit })
            .find((a) => a.name === st.spec.service.name);
          if (!addr) throw new SluiceError("HealthCheckFailed", `smoke test ${st.name}: no address`);
          assertPassed(st.name, await runSmokeTest(st.spec, addr.address));
        }
      },
    });
    local = started.local;
    agentStop = started.stop;
    notify = () => started.agent.notifyPush({ repoUrls: [h.server.repoUrl("dash")] });
    viewer = started.store.addToken("victor", "viewer");
    operator = started.store.addToken("olivia", "operator");
    const target = started.local;
    api = await createApiServer({
      agent: started.agent,
      store: started.store,
      log: pino({ level: "silent" }),
      dashboard: {
        objectHealth: (env, unit, refs) => target.health({ env: env.name, unit }, refs),
        urls: (env, unit) =>
          target
            .serviceAddresses({ env: env.name, unit })
            .map((a) => ({ name: `${a.name}:${a.port}`, url: `http://127.0.0.1:${a.address.port}/` })),
      },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await api?.close();
    await agentStop?.().catch(() => {});
    await h?.cleanup();
    if (!process.env.SLUICE_SCREENSHOTS) rmSync(shots, { recursive: true, force: true });
  });

  async function newPage(): Promise<Page> {
    const c = await browser.newContext({ viewport: { width: 1366, height: 860 } });
    contexts.push(c);
    const page = await c.newPage();
    watched.push(watchPage(page));
    return page;
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${api.url}/`);
    await page.waitForURL(/\/login\?next=/);
    await page.getByLabel("API token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(`${api.url}/`);
  }

  const cell = (page: Page, env: string, unit: string) =>
    page.locator(`tr[data-env="${env}"] td[data-unit="${unit}"]`);
  const health = (page: Page, env: string, unit: string) => cell(page, env, unit).getAttribute("data-health");

  let viewerPage: Page;

  test("a viewer signs in; production and staging become Healthy; no action buttons", async () => {
    viewerPage = await newPage();
    const page = viewerPage;
    await page.goto(`${api.url}/`);
    await page.waitForURL(/\/login/);
    await page.screenshot({ path: join(shots, "login.png") });
    await page.getByLabel("API token").fill("not-the-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "not valid" }).waitFor();
    await page.getByLabel("API token").fill(viewer);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(`${api.url}/`);
    assert.ok(!(await page.content()).includes(viewer), "the token is not in the page");
    for (const env of ["production", "staging"])
      for (const unit of ["db", "api"])
        await eventually(
          async () => (await health(page, env, unit)) === "Healthy",
          `${env}/${unit} Healthy`,
          240_000,
        );
    assert.deepEqual(
      await page.locator("tr.row").evaluateAll((rs) => rs.map((r) => r.getAttribute("data-env"))),
      ["production", "staging"],
    );
    assert.equal(await page.locator(".live").textContent(), "● live");
    await eventually(async () => /All healthy/.test(await page.title()), "the tab title");
    await page.screenshot({ path: join(shots, "home.png") });

    await page.getByRole("link", { name: "production", exact: true }).click();
    await page.waitForURL(/\/environments\/production$/);
    await page.locator('section.unit[data-unit="api"]').waitFor();
    await eventually(
      async () => /passed/.test((await page.locator('section.unit[data-unit="api"]').textContent()) ?? ""),
      "the smoke test result",
      30_000,
    );
    const text = (await page.locator("main").textContent()) ?? "";
    assert.match(text, /Deployment\/api\b/);
    assert.match(text, /http:\/\/127\.0\.0\.1:\d+\//, "the environment's URLs");
    assert.equal(
      await page
        .getByRole("button", { name: /Reconcile|Suspend|Resume|Roll back|Promote|Destroy|Extend/ })
        .count(),
      0,
      "a viewer sees no action button",
    );
    assert.equal(await page.locator(".graph .node").count(), 2);
  });

  test("a push turns the cell Progressing, then Healthy, without a reload; events arrive live", async () => {
    const page = viewerPage;
    await page.goto(`${api.url}/`);
    await eventually(
      async () => (await health(page, "production", "api")) === "Healthy",
      "production/api Healthy",
    );
    // A new tab signs in again: the token lives in one tab's sessionStorage.
    const events = await page.context().newPage();
    watched.push(watchPage(events));
    await signIn(events, viewer);
    await events.goto(`${api.url}/events`);
    await events.locator("table.eventlist").waitFor();
    const newestBefore = Number(
      await events.locator("tr[data-event-id]").first().getAttribute("data-event-id"),
    );
    // Record every state the cell shows, in the page, and mark the document to detect a reload.
    await page.evaluate(`(() => {
      window.__seen = [];
      window.__noReload = true;
      const record = () => {
        const td = document.querySelector('tr[data-env="production"] td[data-unit="api"]');
        const h = td && td.getAttribute("data-health");
        if (h && window.__seen[window.__seen.length - 1] !== h) window.__seen.push(h);
      };
      new MutationObserver(record).observe(document.body, { subtree: true, attributes: true, childList: true });
      record();
    })()`);
    const sha = await h.commitAndPush(
      { "api/app.yaml": app("api", "api-v2", { delay: 4 }) },
      "main",
      "api v2",
    );
    await notify();
    await eventually(
      async () =>
        (await health(page, "production", "api")) === "Healthy" &&
        ((await cell(page, "production", "api").textContent()) ?? "").includes(sha.slice(0, 7)),
      "production/api Healthy at the new revision",
      120_000,
    );
    const seen = (await page.evaluate("window.__seen")) as string[];
    assert.ok(seen.indexOf("Progressing") >= 0, `the cell went through Progressing: ${seen.join(" → ")}`);
    assert.ok(seen.indexOf("Progressing") < seen.lastIndexOf("Healthy"), `then Healthy: ${seen.join(" → ")}`);
    assert.equal(await page.evaluate("window.__noReload"), true, "no reload");
    // The Events page got the new events without a reload.
    await eventually(
      async () => {
        const rows = await events
          .locator("tr[data-event-id]")
          .evaluateAll((rs) =>
            rs.map((r) => [Number(r.getAttribute("data-event-id")), r.textContent ?? ""] as const),
          );
        return rows.some(
          ([id, t]) => id > newestBefore && /ReconciliationSucceeded/.test(t) && t.includes(sha.slice(0, 10)),
        );
      },
      "the new event on the Events page",
      30_000,
    );
    await events.screenshot({ path: join(shots, "events.png") });
    await events.close();
  });

  test("a broken push shows Degraded with its reason", async () => {
    const page = viewerPage;
    await h.commitAndPush(
      { "api/app.yaml": app("api", "api-v3", { path: "/missing" }) },
      "main",
      "api v3 (readiness never passes)",
    );
    await notify();
    await eventually(
      async () => (await health(page, "production", "api")) === "Degraded",
      "production/api Degraded",
      120_000,
    );
    const c = cell(page, "production", "api");
    assert.equal(await c.getAttribute("data-reason"), "HealthCheckFailed");
    assert.match((await c.textContent()) ?? "", /HealthCheckFailed/);
    assert.match((await c.locator("a").getAttribute("title")) ?? "", /readiness probe|health check/i);
    await eventually(async () => /failing/.test(await page.title()), "the tab title says failing");
    await eventually(
      async () => /favicon-degraded\.svg/.test((await page.locator("#favicon").getAttribute("href")) ?? ""),
      "the Degraded favicon",
    );
    // Staging, on its own branch, is untouched.
    assert.equal(await health(page, "staging", "api"), "Healthy");
    await page.screenshot({ path: join(shots, "home-degraded.png") });

    await c.locator("a").click();
    await page.waitForURL(/\/environments\/production#unit-api$/);
    const section = page.locator('section.unit[data-unit="api"]');
    await section.waitFor();
    await eventually(
      async () => /HealthCheckFailed/.test((await section.textContent()) ?? ""),
      "the reason on the page",
    );
    // The timeline shows the failed run with its failed health stage.
    const failedRun = page.locator(".timeline li.r-failed").first();
    await failedRun.waitFor();
    assert.match((await failedRun.locator(".stages").getAttribute("aria-label")) ?? "", /apply failed/);
    await page.evaluate("window.scrollTo(0, 0)");
    await page.screenshot({ path: join(shots, "environment-degraded.png"), fullPage: true });
  });

  test("an operator reconciles and rolls the broken push back, each confirmed and recorded", async () => {
    const page = await newPage();
    await signIn(page, operator);
    await page.goto(`${api.url}/environments/production`);
    const section = page.locator('section.unit[data-unit="api"]');
    await section.waitFor();
    // Reconcile now (a unit action), confirmed in a dialog.
    const manualRuns = () => page.locator(".timeline li").filter({ hasText: "manual" }).count();
    const before = await manualRuns();
    await section.getByRole("button", { name: "Reconcile now" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    assert.match((await dialog.textContent()) ?? "", /Reconcile api in production now\?/);
    await dialog.getByRole("button", { name: "Reconcile" }).click();
    await page.getByRole("status").filter({ hasText: "Reconcile of api queued." }).waitFor();
    await eventually(async () => (await manualRuns()) > before, "a manual run in the timeline", 90_000);

    // Roll back (an environment action): Cancel does nothing; confirming reverts the broken commit.
    const headBefore = await h.git("ls-remote", "origin", "refs/heads/main");
    await page.getByRole("button", { name: "Roll back" }).click();
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Cancel" }).click();
    assert.equal(await h.git("ls-remote", "origin", "refs/heads/main"), headBefore, "cancel changed nothing");
    await page.getByRole("button", { name: "Roll back" }).click();
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Roll back" }).click();
    await page
      .getByRole("status")
      .filter({ hasText: /Rolled back production: reverted/ })
      .waitFor({ timeout: 60_000 });
    assert.notEqual(await h.git("ls-remote", "origin", "refs/heads/main"), headBefore, "a revert was pushed");
    // The environment heals on its own page, live.
    await eventually(
      async () => /✓ Healthy/.test((await section.locator("h2").textContent()) ?? ""),
      "production/api Healthy after the rollback",
      180_000,
    );
    await page.evaluate("window.scrollTo(0, 0)");
    await page.screenshot({ path: join(shots, "environment.png"), fullPage: true });

    // Both actions are recorded with who did them.
    await page.goto(`${api.url}/events?q=olivia`);
    await page.locator("table.eventlist").waitFor();
    assert.match(
      (await page.locator("table.eventlist").textContent()) ?? "",
      /olivia rolled back production/,
    );

    await page.goto(`${api.url}/images`);
    await page.locator("[data-empty=images]").waitFor();
    assert.deepEqual(
      watched.flatMap((w) => w.problems),
      [],
      "no CSP violation or page error",
    );
  });
});
