/**
 * One agent per state directory, and nothing lost when the agent is killed: these tests run the
 * store in real child processes and SIGKILL them.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { isSluiceError } from "../core/index.js";
import { processStartTicks } from "./_lock.js";
import { openStore, StoreLockedError } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "sluice-lock-"));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});
let n = 0;
const freshDir = () => join(root, `s${n++}`);
const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const INDEX = new URL("./index.ts", import.meta.url).href;
const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `body` (ESM, with `openStore` in scope and the state dir as `dir`) in a child node process. */
function child(
  dir: string,
  body: string,
): { proc: ChildProcess; lines: string[]; waitFor: (re: RegExp) => Promise<string> } {
  const code = `const { openStore } = await import(${JSON.stringify(INDEX)}); const dir = process.argv[1];\n${body}`;
  const proc = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code, dir], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(proc);
  const lines: string[] = [];
  let partial = "";
  let stderr = "";
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    partial += chunk;
    const parts = partial.split("\n");
    partial = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.re.test(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (c: string) => {
    stderr += c;
  });
  const waitFor = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find((l) => re.test(l));
      if (seen) return resolve(seen);
      const timer = setTimeout(
        () => reject(new Error(`child did not print ${re} within 20 s; stderr: ${stderr}`)),
        20_000,
      );
      proc.once("exit", (c, sig) =>
        reject(new Error(`child exited (${c ?? sig}) before printing ${re}; stderr: ${stderr}`)),
      );
      waiters.push({
        re,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  return { proc, lines, waitFor };
}

function killHard(proc: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const timer = setTimeout(
      () => reject(new Error(`pid ${proc.pid} did not die within 10 s of SIGKILL`)),
      10_000,
    );
    proc.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill("SIGKILL");
  });
}

const ENV = `{ name: "main", branch: "main", rule: null, target: "local", protected: true, ttlSeconds: null, expiresAt: null, state: "active", revision: null }`;

test("a second agent on the same state directory is refused, naming the holder's pid; a killed holder's lock is taken over", async () => {
  const dir = freshDir();
  const holder = child(
    dir,
    `const s = openStore(dir); s.upsertEnvironment(${ENV}); console.log("open " + process.pid); setInterval(() => {}, 1000);`,
  );
  await holder.waitFor(/^open \d+$/);
  const pid = holder.proc.pid!;

  assert.throws(
    () => openStore(dir),
    (e: unknown) => {
      assert.ok(e instanceof StoreLockedError);
      assert.equal(e.code, "Locked");
      assert.match(
        e.message,
        new RegExp(`^state directory ${reEscape(dir)} is in use by sluice pid ${pid} started at \\d{4}-`),
      );
      assert.match(e.message, /stop it or use another --state-dir/);
      return true;
    },
  );
  const lock = JSON.parse(readFileSync(join(dir, "agent.lock"), "utf8"));
  assert.deepEqual(
    [lock.pid, lock.host],
    [pid, hostname()],
    "the refused opener left the holder's lock alone",
  );

  // The CLI can still read while the agent runs.
  const ro = openStore(dir, { readOnly: true });
  assert.equal(ro.getEnvironment("main")?.protected, true);
  ro.close();

  await killHard(holder.proc);
  const s = openStore(dir);
  try {
    assert.equal(s.warnings.length, 1);
    assert.match(s.warnings[0]!, new RegExp(`stale lock.*pid ${pid}.*no longer running`));
    assert.equal(JSON.parse(readFileSync(join(dir, "agent.lock"), "utf8")).pid, process.pid);
    assert.equal(s.getEnvironment("main")?.name, "main", "the dead agent's data is there");
  } finally {
    s.close();
  }
  assert.equal(existsSync(join(dir, "agent.lock")), false, "close() releases the lock");
  const clean = openStore(dir);
  assert.deepEqual(clean.warnings, [], "a cleanly released lock leaves nothing to warn about");
  clean.close();
});

test("the same process cannot open one state directory twice", () => {
  const dir = freshDir();
  const s = openStore(dir);
  try {
    assert.throws(
      () => openStore(dir),
      (e: unknown) => isSluiceError(e, "Locked") && /already open/.test(e.message),
    );
  } finally {
    s.close();
  }
  openStore(dir).close();
});

test("a lock naming our own pid from an earlier incarnation (restarted container) is stale", () => {
  const dir = freshDir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "agent.lock"),
    JSON.stringify({ pid: process.pid, host: hostname(), startedAt: "2020-01-01T00:00:00.000Z" }),
  );
  const s = openStore(dir);
  try {
    assert.match(s.warnings[0] ?? "", /stale lock.*this process's pid/);
  } finally {
    s.close();
  }
});

test("a live pid holds the lock only while it is the same process: a reused pid or a reboot makes it stale", async () => {
  const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
  children.add(sleeper);
  await new Promise((r) => setTimeout(r, 100));
  const pid = sleeper.pid!;
  const ticks = processStartTicks(pid)!;
  const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  const lockIn = (info: object) => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "agent.lock"),
      JSON.stringify({ pid, host: hostname(), startedAt: "2024-01-01T00:00:00.000Z", ...info }),
    );
    return dir;
  };
  const warningOf = (dir: string) => {
    const s = openStore(dir);
    s.close();
    return s.warnings[0] ?? "";
  };
  try {
    assert.ok(Number.isInteger(ticks));
    for (const info of [{ bootId, startTicks: ticks }, {}]) {
      assert.throws(
        () => openStore(lockIn(info)),
        (e: unknown) => e instanceof StoreLockedError && e.message.includes(`pid ${pid}`),
        "the same process (or no way to tell) means held",
      );
    }
    assert.match(
      warningOf(lockIn({ bootId, startTicks: ticks - 1 })),
      new RegExp(`stale lock.*pid ${pid} now belongs to another process`),
    );
    assert.match(
      warningOf(lockIn({ bootId: "another-boot", startTicks: ticks })),
      /stale lock.*before this host rebooted/,
    );
  } finally {
    await killHard(sleeper);
  }
});

