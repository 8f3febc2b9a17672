import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Command } from "commander";
import { makeFixture } from "../server/_testkit.js";
import { type ApiServer, createApiServer } from "../server/index.js";
import { age, formatTable, registerRemoteCommands } from "./remote.js";

const fx = makeFixture();
let api: ApiServer;
const noStateDir = join(fx.dir, "no-state");

before(async () => {
  api = await createApiServer({ agent: fx.agent, store: fx.store, log: fx.log, heartbeatMs: 100 });
});
after(async () => {
  await api.close();
  fx.cleanup();
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `sluice ARGS` in-process against the test server. */
async function sluice(
  args: string[],
  opts: {
    env?: Record<string, string | undefined>;
    signal?: AbortSignal;
    onOut?: (all: string) => void;
  } = {},
): Promise<Result> {
  let stdout = "";
  let stderr = "";
  const program = new Command("sluice").exitOverride();
  registerRemoteCommands(program, {
    stdout: (s) => {
      stdout += s;
      opts.onOut?.(stdout);
    },
    stderr: (s) => {
      stderr += s;
    },
    env: { SLUICE_URL: api.url, SLUICE_TOKEN: fx.operator, SLUICE_STATE_DIR: noStateDir, ...opts.env },
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const saved = process.exitCode;
  process.exitCode = undefined;
  let code: number;
  try {
    await program.parseAsync(["node", "sluice", ...args]);
    code = typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    code = 2;
    stderr += String(e);
  } finally {
    process.exitCode = saved;
  }
  return { code, stdout, stderr };
}

/** The column each header word starts at, and a check that every row has text starting there. */
function assertAligned(table: string, header: string[]) {
  const lines = table.trimEnd().split("\n");
  const head = lines[0]!;
  assert.deepEqual(head.split(/ {3,}/), header);
  const starts = header.map((h) => head.indexOf(h));
  for (const line of lines.slice(1)) {
    for (const s of starts.slice(1)) {
      assert.equal(line[s - 1], " ", `column at ${s} in ${JSON.stringify(line)}`);
      assert.notEqual(line[s], " ", `column at ${s} in ${JSON.stringify(line)}`);
    }
  }
}

describe("sluice get", () => {
  test("units: an aligned table like flux get", async () => {
    const r = await sluice(["get", "units"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const header = ["ENV", "UNIT", "READY", "SUSPENDED", "REASON", "REVISION", "AGE", "MESSAGE"];
    assertAligned(r.stdout, header);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 4);
    assert.match(
      lines[1]!,
      /^main\s+api\s+True\s+False\s+ReconciliationSucceeded\s+main@sha1:0d1a26e67d8f\s+\d+s\s+Applied revision/,
    );
    // The failing unit's message is made one line and free of terminal escapes.
    assert.match(
      lines[3]!,
      /^preview-x\s+api\s+False\s+False\s+BuildFailed\s+.*kustomize build failed: line 3: bad \[31m red$/,
    );
    assert.ok(!r.stdout.includes("\u001b"));
  });

  test("units -o json and --env", async () => {
    const r = await sluice(["get", "units", "-o", "json", "--env", "main"]);
    assert.equal(r.code, 0, r.stderr);
    const units = JSON.parse(r.stdout);
    assert.deepEqual(
      units.map((u: any) => [u.env, u.unit, u.ready]),
      [
        ["main", "api", "True"],
        ["main", "db", "True"],
      ],
    );
    assert.equal(units[0].lastAppliedRevision, "main@sha1:0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");
  });

  test("envs, sources and runs", async () => {
    const envs = await sluice(["get", "envs"]);
    assert.equal(envs.code, 0, envs.stderr);
    assertAligned(envs.stdout, [
      "NAME",
      "BRANCH",
      "TARGET",
      "STATE",
      "REVISION",
      "PROTECTED",
      "AGE",
      "EXPIRES",
    ]);
    assert.match(envs.stdout, /\nmain\s+main\s+local\s+active\s+main@sha1:0d1a26e67d8f\s+yes\s/);
    assert.match(envs.stdout, /\npreview-x\s+feature\/x\s+local\s+active\s.*\sno\s/);

    const src = await sluice(["get", "sources"]);
    assert.equal(src.code, 0, src.stderr);
    assertAligned(src.stdout, ["NAME", "URL", "READY", "BRANCHES", "LAST FETCH", "MESSAGE"]);
    assert.match(
      src.stdout,
      /flux-system\/app\s+https:\/\/\*\*\*@git\.example\.com\/org\/app\.git\s+True\s+2\s/,
    );

    const runs = await sluice(["get", "runs", "--env", "main"]);
    assert.equal(runs.code, 0, runs.stderr);
    assert.match(runs.stdout, /^ID\s+ENV\s+UNIT\s+RESULT\s+TRIGGER/);
    assert.match(
      runs.stdout,
      /\n1\s+main\s+api\s+succeeded\s+webhook\s+main@sha1:0d1a26e67d8f\s.*2 created, 1 unchanged/,
    );
    const json = await sluice(["get", "runs", "-o", "json", "--unit", "api", "--limit", "1"]);
    assert.equal(JSON.parse(json.stdout)[0].stages[0].name, "apply");
  });

  test("an empty list says so on stderr; -o json prints []", async () => {
    const t = await sluice(["get", "units", "--env", "nope"]);
    assert.equal(t.code, 0);
    assert.equal(t.stdout, "");
    assert.match(t.stderr, /no units found/);
    const j = await sluice(["get", "units", "--env", "nope", "-o", "json"]);
    assert.deepEqual(JSON.parse(j.stdout), []);
  });
});

describe("actions", () => {
  test("reconcile with --env and --with-source reaches the agent", async () => {
    const n = fx.agent.reconciles.length;
    const r = await sluice(["reconcile", "api", "--env", "main", "--with-source"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /reconcile of unit api in environment main queued \(source refreshed\)/);
    assert.deepEqual(fx.agent.reconciles.slice(n), [{ env: "main", unit: "api", withSource: true }]);
  });

  test("without --env: the one environment with the unit, or an error naming the choices", async () => {
    const n = fx.agent.reconciles.length;
    const one = await sluice(["reconcile", "db"]);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(fx.agent.reconciles.slice(n), [{ env: "main", unit: "db", withSource: false }]);
    const two = await sluice(["reconcile", "api"]);
    assert.equal(two.code, 2);
    assert.equal(two.stdout, "");
    assert.match(
      two.stderr,
      /^error: unit api exists in 2 environments; choose one\nhint: --env main \| --env preview-x\n$/,
    );
  });

  test("suspend and resume", async () => {
    const s = await sluice(["suspend", "db", "--env", "main"]);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /unit db in environment main suspended/);
    assert.equal(fx.store.getUnitStatus("main", "db")?.suspended, true);
    const units = await sluice(["get", "units", "--env", "main"]);
    assert.match(units.stdout, /\nmain\s+db\s+True\s+True\s/);
    const r = await sluice(["resume", "db", "--env", "main"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /resumed/);
    assert.equal(fx.store.getUnitStatus("main", "db")?.suspended, false);
  });

  test("an unknown unit is an error with the server's message (exit 2)", async () => {
    const r = await sluice(["reconcile", "nope", "--env", "main"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "error: unit nope of environment main does not exist\n");
  });

  test("a viewer cannot act (exit 2, forbidden)", async () => {
    const r = await sluice(["suspend", "api", "--env", "main"], { env: { SLUICE_TOKEN: fx.viewer } });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: suspend needs an operator token; token dash is a viewer\nhint: /);
    assert.equal(fx.store.getUnitStatus("main", "api")?.suspended, false);
  });
});

describe("connection and credentials", () => {
  test("no token or a wrong one: exit 2 with a hint", async () => {
    const none = await sluice(["get", "units"], { env: { SLUICE_TOKEN: undefined } });
    assert.equal(none.code, 2);
    assert.match(
      none.stderr,
      /^error: the Sluice API at http:\/\/127\.0\.0\.1:\d+ refused the request: a bearer token is required/,
    );
    assert.match(none.stderr, /hint: set SLUICE_TOKEN/);
    const wrong = await sluice(["get", "units", "--token", "not-a-token"]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /the bearer token is not valid/);
    assert.ok(!wrong.stderr.includes("not-a-token"), "the token is printed");
  });

  test("a local agent's operator-token file is used when no token is given", async () => {
    const state = join(fx.dir, "serve-state");
    mkdirSync(state, { recursive: true });
    writeFileSync(join(state, "operator-token"), `${fx.operator}\n`, { mode: 0o600 });
    const r = await sluice(["get", "envs", "-o", "json"], {
      env: { SLUICE_TOKEN: undefined, SLUICE_STATE_DIR: state },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).length, 2);
    const f = await sluice(["get", "envs", "-o", "json", "--token-file", join(state, "operator-token")], {
      env: { SLUICE_TOKEN: undefined },
    });
    assert.equal(f.code, 0, f.stderr);
  });

  test("an unreachable server: exit 2 and a message saying where and what to do", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const r = await sluice(["get", "units"], { env: { SLUICE_URL: url } });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      new RegExp(
        `^error: cannot reach the Sluice API at http://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}; is \`sluice serve\` running\\?\\n`,
      ),
    );
    const flag = await sluice(["reconcile", "api", "--env", "main", "--url", url]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /cannot reach the Sluice API/);
  });

  test("a URL that is not http(s) is refused before any request", async () => {
    const r = await sluice(["get", "units", "--url", "file:///etc/passwd"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /expected http:\/\/ or https:\/\//);
  });
});

describe("sluice events", () => {
  test("a table, and -o json", async () => {
    const t = await sluice(["events", "--env", "preview-x"]);
    assert.equal(t.code, 0, t.stderr);
    assertAligned(t.stdout, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert.match(t.stdout, /\n\d+s\s+Error\s+BuildFailed\s+preview-x\/api\s+bad\n$/);
    const j = await sluice(["events", "--unit", "api", "-o", "json"]);
    const events = JSON.parse(j.stdout);
    assert.ok(events.length >= 2);
    assert.ok(events.every((e: any) => e.unit === "api"));
  });

  test("--watch prints new events as the stream reports changes, until stopped", async () => {
    const ac = new AbortController();
    let added = false;
    const done = sluice(["events", "--watch", "--env", "main"], {
      signal: ac.signal,
      onOut: (all) => {
        if (!added && all.includes("ReconciliationSucceeded")) {
          added = true;
          // Another environment's event must not show; this one must.
          fx.store.addEvent({
            env: "preview-x",
            unit: "api",
            severity: "info",
            reason: "Other",
            message: "x",
          });
          fx.store.addEvent({
            env: "main",
            unit: "db",
            severity: "warning",
            reason: "DriftCorrected",
            message: "fixed",
          });
          fx.agent.emit("change", { type: "run", env: "main", unit: "db", runId: 9, result: "succeeded" });
        }
        if (all.includes("DriftCorrected")) ac.abort();
      },
    });
    const timer = setTimeout(() => ac.abort(), 10_000);
    const r = await done;
    clearTimeout(timer);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^LAST SEEN\s+TYPE/);
    assert.match(r.stdout, /\n\d+s\s+Warning\s+DriftCorrected\s+main\/db\s+fixed\n/);
    assert.ok(!r.stdout.includes("Other"));
    assert.equal(r.stdout.match(/LAST SEEN/g)?.length, 1, "header printed once");
  });

  test("--watch -o json prints one event per line", async () => {
    const ac = new AbortController();
    const lines: string[] = [];
    let added = false;
    const r = await sluice(["events", "-w", "-o", "json", "--unit", "api"], {
      signal: ac.signal,
      onOut: (all) => {
        lines.splice(0, lines.length, ...all.trimEnd().split("\n"));
        if (!added) {
          added = true;
          setTimeout(() => {
            fx.store.addEvent({
              env: "main",
              unit: "api",
              severity: "info",
              reason: "Watched",
              message: "y",
            });
            // No change event: the heartbeat alone brings it within a period.
          }, 50);
        }
        if (all.includes('"Watched"')) ac.abort();
      },
    });
    assert.equal(r.code, 0, r.stderr);
    const parsed = lines.map((l) => JSON.parse(l));
    assert.equal(parsed.at(-1).reason, "Watched");
    assert.ok(parsed.every((e) => e.unit === "api"));
  });

  test("--watch fails with exit 2 when the server goes away", async () => {
    const other = await createApiServer({
      agent: fx.agent,
      store: fx.store,
      log: fx.log,
      heartbeatMs: 60_000,
    });
    const running = sluice(["events", "--watch"], { env: { SLUICE_URL: other.url } });
    const deadline = Date.now() + 5_000;
    while (other.streamCount() === 0 && Date.now() < deadline) await new Promise((w) => setTimeout(w, 10));
    assert.equal(other.streamCount(), 1);
    await other.close();
    const r = await running;
    assert.equal(r.code, 2);
    assert.match(r.stderr, /event stream from http:\/\/127\.0\.0\.1:\d+ ended/);
  });
});

describe("formatting", () => {
  test("formatTable pads all but the last column; age is kubectl-like", () => {
    assert.equal(
      formatTable(
        ["A", "BB"],
        [
          ["xxx", "y"],
          ["z", ""],
        ],
      ),
      "A     BB\nxxx   y\nz\n",
    );
    const now = Date.parse("2024-01-10T00:00:00Z");
    assert.equal(age("2024-01-09T23:59:30Z", now), "30s");
    assert.equal(age("2024-01-09T23:50:00Z", now), "10m");
    assert.equal(age("2024-01-09T20:00:00Z", now), "4h");
    assert.equal(age("2024-01-01T00:00:00Z", now), "9d");
    assert.equal(age(null, now), "-");
  });
});
