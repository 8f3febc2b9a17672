/**
 * Keeps the benchmark suite from rotting: runs the render scenarios with --quick (tiny generated
 * inputs, one pair) and checks each produced numbers, that the inputs were removed, and that a
 * quick run leaves docs/benchmarks.md alone.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Report } from "./lib/types.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), "sluice-bench-test-"));
after(() => rmSync(work, { recursive: true, force: true }));

test("bench --quick: every render scenario produces numeric medians and cleans up", {
  timeout: 240_000,
}, async () => {
  const json = join(work, "out", "results.json");
  const scratch = join(work, "tmp");
  mkdirSync(scratch);
  const doc = join(repo, "docs", "benchmarks.md");
  const docBefore = existsSync(doc) ? statSync(doc).mtimeMs : undefined;
  const scenarios = ["render-overlay", "render-100-overlays", "render-plain-10k"];
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", join(repo, "bench", "main.ts"), "--quick", ...scenarios, "--json", json],
    { cwd: repo, env: { ...process.env, TMPDIR: scratch }, timeout: 230_000, maxBuffer: 16 * 1024 * 1024 },
  );
  const rep = JSON.parse(readFileSync(json, "utf8")) as Report;
  assert.equal(rep.quick, true);
  assert.deepEqual(rep.results.map((r) => r.name).sort(), [...scenarios].sort());
  for (const r of rep.results) {
    assert.equal(r.status, "ok", `${r.name}: ${r.reason}`);
    assert.equal(r.pairs, 1);
    const s = r.sluice!;
    assert.ok(Number.isFinite(s.medianMs) && s.medianMs > 0, `${r.name}: Sluice median ${s.medianMs}`);
    assert.ok((s.objects ?? 0) > 0, `${r.name}: objects`);
    assert.ok(Number.isFinite(s.objectsPerSec), `${r.name}: objects/s`);
    assert.ok((s.peakRssKb ?? 0) > 10_000, `${r.name}: peak RSS ${s.peakRssKb} KiB`);
    assert.ok(r.breakdown && r.breakdown.phases.length > 3, `${r.name}: breakdown`);
    for (const p of r.breakdown.phases) assert.ok(Number.isFinite(p.ms), `${r.name}: phase ${p.name}`);
    if (r.goal) assert.equal(r.goal.met, null, "a quick run does not judge goals");
    assert.ok(stdout.includes(r.name), `${r.name} in the printed table`);
  }
  for (const name of ["render-overlay", "render-100-overlays"]) {
    const r = rep.results.find((x) => x.name === name)!;
    assert.ok(r.peers.length >= 1, `${name}: has a peer`);
    for (const p of r.peers) {
      assert.ok(Number.isFinite(p.medianMs) && p.medianMs > 0, `${name}: ${p.label} median`);
      assert.ok(Number.isFinite(p.ratioMedian) && p.ratioMedian > 0, `${name}: ${p.label} ratio`);
      assert.equal(p.objects, r.sluice!.objects, `${name}: same object count on both sides`);
    }
  }
  const plain = rep.results.find((x) => x.name === "render-plain-10k")!;
  assert.equal(plain.peers.length, 0);
  assert.ok(plain.breakdown?.profile && plain.breakdown.profile.length > 0, "CPU profile summarised");
  assert.ok(rep.machine.cores > 0 && rep.machine.node.startsWith("v"));
  // (tsx keeps its compile cache there too: only the suite's own directories must be gone.)
  assert.deepEqual(
    readdirSync(scratch).filter((f) => f.startsWith("sluice-")),
    [],
    "generated inputs removed",
  );
  assert.equal(
    existsSync(doc) ? statSync(doc).mtimeMs : undefined,
    docBefore,
    "quick runs leave the doc alone",
  );
});
