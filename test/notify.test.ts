/**
 * Notifications: Flux Provider/Alert from configuration, delivered by the Notifier to real HTTP
 * receivers on 127.0.0.1 (a generic-hmac receiver verifies the signature with the same code the
 * push receivers use), commit statuses through the forge recorder, and a real agent whose failing
 * reconcile posts one notification.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { type Config, loadConfig } from "../src/config/index.js";
import { isSluiceError } from "../src/core/index.js";
import { ForgeRecorder } from "../src/forges/_testkit.js";
import {
  alertRejects,
  eventFromAgent,
  type NotificationEvent,
  Notifier,
  type NotifyInput,
  providerForRepository,
  resolveNotifications,
} from "../src/notify/index.js";
import { verifyWebhook } from "../src/receivers/index.js";
import { eventually, harness } from "./support/agent.js";
import { tree } from "./support/tmp.js";

interface Received {
  headers: IncomingMessage["headers"];
  body: Buffer;
  at: number;
  verified?: boolean;
}

/** An HTTP receiver on loopback; `answer` picks each response's status (default 200). */
async function receiver(opts: { hmacToken?: string; answer?: (n: number) => number } = {}) {
  const got: Received[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const r: Received = { headers: req.headers, body: Buffer.concat(chunks), at: Date.now() };
    if (opts.hmacToken)
      r.verified = verifyWebhook("generic-hmac", opts.hmacToken, { headers: req.headers, body: r.body }).ok;
    got.push(r);
    const status = r.verified === false ? 401 : (opts.answer?.(got.length) ?? 200);
    res.writeHead(status, { "content-type": "text/plain" });
    res.end(status === 200 ? "ok" : "no");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url, got, json: (i: number) => JSON.parse(got[i]!.body.toString()) as NotificationEvent };
}

function config(yaml: string): Config {
  return loadConfig(tree({ "notify.yaml": yaml }), ".");
}

const V = "notification.toolkit.fluxcd.io/v1beta3";
const provider = (name: string, type: string, secret: Record<string, string>, extra = "") => `---
apiVersion: v1
kind: Secret
metadata: {name: ${name}-secret, namespace: flux-system}
stringData: ${JSON.stringify(secret)}
---
apiVersion: ${V}
kind: Provider
metadata: {name: ${name}, namespace: flux-system}
spec: {type: ${type}, secretRef: {name: ${name}-secret}${extra}}
`;
const alert = (name: string, prov: string, spec: string) => `---
apiVersion: ${V}
kind: Alert
metadata: {name: ${name}, namespace: flux-system}
spec:
  providerRef: {name: ${prov}}
${spec}
`;

const ev = (over: Partial<NotifyInput> = {}): NotifyInput => ({
  involvedObject: {
    kind: "Kustomization",
    name: "web",
    namespace: "flux-system",
    apiVersion: "kustomize.toolkit.fluxcd.io/v1",
  },
  severity: "error",
  reason: "BuildFailed",
  message: "kustomize build failed",
  metadata: { "kustomize.toolkit.fluxcd.io/revision": `main@sha1:${"a".repeat(40)}` },
  ...over,
});

