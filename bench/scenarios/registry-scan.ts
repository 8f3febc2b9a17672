/**
 * registry-scan (issue 6): listing a repository of 10,000 tags on a real, paginating registry
 * (distribution v3 on 127.0.0.1, which caps pages at 1,000 tags and links them with `Link`
 * headers). Sluice: `listTags()` in a node process (the images module bundled with esbuild, so
 * the process start is counted as for the peers), asking pages of 1,000 as Flux does. Peers: a
 * bash loop of curl doing the same pagination, and `skopeo list-tags`, which sends no page size
 * (the registry then answers all tags at once).
 */
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import {
  addTagsOnDisk,
  pushTags,
  REGISTRY_V3_VERSION,
  type RunningRegistry,
  registryV3Binary,
  startRegistryV3,
} from "../../test/support/registries.js";
import { timeProcess } from "../lib/proc.js";
import type { Scenario } from "../lib/types.js";

const REPO = "bench/app";
const state = {
  registry: undefined as RunningRegistry | undefined,
  script: "",
  curlScript: "",
  image: "",
  tags: 0,
};

const CURL_LOOP = `#!/usr/bin/env bash
# Lists every tag of $2 on registry $1 following Link headers, one tag per line.
set -euo pipefail
base="$1"; next="/v2/$2/tags/list?n=1000"; hdr="$(mktemp)"; trap 'rm -f "$hdr"' EXIT
while [ -n "$next" ]; do
  body="$(curl -sSf -D "$hdr" "$base$next")"
  tags="\${body#*\\"tags\\":[}"; tags="\${tags%%]*}"
  [ -n "$tags" ] && printf '%s\\n' "$tags" | tr ',' '\\n' | tr -d '"'
  next="$(sed -n 's/^[Ll]ink: *<\\([^>]*\\)>.*rel="next".*/\\1/p' "$hdr" | tr -d '\\r')"
done
`;

function countLines(s: string): number {
  return s.split("\n").filter((l) => l.trim() !== "").length;
}

