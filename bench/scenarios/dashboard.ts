/**
 * dashboard (issue 11): the home page with 1,000 environments × 10 units in the store, in Debian's
 * Chromium driven by playwright-core. Each run opens the page in a fresh browser context (empty
 * cache, first visit) and times, in the page, navigation start → the first rows of the matrix on
 * screen and responding (the app's `sluice:interactive` mark); then it types three searches and
 * times input → filtered rows painted. The server is the real API server over a real store.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import pino from "pino";
import type { Browser } from "playwright-core";
import { loadConfig } from "../../src/config/index.js";
import { Dashboard } from "../../src/server/_dashboard.js";
import { FakeAgent } from "../../src/server/_testkit.js";
import { type ApiServer, createApiServer } from "../../src/server/index.js";
import { openStore, type Store } from "../../src/store/index.js";
import {
  CHROMIUM,
  ensureWebBuilt,
  filterLatency,
  launchBrowser,
  scaleConfig,
  seedStore,
  signedInContext,
  timeToInteractive,
} from "../../test/support/dashboard.js";
import { median } from "../lib/stats.js";
import type { Scenario } from "../lib/types.js";

const QUERIES = ["env-04", "topic-77", "release"];

const s: {
  store?: Store;
  api?: ApiServer;
  browser?: Browser;
  token: string;
  envs: number;
  units: number;
  filters: number[];
  server: { cold: number[]; warm: number[] };
} = { token: "", envs: 0, units: 0, filters: [], server: { cold: [], warm: [] } };

const scenario: Scenario = {
  name: "dashboard",
  description:
    "The dashboard's home page with 1,000 environments × 10 units (a seeded store behind the real API server), in Debian's Chromium: time to interactive on a first visit (navigation → first matrix rows on screen), and filter latency (typing a search → filtered rows painted), measured in the page. No peer (Flux has no UI; Argo CD needs a cluster).",
  goal: {
    text: "home page interactive in under 1.5 s and filtering in under 200 ms with 1,000 environments × 10 units (issue 11)",
    met: (r) => (r.sluice?.medianMs ?? Number.POSITIVE_INFINITY) < 1500 && median(s.filters) < 200,
  },
  pairs: 7,
  async available() {
    if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
    return undefined;
  },
  async setup(ctx) {
    s.envs = ctx.quick ? 100 : 1000;
    s.units = 10;
    s.filters = [];
    s.server = { cold: [], warm: [] };
    ensureWebBuilt();
    mkdirSync(join(ctx.dir, "config"));
    writeFileSync(join(ctx.dir, "config", "sluice.yaml"), scaleConfig(s.units));
    s.store = openStore(join(ctx.dir, "state"));
    seedStore(s.store, s.envs, s.units);
    s.token = s.store.addToken("bench", "viewer");
    const agent = new FakeAgent(s.store, loadConfig(ctx.dir, "config"));
    s.api = await createApiServer({ agent, store: s.store, log: pino({ level: "silent" }) });
    s.browser = await launchBrowser();
    // The server's share, measured apart: building the matrix from the store, and a filtered page.
    const d = new Dashboard({ agent, store: s.store, log: pino({ level: "silent" }), scrub: () => (v) => v });
    for (let i = 0; i < 5; i++) {
      let t = performance.now();
      d.observe({ type: "environment", env: "x", state: "active", branch: null });
      d.matrix(new URLSearchParams("limit=50"));
      s.server.cold.push(performance.now() - t);
      t = performance.now();
      d.matrix(new URLSearchParams(`q=${QUERIES[i % QUERIES.length]}&limit=50`));
      s.server.warm.push(performance.now() - t);
    }
    ctx.note(`${s.envs} environments × ${s.units} units seeded; viewport 1440×900`);
  },
  async warmup() {
    await scenario.sluice.run();
    s.filters = [];
  },
  sluice: {
    label: "home page time to interactive (first visit), Chromium",
    rss: "none",
    async run() {
      const ctx = await signedInContext(s.browser!, s.token);
      try {
        const { page, ms } = await timeToInteractive(ctx, `${s.api!.url}/`);
        for (const q of QUERIES) s.filters.push((await filterLatency(page, q)).ms);
        return { ms };
      } finally {
        await ctx.close();
      }
    },
  },
  async breakdown(_ctx, result) {
    return {
      method: "in-page performance marks (Chromium), and the server's matrix query timed in-process",
      phases: [
        { name: "time to interactive (median)", ms: result.sluice?.medianMs ?? Number.NaN },
        {
          name: "filter: input → filtered rows painted (median)",
          ms: median(s.filters),
          note: `${s.filters.length} searches, max ${Math.max(...s.filters).toFixed(0)} ms`,
          group: "extra",
        },
        {
          name: "server: matrix rebuilt from the store + first page",
          ms: median(s.server.cold),
          note: "after any change event",
          group: "extra",
        },
        { name: "server: filtered page from the built matrix", ms: median(s.server.warm), group: "extra" },
      ],
    };
  },
  explain(r) {
    const tti = r.sluice?.medianMs;
    if (tti === undefined) return undefined;
    return `With ${s.envs.toLocaleString("en-US")} environments the page is interactive in ${tti.toFixed(0)} ms (median) and a search answers in ${median(s.filters).toFixed(0)} ms; the server builds the whole matrix in ${median(s.server.cold).toFixed(0)} ms and filters it in ${median(s.server.warm).toFixed(1)} ms, the rest is the browser fetching one 50-row page and rendering the rows in view.`;
  },
  async teardown() {
    await s.browser?.close();
    await s.api?.close();
    s.store?.close();
    s.browser = undefined;
    s.api = undefined;
    s.store = undefined;
  },
};

export default scenario;