test("generic-hmac: a signed Flux event, errors only, secrets masked", async () => {
  const TOKEN = "hmac-key-0123456789";
  const rcv = await receiver({ hmacToken: TOKEN });
  const n = Notifier.fromConfig(
    config(
      provider("hmac", "generic-hmac", { address: rcv.url, token: TOKEN }) +
        alert(
          "errors",
          "hmac",
          "  eventSeverity: error\n  eventSources: [{kind: Kustomization, name: '*'}]\n  summary: cluster local",
        ),
    ),
    { scrub: (s) => s.replaceAll("hunter2", "***"), dedupeMs: 0 },
  );
  n.notify(ev({ severity: "info", reason: "ReconciliationSucceeded", message: "applied" }));
  n.notify(ev({ message: "decrypt failed for password=hunter2 at http://user:pw@127.0.0.1/x" }));
  assert.equal(await n.flush(5000), true);
  assert.equal(rcv.got.length, 1, "the info event is filtered out");
  const r = rcv.got[0]!;
  assert.equal(r.verified, true, "the receiver verified X-Signature");
  assert.match(String(r.headers["x-signature"]), /^sha256=[0-9a-f]{64}$/);
  assert.equal(r.headers["content-type"], "application/json");
  assert.equal(r.headers["gotk-component"], "sluice");
  const body = rcv.json(0);
  assert.deepEqual(Object.keys(body).sort(), [
    "involvedObject",
    "message",
    "metadata",
    "reason",
    "reportingController",
    "severity",
    "timestamp",
  ]);
  assert.deepEqual(body.involvedObject, ev().involvedObject);
  assert.equal(body.severity, "error");
  assert.equal(body.reason, "BuildFailed");
  assert.equal(body.metadata!.summary, "cluster local");
  assert.match(body.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.ok(!r.body.toString().includes("hunter2"));
  assert.ok(!r.body.toString().includes("user:pw"));
  assert.match(body.message, /password=\*\*\*/);
  assert.deepEqual(
    { ...n.counters },
    {
      received: 2,
      filtered: 1,
      deduplicated: 0,
      queued: 1,
      delivered: 1,
      failed: 0,
      retries: 0,
      dropped: 0,
      invalid: 0,
    },
  );
  n.close();
});

test("a failing provider never blocks the caller or the others; retries back off and are bounded", async () => {
  const ok = await receiver();
  const flaky = await receiver({ answer: (i) => (i <= 2 ? 503 : 200) });
  const down = await receiver({ answer: () => 500 });
  const denied = await receiver({ answer: () => 403 });
  const all = "  eventSources: [{kind: Kustomization, name: '*'}]";
  const n = Notifier.fromConfig(
    config(
      provider("ok", "generic", { address: ok.url }) +
        provider("flaky", "generic", { address: flaky.url }) +
        provider("down", "generic", { address: down.url }) +
        provider("denied", "generic", { address: denied.url }) +
        provider("nowhere", "generic", { address: "http://127.0.0.1:9/hook" }) +
        ["ok", "flaky", "down", "denied", "nowhere"].map((p) => alert(`to-${p}`, p, all)).join(""),
    ),
    { retry: { attempts: 3, baseMs: 80, maxMs: 1000 } },
  );
  const t0 = performance.now();
  n.notify(ev());
  assert.ok(performance.now() - t0 < 50, "notify returns at once");
  assert.equal(await n.flush(10_000), true);
  assert.equal(ok.got.length, 1);
  assert.equal(flaky.got.length, 3, "two 503s, then delivered");
  assert.ok(flaky.got[1]!.at - flaky.got[0]!.at >= 35, "backoff before the 2nd attempt");
  assert.ok(flaky.got[2]!.at - flaky.got[1]!.at >= 75, "longer before the 3rd");
  assert.equal(down.got.length, 3, "attempts are bounded");
  assert.equal(denied.got.length, 1, "a 403 is not retried");
  assert.equal(n.counters.delivered, 2);
  assert.equal(n.counters.failed, 3);
  assert.equal(n.counters.retries, 2 + 2 + 2);
  const stats = n.stats();
  assert.equal(stats["flux-system/down"]!.lastError, `POST to ${new URL(down.url).host}: HTTP 500`);
  assert.match(stats["flux-system/nowhere"]!.lastError!, /connection failed/);
  assert.ok(!JSON.stringify(stats).includes("/hook"), "errors name the host, not the address");
  n.close();
});

test("alerts match Flux's way: kind, name globs, namespaces, labels, inclusion and exclusion lists", () => {
  const { alerts } = resolveNotifications(
    config(
      provider("p", "generic", { address: "http://127.0.0.1:9/" }) +
        alert("named", "p", "  eventSources: [{kind: Kustomization, name: web}]") +
        alert("glob", "p", "  eventSources: [{kind: Kustomization, name: 'web-*'}]") +
        alert("labels", "p", "  eventSources: [{kind: Kustomization, name: '*', matchLabels: {team: a}}]") +
        alert("other-ns", "p", "  eventSources: [{kind: Kustomization, name: '*', namespace: apps}]") +
        alert(
          "incl",
          "p",
          "  eventSources: [{kind: Kustomization, name: '*'}]\n  inclusionList: ['.*timeout.*', '^fatal']",
        ) +
        alert(
          "excl",
          "p",
          "  eventSources: [{kind: Kustomization, name: '*'}]\n  exclusionList: ['(?i)no changes']",
        ) +
        alert("off", "p", "  suspend: true\n  eventSources: [{kind: Kustomization, name: '*'}]"),
    ),
  );
  const by = (name: string) => alerts.find((a) => a.key === `flux-system/${name}`)!;
  const o = (name: string, namespace = "flux-system") => ({ kind: "Kustomization", name, namespace });
  assert.equal(alertRejects(by("named"), ev()), undefined);
  assert.equal(alertRejects(by("named"), ev({ involvedObject: o("web-2") })), "source");
  assert.equal(
    alertRejects(by("named"), ev({ involvedObject: { ...o("web"), kind: "GitRepository" } })),
    "source",
  );
  assert.equal(alertRejects(by("glob"), ev({ involvedObject: o("web-2") })), undefined);
  assert.equal(alertRejects(by("glob"), ev()), "source");
  assert.equal(alertRejects(by("labels"), ev({ objectLabels: { team: "a", x: "y" } })), undefined);
  assert.equal(alertRejects(by("labels"), ev({ objectLabels: { team: "b" } })), "source");
  assert.equal(alertRejects(by("labels"), ev()), "source");
  assert.equal(
    alertRejects(by("named"), ev({ involvedObject: o("web", "apps") })),
    "source",
    "own namespace by default",
  );
  assert.equal(alertRejects(by("other-ns"), ev({ involvedObject: o("any", "apps") })), undefined);
  assert.equal(alertRejects(by("incl"), ev({ message: "health check timeout after 2m" })), undefined);
  assert.equal(alertRejects(by("incl"), ev({ message: "fatal: x" })), undefined);
  assert.equal(alertRejects(by("incl"), ev()), "inclusionList");
  assert.equal(
    alertRejects(by("excl"), ev({ message: "No changes" })),
    "exclusionList",
    "Go's (?i) flag works",
  );
  assert.equal(alertRejects(by("excl"), ev()), undefined);
  assert.equal(alertRejects(by("off"), ev()), "alert suspended");
  assert.equal(
    alertRejects(by("named"), ev({ severity: "info" })),
    undefined,
    "info (default) takes everything",
  );
});

test("configuration errors are reported at load; bad input, full queues and close never throw", async () => {
  const p = provider("p", "generic-hmac", { address: "http://127.0.0.1:9/" });
  assert.throws(
    () => resolveNotifications(config(p)),
    (e: unknown) => isSluiceError(e, "ConfigInvalid") && /needs a token/.test(e.message),
  );
  const g = provider("g", "generic", { address: "http://127.0.0.1:9/" });
  assert.throws(
    () =>
      resolveNotifications(
        config(g + alert("a", "missing", "  eventSources: [{kind: Kustomization, name: '*'}]")),
      ),
    (e: unknown) =>
      isSluiceError(e, "ConfigInvalid") &&
      /Provider flux-system\/missing, which is not defined/.test(e.message),
  );
  assert.throws(
    () =>
      resolveNotifications(
        config(
          g + alert("a", "g", "  eventSources: [{kind: Kustomization, name: '*'}]\n  inclusionList: ['(']"),
        ),
      ),
    (e: unknown) =>
      isSluiceError(e, "ConfigInvalid") && /inclusionList\[0\]: not a regular expression/.test(e.message),
  );
  assert.throws(
    () =>
      resolveNotifications(
        config(
          `apiVersion: ${V}\nkind: Provider\nmetadata: {name: x, namespace: flux-system}\nspec: {type: generic, secretRef: {name: nope}}\n`,
        ),
      ),
    (e: unknown) => isSluiceError(e, "ConfigInvalid") && /Secret flux-system\/nope/.test(e.message),
  );

  // A provider that never answers: the queue stays bounded; close drops what waits.
  const hang: Server = createServer(() => {});
  await new Promise<void>((r) => hang.listen(0, "127.0.0.1", r));
  after(() => {
    hang.closeAllConnections();
    hang.close();
  });
  const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}/`;
  const n = Notifier.fromConfig(
    config(
      provider("h", "generic", { address: url }) +
        alert("a", "h", "  eventSources: [{kind: Kustomization, name: '*'}]"),
    ),
    { queueLimit: 3, dedupeMs: 0 },
  );
  n.notify(undefined as unknown as NotifyInput);
  n.notify({ involvedObject: null } as unknown as NotifyInput);
  assert.equal(n.counters.invalid, 2);
  for (let i = 0; i < 6; i++) n.notify(ev({ message: `m${i}` }));
  assert.equal(n.pending, 3);
  assert.equal(n.counters.dropped, 3);
  assert.equal(await n.flush(200), false);
  await n.close();
  assert.equal(n.pending, 0);
  n.notify(ev());
  assert.equal(n.counters.queued, 6);
});

test("dedupe: the same event within the window is sent once", async () => {
  const rcv = await receiver();
  const n = Notifier.fromConfig(
    config(
      provider("g", "generic", { address: rcv.url }) +
        alert("a", "g", "  eventSources: [{kind: Kustomization, name: '*'}]"),
    ),
  );
  n.notify(ev());
  n.notify(ev());
  n.notify(ev({ message: "another failure" }));
  await n.flush(5000);
  assert.equal(rcv.got.length, 2);
  assert.equal(n.counters.deduplicated, 1);
  n.close();
});

test("slack incoming webhook and github/gitlab commit statuses", async () => {
  const slack = await receiver();
  const rec = await ForgeRecorder.start({ githubToken: "ghp_x", gitlabToken: "glpat-x" });
  after(() => rec.stop());
  const all = "  eventSources: [{kind: Kustomization, name: '*'}]";
  const n = Notifier.fromConfig(
    config(
      provider("slack", "slack", { address: slack.url }, ", channel: deploys, username: sluice-bot") +
        provider("gh", "github", { token: "ghp_x" }, `, address: "${rec.url}/acme/app"`) +
        provider("gl", "gitlab", { token: "glpat-x" }, `, address: "${rec.url}/acme/app"`) +
        alert("s", "slack", all) +
        alert("h", "gh", all) +
        alert("l", "gl", all),
    ),
    { dedupeMs: 0 },
  );
  const sha = "b".repeat(40);
  n.notify(
    ev({
      metadata: { "kustomize.toolkit.fluxcd.io/revision": `main@sha1:${sha}`, "sluice.dev/env": "staging" },
    }),
  );
  n.notify(
    ev({
      severity: "info",
      reason: "ReconciliationSucceeded",
      message: "applied",
      metadata: { "kustomize.toolkit.fluxcd.io/revision": `main@sha1:${sha}`, "sluice.dev/env": "staging" },
    }),
  );
  assert.equal(await n.flush(10_000), true);
  const m = JSON.parse(slack.got[0]!.body.toString());
  assert.equal(m.channel, "deploys");
  assert.equal(m.username, "sluice-bot");
  assert.equal(m.text, "Error: kustomization/web.flux-system: BuildFailed");
  assert.equal(m.attachments[0].color, "danger");
  assert.equal(m.attachments[0].author_name, "kustomization/web.flux-system");
  assert.equal(m.attachments[0].text, "kustomize build failed");
  assert.deepEqual(m.attachments[0].fields[1], { title: "sluice.dev/env", value: "staging", short: false });
  assert.equal(JSON.parse(slack.got[1]!.body.toString()).attachments[0].color, "good");
  assert.deepEqual(
    rec.callsOf("github", "POST").map((c) => [c.path, c.body]),
    [
      [
        `/repos/acme/app/statuses/${sha}`,
        {
          state: "failure",
          context: "kustomization/web/staging",
          description: "BuildFailed: kustomize build failed",
        },
      ],
      [
        `/repos/acme/app/statuses/${sha}`,
        {
          state: "success",
          context: "kustomization/web/staging",
          description: "ReconciliationSucceeded: applied",
        },
      ],
    ],
  );
  assert.deepEqual(
    rec.callsOf("gitlab", "POST").map((c) => [c.path, (c.body as { state: string }).state]),
    [
      [`/projects/acme/app/statuses/${sha}`, "failed"],
      [`/projects/acme/app/statuses/${sha}`, "success"],
    ],
  );
  // No revision: a commit status cannot be set, and retrying would not help.
  n.notify(ev({ metadata: {}, message: "no revision" }));
  await n.flush(5000);
  assert.match(n.stats()["flux-system/gh"]!.lastError!, /no revision/);
  n.close();
});

test("a real agent's failing reconcile posts one signed notification; info events are filtered", async (t) => {
  const TOKEN = "agent-hmac-token";
  const rcv = await receiver({ hmacToken: TOKEN });
  const h = await harness("app", {
    "good/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: '1'}\n",
    "bad/cm.yaml":
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {a: '${UNDEFINED_VALUE}'}\n",
  });
  t.after(() => h.cleanup());
  const kust = (name: string) => `---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: ${name}, labels: {team: platform}}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./${name}, interval: 1h, retryInterval: 1s, prune: true}