test("a lock from another host is held while its holder refreshes it, stale after two quiet minutes", () => {
  const remote = freshDir();
  mkdirSync(remote, { recursive: true });
  const lockFile = join(remote, "agent.lock");
  writeFileSync(lockFile, JSON.stringify({ pid: 1, host: "build-07", startedAt: "2024-01-01T00:00:00Z" }));
  assert.throws(
    () => openStore(remote),
    (e: unknown) => e instanceof StoreLockedError && /pid 1 on host build-07/.test(e.message),
  );
  const old = new Date(Date.now() - 10 * 60_000);
  utimesSync(lockFile, old, old);
  const s = openStore(remote);
  s.close();
  assert.match(s.warnings[0] ?? "", /stale lock.*pid 1 on host build-07.*has not refreshed it for \d+ s/);
});

test("an open store keeps touching its lock so other hosts see it alive", (t) => {
  t.mock.timers.enable({ apis: ["setInterval"] });
  const dir = freshDir();
  const s = openStore(dir);
  try {
    const lockFile = join(dir, "agent.lock");
    const old = new Date(Date.now() - 10 * 60_000);
    utimesSync(lockFile, old, old);
    t.mock.timers.tick(15_000);
    assert.ok(Date.now() - statSync(lockFile).mtimeMs < 5_000, "refreshed");
  } finally {
    s.close();
  }
});

test("an unreadable lock file is stale", () => {
  const garbled = freshDir();
  mkdirSync(garbled, { recursive: true });
  writeFileSync(join(garbled, "agent.lock"), "");
  const s = openStore(garbled);
  try {
    assert.match(s.warnings[0] ?? "", /stale lock.*empty or unreadable/);
  } finally {
    s.close();
  }
});

test("kill -9 mid-run, repeatedly: the run is marked interrupted on the next open, every committed event and a whole inventory survive", async () => {
  const dir = freshDir();
  const sizeOf = (gen: number) => 20 + ((gen * 37) % 300);
  let total = 0;
  for (let cycle = 0; cycle < 5; cycle++) {
    // The child starts a run, then writes events and whole inventory generations as fast as it can,
    // printing each id only after its transaction committed. We kill it at a random moment of that.
    const agent = child(
      dir,
      `const s = openStore(dir, { eventRetention: 1000000 });
       s.upsertEnvironment(${ENV});
       const id = s.startRun({ env: "main", unit: "app", revision: "main@sha1:${cycle}", trigger: "webhook" });
       console.log("run " + id);
       let gen = ${cycle * 100_000};
       const tick = () => {
         for (let i = 0; i < 10; i++) {
           const e = s.addEvent({ env: "main", unit: "app", severity: "info", reason: "Progressing", message: "step " + i });
           process.stdout.write("ev " + e.id + "\\n");
         }
         gen++;
         const refs = Array.from({ length: (${sizeOf.toString()})(gen) }, (_, k) => ({ apiVersion: "v1", kind: "ConfigMap", namespace: "g" + gen, name: "cm-" + k }));
         s.setInventory("main", "app", refs, "gen-" + gen);
         process.stdout.write("inv " + gen + "\\n");
         setImmediate(tick);
       };
       tick();`,
    );
    const runId = Number((await agent.waitFor(/^run \d+$/)).split(" ")[1]);
    await agent.waitFor(/^inv \d+$/);
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 150));
    await killHard(agent.proc);
    assert.equal(agent.proc.signalCode, "SIGKILL");

    const committed = agent.lines.filter((l) => l.startsWith("ev ")).map((l) => Number(l.slice(3)));
    const gens = agent.lines.filter((l) => l.startsWith("inv ")).map((l) => Number(l.slice(4)));
    total += committed.length;

    const s = openStore(dir);
    try {
      assert.match(s.warnings[0] ?? "", new RegExp(`stale lock.*pid ${agent.proc.pid}`));
      assert.equal(
        s.getRun(runId)?.result,
        "running",
        "the store itself says running until start-up marks it",
      );
      assert.equal(s.markInterruptedRuns(), 1, "only the killed agent's run was still open");
      const run = s.getRun(runId)!;
      assert.equal(run.result, "interrupted");
      assert.equal(run.revision, `main@sha1:${cycle}`);
      assert.ok(run.endedAt);
      assert.equal(
        s.listRuns({ result: "interrupted", limit: 100 }).length,
        cycle + 1,
        "earlier cycles' runs are kept",
      );

      const stored = new Set(s.listEvents({ env: "main", limit: 10_000 }).map((e) => e.id));
      assert.equal(stored.size >= total, true);
      const lost = committed.filter((id) => !stored.has(id));
      assert.deepEqual(lost, [], "every event reported as written is in the store");

      const inv = s.getInventory("main", "app")!;
      const gen = Number(inv.revision!.slice(4));
      assert.ok(gen >= Math.max(...gens), `inventory generation ${gen} is at least the last one reported`);
      assert.equal(inv.refs.length, sizeOf(gen), "the inventory is one whole generation");
      assert.ok(
        inv.refs.every((r) => r.namespace === `g${gen}`),
        "no mix of two generations",
      );
      assert.deepEqual(s.integrityCheck(), []);
    } finally {
      s.close();
    }
  }
});
