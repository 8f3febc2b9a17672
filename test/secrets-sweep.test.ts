/**
 * The secrets sweep: a full `sluice serve` run whose secrets come from everywhere a secret can
 * come from — a SOPS-encrypted Secret, a plain Kubernetes Secret (base64 `data`), a variable
 * substituted from a Secret (`postBuild.substituteFrom`), a sensitive OpenTofu output
 * (`StackOutputs`, through a real `tofu apply`), Git basic-auth credentials, a notification
 * Provider's HMAC token and secret address, a webhook Receiver's token and an API token — then
 * everything Sluice says is collected: the log file, events, runs and statuses, every GET route of
 * the API (dashboard routes included) and the live event stream, /metrics, plans of the change
 * (text, JSON, Markdown — what pull-request comments carry), the stack run's report, every
 * notification received, the store's database file and the local target's own state. No secret
 * value, nor its base64, may appear in any of them. Positive controls show the values did reach the
 * workload (the pod serves them) so the sweep is not vacuous.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { generateIdentity, identityToRecipient } from "age-encryption";
import pino from "pino";
import { startServe } from "../src/cli/serve.js";
import { byKind, loadConfig } from "../src/config/index.js";
import { runStack, stackFromConfig } from "../src/infra/index.js";
import { formatPlanMarkdown, formatPlanText, planRevisions } from "../src/plan/index.js";
import { receiverPath, signBody, verifyWebhook } from "../src/receivers/index.js";
import { loadAgeIdentities } from "../src/sops/index.js";
import { createLocalTarget } from "../src/targets/local/index.js";
import { eventually, httpText, WEB_IMAGE } from "./support/agent.js";
import { startTestGitServer, WorkingCopy } from "./support/gitserver.js";

const BIN = process.env.SLUICE_BIN ?? join(homedir(), ".cache", "sluice", "bin");
const SOPS = join(BIN, "sops");
const TOFU = join(BIN, "tofu");
const TOFU_RC = join(homedir(), ".cache", "sluice", "tofu.rc");
const ENV = "secrets-sweep";
const PORT = 18637;

// Distinct, greppable values (a leak of any one is found by a plain substring search).
const S = {
  sops: "sops-secret-v1-Qx81",
  sops2: "sops-secret-v2-Rt55",
  plain: "plain-secret-v1-Lm27",
  plain2: "plain-secret-v2-Np90",
  subst: "subst-secret-Ka64",
  tofu: "tofu-sensitive-Wz13",
  gitPassword: "git-password-Hd42",
  hmacToken: "hmac-token-Ux77",
  hookPath: "address-path-secret-Ye35",
  receiverToken: "receiver-token-Gb18",
} as const;

function filesUnder(dir: string, skip: (p: string) => boolean = () => false): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (skip(p)) continue;
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p, skip));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

const secretManifest = (
  name: string,
  key: string,
  value: string,
  kind: "stringData" | "data" = "stringData",
) =>
  `apiVersion: v1\nkind: Secret\nmetadata: {name: ${name}}\n${kind}:\n  ${key}: ${kind === "data" ? Buffer.from(value).toString("base64") : value}\n`;

test("no secret value, nor its base64, appears in anything Sluice says or keeps", {
  timeout: 600_000,
}, async (t) => {
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  const dir = mkdtempSync(join(tmpdir(), "sluice-sweep-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

  // --- SOPS: an age key file and the real sops binary ----------------------------------------
  const identity = await generateIdentity();
  const recipient = await identityToRecipient(identity);
  const keyFile = join(dir, "age.key");
  writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 });
  const encrypt = (value: string) => {
    const plain = join(dir, "db.yaml");
    writeFileSync(plain, secretManifest("db", "password", value));
    const out = execFileSync(
      SOPS,
      ["--encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$", plain],
      {
        encoding: "utf8",
      },
    );
    rmSync(plain);
    return out;
  };

  // --- a Git server with basic auth, and the repository -------------------------------------
  const srv = await startTestGitServer({ auth: { username: "sluice", password: S.gitPassword } });
  cleanups.push(() => srv.stop());
  const app = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: ${WEB_IMAGE}
          command: ["sh", "-c", "mkdir -p /www && cat /s/db/password /s/plain/token /s/subst/value /s/tofu/password > /www/index.html && exec httpd -f -p 8080 -h /www"]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
          volumeMounts:
            - {name: db, mountPath: /s/db}
            - {name: plain, mountPath: /s/plain}
            - {name: subst, mountPath: /s/subst}
            - {name: tofu, mountPath: /s/tofu}
      volumes:
        - {name: db, secret: {secretName: db}}
        - {name: plain, secret: {secretName: plain}}
        - {name: subst, secret: {secretName: subst}}
        - {name: tofu, secret: {secretName: tofu}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
    - port: ${PORT}
      targetPort: 8080
`;
  await srv.createRepo("app", {
    "web/app.yaml": app,
    "web/db.enc.yaml": encrypt(S.sops),
    "web/plain.yaml": secretManifest("plain", "token", S.plain, "data"),
    "web/subst.yaml":
      'apiVersion: v1\nkind: Secret\nmetadata: {name: subst}\nstringData: {value: "${DB_PASSWORD}"}\n',
    "web/tofu.yaml":
      'apiVersion: v1\nkind: Secret\nmetadata: {name: tofu}\nstringData: {password: "${db_password}"}\n',
    "infra/db/main.tf": `variable "pw" {\n  type      = string\n  sensitive = true\n}\nresource "terraform_data" "pw" { input = var.pw }\noutput "db_password" {\n  value     = terraform_data.pw.output\n  sensitive = true\n}\n`,
  });
  const authed = srv.repoUrl("app").replace("http://", `http://sluice:${S.gitPassword}@`);
  const wc = await WorkingCopy.clone(authed);
  cleanups.push(() => rmSync(wc.dir, { recursive: true, force: true }));
  const base = (await wc.run(["rev-parse", "HEAD"])).trim();

  // --- a notification receiver (fails the first delivery, to exercise the failure path) -----
  const received: { headers: IncomingMessage["headers"]; body: string; verified: boolean }[] = [];
  const rcv = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    received.push({
      headers: req.headers,
      body: body.toString(),
      verified: verifyWebhook("generic-hmac", S.hmacToken, { headers: req.headers, body }).ok,
    });
    res.writeHead(received.length === 1 ? 503 : 200);
    res.end(received.length === 1 ? "try again" : "ok");
  });
  await new Promise<void>((r) => rcv.listen(0, "127.0.0.1", r));
  cleanups.push(() => {
    rcv.closeAllConnections();
    rcv.close();
  });
  const hookUrl = `http://127.0.0.1:${(rcv.address() as AddressInfo).port}/${S.hookPath}`;

  // --- the configuration ---------------------------------------------------------------------
  const state = join(dir, "state");
  const config = join(dir, "config");
  mkdirSync(config, { recursive: true });
  writeFileSync(
    join(config, "sluice.yaml"),
    `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: ${srv.repoUrl("app")}, interval: 2s, ref: {branch: main}, secretRef: {name: git-creds}}
---
apiVersion: v1
kind: Secret
metadata: {name: git-creds}
stringData: {username: sluice, password: ${S.gitPassword}}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec: {sourceRef: {name: app}, rules: [{branch: main, name: ${ENV}}]}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./web
  interval: 1h
  retryInterval: 2s
  prune: true
  timeout: 90s
  postBuild:
    substituteFrom:
      - {kind: Secret, name: vars}
      - {kind: StackOutputs, name: platform, unit: db}
---
apiVersion: v1
kind: Secret
metadata: {name: vars}
stringData: {DB_PASSWORD: ${S.subst}}
---
apiVersion: sluice.dev/v1alpha1
kind: Stack
metadata: {name: platform}
spec:
  units:
    - {name: db, path: infra/db, inputs: {pw: "\${TOFU_PW}"}}
---
apiVersion: v1
kind: Secret
metadata: {name: hook}
stringData: {address: "${hookUrl}", token: ${S.hmacToken}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: hook}
spec: {type: generic-hmac, secretRef: {name: hook}, timeout: 5s}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: all}
spec:
  providerRef: {name: hook}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: "*"}, {kind: GitRepository, name: "*"}]
---
apiVersion: v1
kind: Secret
metadata: {name: receiver-token}
stringData: {token: ${S.receiverToken}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: push}
spec:
  type: github
  events: [push]
  resources: [{kind: GitRepository, name: app}]
  secretRef: {name: receiver-token}
`,
  );

  // --- the sensitive stack output: a real tofu apply -----------------------------------------
  const loaded = loadConfig(config, config);
  const stackReport: unknown[] = [];
  const applied = await runStack({
    root: wc.dir,
    stack: stackFromConfig(byKind(loaded, "Stack")[0]!),
    action: "apply",
    env: ENV,
    stateDir: state,
    vars: { TOFU_PW: S.tofu },
    tofu: { binary: TOFU, cliConfigFile: TOFU_RC },
    onEvent: (e) => stackReport.push(e),
  });
  assert.ok(applied.ok, JSON.stringify(applied.units.map((u) => [u.unit, u.status, u.message])));
  stackReport.push(applied);

  // --- sluice serve ------------------------------------------------------------------------
  const logFile = join(dir, "sluice.log");
  const log = pino({ level: "debug" }, pino.destination({ dest: logFile, sync: true }));
  const serve = await startServe({
    config,
    stateDir: state,
    listen: "127.0.0.1:0",
    ageKeyFile: keyFile,
    log,
  });
  cleanups.push(async () => {
    await serve.stop().catch(() => {}); // stopped already unless the test failed early
    const local = await createLocalTarget({ stateDir: join(state, "local") });
    await local.destroy({ env: ENV, unit: "web" }).catch(() => {});
    await local.close();
  });
  const { store, agent } = serve;
  const token = store.addToken("sweep-viewer", "viewer");
  const operator = readFileSync(serve.tokenFile, "utf8").trim();
  const auth = { Authorization: `Bearer ${token}` };

  // The live event stream, as the dashboard reads it, for the whole run.
  let stream = "";
  const streamAbort = new AbortController();
  void fetch(`${serve.url}/api/v1/stream`, { headers: auth, signal: streamAbort.signal })
    .then(async (r) => {
      for await (const chunk of r.body as AsyncIterable<Uint8Array>) stream += Buffer.from(chunk).toString();
    })
    .catch(() => {});
  cleanups.push(() => streamAbort.abort());

  await eventually(
    () => store.getUnitStatus(ENV, "web")?.ready === "True",
    "Ready",
    180_000,
    () => store.getUnitStatus(ENV, "web"),
  );
  // Positive control: every value reached the workload.
  assert.equal(await httpText(PORT), `${S.sops}\n${S.plain}\n${S.subst}\n${S.tofu}`.replaceAll("\n", ""));

  // A change of the secrets, announced by a signed webhook; then a failing render that names a
  // secret variable next to an undefined one.
  await wc.write({
    "web/db.enc.yaml": encrypt(S.sops2),
    "web/plain.yaml": secretManifest("plain", "token", S.plain2, "data"),
  });
  await wc.run(["add", "-A"]);
  await wc.run(["commit", "-q", "-m", "rotate secrets"]);
  await wc.run(["push", "-q", "origin", "HEAD:main"]);
  const head = (await wc.run(["rev-parse", "HEAD"])).trim();
  const payload = JSON.stringify({
    ref: "refs/heads/main",
    after: head,
    repository: { clone_url: srv.repoUrl("app") },
  });
  const hook = await fetch(`${serve.url}${receiverPath("flux-system", "push", S.receiverToken)}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": "push",
      "x-github-delivery": "sweep-1",
      "x-hub-signature-256": signBody(S.receiverToken, payload),
    },
    body: payload,
  });
  assert.equal(hook.status, 200, await hook.text());
  await eventually(
    async () =>
      store.getUnitStatus(ENV, "web")?.lastAppliedRevision === `main@sha1:${head}` &&
      (await httpText(PORT).catch(() => "")) === `${S.sops2}${S.plain2}${S.subst}${S.tofu}`,
    "the rotated secrets applied",
    120_000,
    () => store.getUnitStatus(ENV, "web"),
  );
  // A forged webhook (wrong signature) and a replay: refused, and logged without payload or token.
  const forged = await fetch(`${serve.url}${receiverPath("flux-system", "push", S.receiverToken)}`, {
    method: "POST",
    headers: { "x-github-event": "push", "x-hub-signature-256": signBody("wrong", payload) },
    body: payload,
  });
  assert.equal(forged.status, 401);
  await wc.write({
    "web/bad.yaml":
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {a: "${NOPE}", b: "${DB_PASSWORD}", c: "${db_password}"}\n',
  });
  await wc.run(["add", "-A"]);
  await wc.run(["commit", "-q", "-m", "broken"]);
  await wc.run(["push", "-q", "origin", "HEAD:main"]);
  await agent.notifyPush({ sources: ["app"] });
  await eventually(() => store.getUnitStatus(ENV, "web")?.reason === "BuildFailed", "BuildFailed", 60_000);
  await eventually(
    () => received.filter((r) => r.verified).length >= 3,
    "notifications delivered",
    60_000,
    () => received.map((r) => r.body.slice(0, 200)),
  );

  // --- collect everything Sluice says --------------------------------------------------------
  const answers: Record<string, string> = {};
  const get = async (path: string, headers: Record<string, string> = auth) => {
    const r = await fetch(`${serve.url}${path}`, { headers });
    answers[path] = `${r.status} ${JSON.stringify([...r.headers])}\n${await r.text()}`;
    return r.status;
  };
  for (const p of [
    "/api/v1/environments",
    `/api/v1/environments/${ENV}`,
    `/api/v1/environments/${ENV}/rollouts`,
    "/api/v1/units",
    `/api/v1/units?env=${ENV}`,
    "/api/v1/sources",
    "/api/v1/runs?limit=1000",
    "/api/v1/events?limit=1000",
    "/api/v1/images",
    "/api/v1/builds",
    "/api/v1/matrix",
    "/api/v1/whoami",
  ])
    assert.ok([200, 501].includes(await get(p)), `${p}: ${answers[p]?.slice(0, 300)}`);
  assert.equal(await get("/api/v1/environments", { Authorization: `Bearer ${operator}` }), 200);
  for (const p of ["/metrics", "/healthz", "/readyz", "/"]) await get(p, {});
  await get("/api/v1/units", { Authorization: "Bearer not-a-token" });

  // Plans of the change, as `sluice plan` and pull-request comments show them.
  const ids = await loadAgeIdentities({ keyFile, env: {} });
  // `sluice plan` reads stack outputs from $SLUICE_STATE_DIR, like the CLI.
  const prior = process.env.SLUICE_STATE_DIR;
  process.env.SLUICE_STATE_DIR = state;
  const plan = await planRevisions({
    repo: wc.dir,
    base,
    head: "HEAD~1",
    config: loaded,
    ageIdentities: ids,
    vars: { TOFU_PW: S.tofu },
    stacks: { stateDir: state, tofu: { binary: TOFU, cliConfigFile: TOFU_RC } },
  }).finally(() => {
    if (prior === undefined) delete process.env.SLUICE_STATE_DIR;
    else process.env.SLUICE_STATE_DIR = prior;
  });
  const plans = [formatPlanText(plan), JSON.stringify(plan), formatPlanMarkdown(plan)].join("\n");
  assert.match(plans, /Secret\/db|Secret\/plain/, "the plan shows the rotated Secrets");

  streamAbort.abort();
  const recorded = JSON.stringify([
    store.listEvents({ limit: 100_000 }),
    store.listRuns({ limit: 100_000 }),
    store.listUnitStatus(),
    store.listEnvironments(),
  ]);
  await serve.stop();
  const logs = readFileSync(logFile, "utf8");
  const db = filesUnder(state, (p) => !/sluice\.db/.test(p) && statSync(p).isFile())
    .map((f) => readFileSync(f).toString("latin1"))
    .join("\n");
  // The local target's own state (its pod volume files must hold the values, as a kubelet's tmpfs does).
  const target = filesUnder(join(state, "local"), (p) => /\/pods$/.test(p))
    .map((f) => readFileSync(f).toString("latin1"))
    .join("\n");
  const podFiles = filesUnder(join(state, "local", "pods"))
    .map((f) => readFileSync(f).toString("latin1"))
    .join("\n");
  const notifications = JSON.stringify(received);
  // The Git cache keeps no credential (git is given them per command, in a header).
  const gitCache = filesUnder(join(state, "git"), (p) => /\/(snapshots|objects)$/.test(p))
    .map((f) => readFileSync(f).toString("latin1"))
    .join("\n");

  const corpus: [string, string][] = [
    ["the log file", logs],
    ["events, runs, statuses, environments", recorded],
    ["the store's database files", db],
    ["API answers", JSON.stringify(answers)],
    ["the event stream", stream],
    ["plans (text, JSON, Markdown)", plans],
    ["the stack run's report", JSON.stringify(stackReport)],
    ["notifications received", notifications],
    ["the local target's state", target],
    ["the Git cache (configuration, refs)", gitCache],
  ];
  for (const [where, text] of corpus) assert.ok(text.length > 0, `${where}: collected something`);
  const leaks: string[] = [];
  for (const [name, value] of Object.entries(S)) {
    for (const form of [value, Buffer.from(value).toString("base64")]) {
      for (const [where, text] of corpus)
        if (text.includes(form)) leaks.push(`${name} (${form === value ? "plain" : "base64"}) in ${where}`);
    }
  }
  assert.deepEqual(leaks, [], "secret values leaked");
  for (const [where, text] of corpus)
    assert.ok(!text.includes(token) && !text.includes(operator), `an API token in ${where}`);

  // Positive controls: the sweep looked at real traffic.
  assert.ok(received.filter((r) => r.verified).length >= 3, "signed notifications were received");
  assert.ok(/ReconciliationSucceeded/.test(notifications) && /BuildFailed/.test(notifications));
  assert.ok(/webhook rejected/.test(logs), "the forged webhook was logged (without its payload)");
  assert.ok(/ReconciliationSucceeded/.test(stream), "the stream carried the run");
  for (const v of [S.sops2, S.plain2, S.subst, S.tofu])
    assert.ok(podFiles.includes(v), "the pod's volume files hold the values");
  process.stdout.write(
    `secrets sweep: ${Object.keys(S).length} secrets × 2 forms searched in ${corpus.length} sources (${corpus.reduce((a, [, x]) => a + x.length, 0)} bytes), ${received.length} notifications, ${Object.keys(answers).length} API answers\n`,
  );
});