`;
  const cfg = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h, ref: {branch: main}}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec: {sourceRef: {name: app}, rules: [{branch: main, name: notify-e2e}]}
${kust("good")}${kust("bad")}${provider("hook", "generic-hmac", { address: rcv.url, token: TOKEN })}${alert(
  "failures",
  "hook",
  "  eventSeverity: error\n  eventSources: [{kind: Kustomization, name: '*', matchLabels: {team: platform}}]",
)}`;
  const { agent, store } = await h.startAgent(cfg);
  const n = Notifier.fromConfig(agent.configuration, { retry: { attempts: 3, baseMs: 100 } });
  t.after(() => n.close());
  agent.on("change", (e) => {
    const input = eventFromAgent(e, { config: agent.configuration });
    if (input) n.notify(input);
  });
  await eventually(() => store.getUnitStatus("notify-e2e", "good")?.ready === "True", "good Ready");
  await eventually(
    () => store.getUnitStatus("notify-e2e", "bad")?.reason === "BuildFailed",
    "bad BuildFailed",
  );
  await eventually(() => rcv.got.length >= 1, "a notification");
  // The bad unit keeps failing every second; the identical failure is not sent again.
  await new Promise((r) => setTimeout(r, 2500));
  await n.flush(5000);
  assert.equal(rcv.got.length, 1, "one notification");
  assert.equal(rcv.got[0]!.verified, true);
  const body = rcv.json(0);
  assert.deepEqual(body.involvedObject, {
    apiVersion: "kustomize.toolkit.fluxcd.io/v1",
    kind: "Kustomization",
    name: "bad",
    namespace: "flux-system",
  });
  assert.equal(body.severity, "error");
  assert.equal(body.reason, "BuildFailed");
  assert.match(body.message, /UNDEFINED_VALUE/);
  assert.equal(body.metadata!["sluice.dev/env"], "notify-e2e");
  assert.match(body.metadata!["kustomize.toolkit.fluxcd.io/revision"]!, /^main@sha1:[0-9a-f]{40}$/);
  assert.ok(n.counters.filtered >= 1, "the good unit's Ready (info) was filtered");
  assert.ok(n.counters.deduplicated >= 1, "repeats were deduplicated");
});

