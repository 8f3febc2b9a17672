/**
 * Support for the dashboard's browser tests and benchmark: the built front end, Debian's
 * Chromium driven by playwright-core, a store seeded with many environments, and in-page timing
 * of time-to-interactive and filtering.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import type { Store } from "../../src/store/index.js";

export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const CHROMIUM = process.env.SLUICE_CHROMIUM ?? "/usr/bin/chromium";

function newest(dir: string, depth = 0): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules" && depth < 5) t = Math.max(t, newest(p, depth + 1));
    } else t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

/** Builds web/ into dist/web when the build is missing or older than its sources. */
export function ensureWebBuilt(): string {
  const out = join(REPO, "dist", "web");
  const index = join(out, "index.html");
  if (!existsSync(index) || statSync(index).mtimeMs < newest(join(REPO, "web"))) {
    execFileSync(
      process.execPath,
      [
        join(REPO, "node_modules", "vite", "bin", "vite.js"),
        "build",
        "--config",
        join(REPO, "web", "vite.config.ts"),
      ],
      {
        cwd: REPO,
        stdio: ["ignore", "ignore", "inherit"],
        timeout: 180_000,
      },
    );
  }
  return out;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container: Chromium's sandbox needs user namespaces it may not have.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    timeout: 60_000,
  });
}

/** A context whose pages are already signed in with `token` (the tab's sessionStorage). */
export async function signedInContext(browser: Browser, token: string): Promise<BrowserContext> {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await ctx.addInitScript(
    `if (!sessionStorage.getItem("sluice.token")) sessionStorage.setItem("sluice.token", ${JSON.stringify(token)});`,
  );
  return ctx;
}

/** Collects Content-Security-Policy violations and page errors, for asserting there are none. */
export function watchPage(page: Page): { problems: string[] } {
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Trusted Type/i.test(m.text()))
      problems.push(`csp: ${m.text()}`);
  });
  return { problems };
}

/** Ten Kustomizations, each depending on the one before (for the environment page's graph). */
export function scaleConfig(units: number): string {
  let out = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app, namespace: flux-system}
spec: {url: https://git.example.invalid/org/app.git, interval: 1m}
`;
  for (let u = 0; u < units; u++) {
    const name = `unit-${String(u).padStart(2, "0")}`;
    const dep = u > 0 ? `\n  dependsOn: [{name: unit-${String(u - 1).padStart(2, "0")}}]` : "";
    out += `---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: ${name}, namespace: flux-system}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./${name}
  interval: 10m
  prune: true${dep}
`;
  }
  return out;
}

const UNIT_REASONS = [
  ["True", "ReconciliationSucceeded", "Applied revision"],
  ["Unknown", "Progressing", "Reconciling revision"],
  ["False", "HealthCheckFailed", "health check failed: Deployment/default/web: 0 of 1 replicas ready"],
  ["False", "BuildFailed", "kustomize build failed: accumulating resources"],
] as const;

/**
 * Seeds `envs` environments × `units` units: env-0000… (the first 10 long-lived, the rest previews
 * with a TTL). Every 97th cell is Degraded, every 89th Progressing, every 211th Failed; the rest
 * Healthy. Returns what it wrote, for the tests' expectations.
 */
export function seedStore(
  store: Store,
  envs: number,
  units: number,
): { names: string[]; unitNames: string[]; health: Map<string, string> } {
  const names: string[] = [];
  const unitNames = Array.from({ length: units }, (_, u) => `unit-${String(u).padStart(2, "0")}`);
  const health = new Map<string, string>();
  const now = Date.now();
  for (let e = 0; e < envs; e++) {
    const name = `env-${String(e).padStart(4, "0")}`;
    const preview = e >= 10;
    names.push(name);
    const sha = (e * 2654435761).toString(16).padStart(8, "0").repeat(5).slice(0, 40);
    store.upsertEnvironment({
      name,
      branch: preview ? `feature/topic-${e}` : e === 0 ? "main" : `release-${e}`,
      rule: preview ? "feature/*" : "main",
      target: "local",
      protected: !preview,
      ttlSeconds: preview ? 8 * 3600 : null,
      expiresAt: preview ? new Date(now + ((e % 8) + 1) * 3600_000).toISOString() : null,
      state: "active",
      revision: `main@sha1:${sha}`,
    });
    for (let u = 0; u < units; u++) {
      const i = e * units + u;
      const kind = i % 211 === 5 ? 3 : i % 97 === 3 ? 2 : i % 89 === 7 ? 1 : 0;
      const [ready, reason, message] = UNIT_REASONS[kind]!;
      const rev = `main@sha1:${sha}`;
      store.setUnitStatus({
        env: name,
        unit: unitNames[u]!,
        ready,
        reason,
        message: `${message}${kind === 0 ? `: ${rev}` : ""}`,
        revision: rev,
        lastAppliedRevision: kind === 1 ? null : rev,
        lastAppliedAt: kind === 1 ? null : new Date(now - 60_000).toISOString(),
        drift: false,
        suspended: false,
      });
      health.set(
        `${name}/${unitNames[u]}`,
        kind === 0 ? "Healthy" : kind === 1 ? "Progressing" : kind === 2 ? "Degraded" : "Failed",
      );
    }
  }
  return { names, unitNames, health };
}

/** Opens `url` in a fresh page and returns the app's own time-to-interactive mark (ms). */
export async function timeToInteractive(
  ctx: BrowserContext,
  url: string,
): Promise<{ page: Page; ms: number }> {
  const page = await ctx.newPage();
  await page.goto(url, { waitUntil: "commit" });
  // Functions, not strings: the page's CSP forbids eval, which string predicates need.
  await page.waitForFunction(
    () => (globalThis as any).document.documentElement.dataset.interactive === "1",
    undefined,
    {
      timeout: 30_000,
    },
  );
  const ms = (await page.evaluate(
    '(performance.getEntriesByName("sluice:interactive")[0] || { startTime: NaN }).startTime',
  )) as number;
  return { page, ms };
}

/**
 * Types `q` into the home page's search box and measures, in the page, from the input event to
 * the first paint after the matrix shows the filtered rows.
 */
export async function filterLatency(page: Page, q: string): Promise<{ ms: number; total: number }> {
  // A string, not a function: tsx's helpers (__name) do not exist in the page.
  const want = new URLSearchParams(q ? { q } : {}).toString();
  return page.evaluate(`(async () => {
    const input = document.querySelector('input[type="search"][name="q"]');
    const table = document.querySelector("table.matrix");
    const want = ${JSON.stringify(want)};
    const t0 = performance.now();
    input.value = ${JSON.stringify(q)};
    input.dispatchEvent(new Event("input", { bubbles: true }));
    await new Promise((resolve, reject) => {
      if (table.dataset.loadedQuery === want) return resolve();
      const mo = new MutationObserver(() => {
        if (table.dataset.loadedQuery === want) {
          mo.disconnect();
          clearTimeout(timer);
          resolve();
        }
      });
      const timer = setTimeout(() => {
        mo.disconnect();
        reject(new Error("the filter did not finish in 10 s"));
      }, 10000);
      mo.observe(table, { attributes: true, attributeFilter: ["data-loaded-query"] });
    });
    await new Promise((r) => requestAnimationFrame(() => r()));
    return { ms: performance.now() - t0, total: Number(table.dataset.total) };
  })()`);
}