const scenario: Scenario = {
  name: "registry-scan",
  description: `A repository of 10,000 tags on distribution ${REGISTRY_V3_VERSION} (127.0.0.1, plain HTTP, pages of at most 1,000 tags linked by \`Link\` headers): every tag listed by \`listTags()\` in a node process (esbuild bundle of src/images, pages of 1,000 as Flux asks) vs a bash loop of curl doing the same pagination vs \`skopeo list-tags\` (which sends no page size, so this registry answers all tags at once).`,
  pairs: 5,
  async available() {
    try {
      registryV3Binary();
    } catch (e) {
      return (e as Error).message;
    }
    for (const tool of ["skopeo", "curl"]) {
      try {
        execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
      } catch {
        return `${tool} is not installed (scripts/apt-packages.txt lists it)`;
      }
    }
    return undefined;
  },
  async setup(ctx) {
    state.tags = ctx.quick ? 500 : 10_000;
    state.registry = await startRegistryV3({ dataDir: join(ctx.dir, "registry") });
    state.image = `${state.registry.host}/${REPO}`;
    const digest = await pushTags(state.registry.url, REPO, ["seed"]);
    const tags = Array.from({ length: state.tags - 1 }, (_, i) => `1.${Math.floor(i / 100)}.${i % 100}`);
    addTagsOnDisk(state.registry.storage, REPO, digest, tags);
    const entry = join(ctx.dir, "scan-entry.ts");
    writeFileSync(
      entry,
      [
        `import { listTags, parseImageRef } from ${JSON.stringify(join(ctx.repo, "src", "images", "index.ts"))};`,
        "void (async () => {",
        "  const r = await listTags(parseImageRef(process.argv[2]!), { pageSize: 1000 });",
        "  process.stdout.write(`${r.tags.join('\\n')}\\n`);",
        "})();",
        "",
      ].join("\n"),
    );
    state.script = join(ctx.dir, "scan.cjs");
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile: state.script,
      logLevel: "error",
    });
    state.curlScript = join(ctx.dir, "curl-tags.sh");
    writeFileSync(state.curlScript, CURL_LOOP, { mode: 0o755 });
    if (!existsSync(state.script)) throw new Error("the esbuild bundle was not written");
    const s = await timeProcess(process.execPath, [state.script, state.image], { capture: "pipe" });
    const k = await timeProcess("skopeo", ["list-tags", "--tls-verify=false", `docker://${state.image}`], {
      capture: "pipe",
    });
    const c = await timeProcess("bash", [state.curlScript, state.registry.url, REPO], { capture: "pipe" });
    const skopeoTags = (JSON.parse(k.stdout) as { Tags: string[] }).Tags.length;
    const counts = { sluice: countLines(s.stdout), skopeo: skopeoTags, curl: countLines(c.stdout) };
    for (const [side, n] of Object.entries(counts)) {
      if (n !== state.tags) throw new Error(`${side} listed ${n} tags, expected ${state.tags}`);
    }
    ctx.note(`every side listed ${state.tags} tags in ${Math.ceil(state.tags / 1000)} pages`);
  },
  sluice: {
    label: "node scan.cjs (listTags)",
    rss: "child:/usr/bin/time",
    async run() {
      const r = await timeProcess(process.execPath, [state.script, state.image]);
      return { ms: r.ms, rssKb: r.rssKb, objects: state.tags };
    },
  },
  peer: {
    label: "bash loop of curl following Link",
    rss: "child:/usr/bin/time",
    async run() {
      const r = await timeProcess("bash", [state.curlScript, state.registry!.url, REPO]);
      return { ms: r.ms, rssKb: r.rssKb, objects: state.tags };
    },
  },
  extraPeers: [
    {
      label: "skopeo list-tags (asks without n: one page)",
      rss: "child:/usr/bin/time",
      async run() {
        const r = await timeProcess("skopeo", ["list-tags", "--tls-verify=false", `docker://${state.image}`]);
        return { ms: r.ms, rssKb: r.rssKb, objects: state.tags };
      },
    },
  ],
  async breakdown(ctx) {
    const startOnly = await timeProcess(process.execPath, ["-e", ""]);
    const { listTags, parseImageRef } = await import("../../src/images/index.js");
    const ref = parseImageRef(state.image);
    await listTags(ref, { pageSize: 1000 });
    const runs = ctx.quick ? 1 : 5;
    const paged: number[] = [];
    const whole: number[] = [];
    let pages = 0;
    for (let i = 0; i < runs; i++) {
      let t0 = performance.now();
      pages = (await listTags(ref, { pageSize: 1000 })).stats.pages;
      paged.push(performance.now() - t0);
      t0 = performance.now();
      const r = await fetch(`${state.registry!.url}/v2/${REPO}/tags/list`, {
        signal: AbortSignal.timeout(30_000),
      });
      await r.text();
      whole.push(performance.now() - t0);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    return {
      method: `node's start timed alone; listTags() and one unpaged request timed inside this process (warm), median of ${runs}`,
      phases: [
        { name: "node process start", ms: startOnly.ms, group: "per-process" },
        { name: `listTags(), ${pages} pages of ≤1,000 tags`, ms: median(paged), group: "per-object" },
        {
          name: "one GET without n (all tags in one answer), for comparison",
          ms: median(whole),
          group: "extra",
          note: "what skopeo asks for",
        },
      ],
    };
  },
  explain(r) {
    const b = r.breakdown;
    if (!b || !r.sluice) return undefined;
    const [start, paged, whole] = b.phases;
    if (!start || !paged || !whole) return undefined;
    return `Of Sluice's ${r.sluice.medianMs.toFixed(0)} ms, about ${start.ms.toFixed(0)} ms is node starting; the listing itself takes ${paged.ms.toFixed(0)} ms, nearly all of it the registry walking its storage once per page: the same registry answers all tags in one response in ${whole.ms.toFixed(0)} ms, which is what skopeo asks for.`;
  },
  async teardown() {
    await state.registry?.stop();
    state.registry = undefined;
  },
};

export default scenario;