test("the forge Provider of a pull request's repository", () => {
  const { providers } = resolveNotifications(
    config(
      provider("gh", "github", { token: "t" }, ', address: "https://github.com/Acme/App"') +
        provider(
          "gl",
          "gitlab",
          { token: "t" },
          ', address: "https://gitlab.example.com/group/sub/app.git"',
        ) +
        provider("glid", "gitlab", { token: "t" }, ', address: "https://gitlab.example.com/1234"') +
        provider(
          "off",
          "github",
          { token: "t" },
          ', address: "https://github.com/acme/other", suspend: true',
        ),
    ),
  );
  const key = (r: ReturnType<typeof providerForRepository>) => r?.key;
  assert.equal(
    key(providerForRepository(providers, { forge: "github", repository: "acme/app" })),
    "flux-system/gh",
  );
  assert.equal(
    key(providerForRepository(providers, { forge: "gitlab", repository: "group/sub/app" })),
    "flux-system/gl",
  );
  assert.equal(
    key(providerForRepository(providers, { forge: "gitlab", repository: "x/y", projectId: 1234 })),
    "flux-system/glid",
  );
  assert.equal(providerForRepository(providers, { forge: "github", repository: "acme/other" }), undefined);
  assert.equal(providerForRepository(providers, { forge: "gitlab", repository: "acme/app" }), undefined);
});
