/**
 * Secret hygiene across a full reconcile: a SOPS-encrypted Secret, a plain Secret and a secret
 * variable from `substituteFrom` go through render, apply, status, events, runs, logs, the API and
 * /metrics — and none of their values appears in any of them.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { test } from "node:test";
import { generateIdentity, identityToRecipient } from "age-encryption";
import pino from "pino";
import { createApiServer } from "../src/server/index.js";
import { eventually, fluxConfig, harness, webApp } from "./support/agent.js";

const SOPS = join(process.env.SLUICE_BIN ?? join(homedir(), ".cache", "sluice", "bin"), "sops");
const SECRETS = ["sops-plain-value-4711", "plain-secret-value-0815", "substituted-secret-value-1234"];

function filesUnder(dir: string, skip: (p: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (skip(p)) continue;
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, skip));
    else out.push(p);
  }
  return out;
}

test("no secret value reaches logs, events, runs, status, the API, metrics or target state", async (t) => {
  const identity = await generateIdentity();
  const recipient = await identityToRecipient(identity);
  const encrypted = join(tmpdir(), `sluice-secret-${process.pid}.yaml`);
  writeFileSync(
    encrypted,
    `apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: ${SECRETS[0]}\n`,
  );
  const enc = execFileSync(
    SOPS,
    ["--encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$", encrypted],
    {
      encoding: "utf8",
    },
  );
  const h = await harness("app", {
    "web/app.yaml": webApp({ name: "web", message: "hi", port: 18495 }),
    "web/db.enc.yaml": enc,
    "web/plain.yaml": `apiVersion: v1\nkind: Secret\nmetadata: {name: plain}\nstringData: {token: ${SECRETS[1]}}\n`,
    "web/cm.yaml":
      'apiVersion: v1\nkind: Secret\nmetadata: {name: subst}\nstringData: {value: "${DB_PASSWORD}"}\n',
  });
  t.after(() => h.cleanup());
  let logs = "";
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs += chunk.toString();
      done();
    },
  });
  const log = pino({ level: "debug" }, sink);
  const { agent, store } = await h.startAgent(
    fluxConfig({
      env: "secrets",
      units: ["web"],
      unitSpec: "  postBuild:\n    substituteFrom: [{kind: Secret, name: vars}]\n",
      extra: `---\napiVersion: v1\nkind: Secret\nmetadata: {name: vars}\nstringData: {DB_PASSWORD: ${SECRETS[2]}}\n`,
    }),
    { log, ageIdentities: { identities: [identity] } },
  );
  await eventually(
    () => store.getUnitStatus("secrets", "web")?.ready === "True",
    "Ready",
    60_000,
    () => store.listUnitStatus(),
  );

  // A failing reconcile too: its error message must not carry values either.
  await h.commitAndPush(
    {
      "web/bad.yaml":
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {a: "${NOPE}", b: "${DB_PASSWORD}"}\n',
    },
    "main",
  );
  await agent.notifyPush({ sources: ["app"] });
  await eventually(() => store.getUnitStatus("secrets", "web")?.reason === "BuildFailed", "BuildFailed");

  const token = store.addToken("t", "viewer");
  const api = await createApiServer({ agent, store, log });
  t.after(() => api.close());
  let answers = "";
  for (const path of ["environments", "units", "sources", "runs", "events?limit=1000"]) {
    const r = await fetch(`${api.url}/api/v1/${path}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    answers += await r.text();
  }
  answers += await (await fetch(`${api.url}/metrics`)).text();

  const recorded = JSON.stringify([
    store.listEvents({ limit: 10_000 }),
    store.listRuns({ limit: 1000 }),
    store.listUnitStatus(),
    store.listEnvironments(),
  ]);
  // The local target's own state (not the pod volume files, which must hold the values for the
  // containers, like a kubelet's tmpfs).
  const state = filesUnder(
    join(h.dir, "state"),
    (p) => /\/(pods|git|run|config)$/.test(p) || /sluice\.db/.test(p),
  )
    .map((f) => readFileSync(f, "utf8"))
    .join("\n");
  for (const secret of SECRETS) {
    for (const [where, text] of [
      ["logs", logs],
      ["store records", recorded],
      ["API answers and metrics", answers],
      ["target state", state],
    ] as const) {
      assert.ok(!text.includes(secret), `${secret} found in ${where}`);
    }
  }
  assert.ok(
    logs.length > 0 && answers.length > 0 && recorded.length > 0,
    "the collected texts are not empty",
  );
});
