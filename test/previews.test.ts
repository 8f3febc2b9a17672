/**
 * Preview environments end to end: branches and pull requests → isolated environments on the real
 * local target, TTLs and the purge schedule under an injected clock, a destroy that finishes
 * although the target fails half-way, and `env gc` sweeping what a killed destroy left behind.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import pino from "pino";
import type { KubeObject, ObjectRef } from "../src/core/index.js";
import { ForgeRecorder } from "../src/forges/_testkit.js";
import { receiverPath } from "../src/receivers/index.js";
import { createApiServer } from "../src/server/index.js";
import type { ApplyOptions, Target, UnitId } from "../src/targets/index.js";
import { eventually, harness, httpText, webApp } from "./support/agent.js";
import { sluice } from "./support/cli.js";

const run = promisify(execFile);

async function podsOf(env: string): Promise<string[]> {
  const { stdout } = await run("podman", [
    "pod",
    "ps",
    "--filter",
    `label=sluice.dev/env=${env}`,
    "--format",
    "{{.Name}}",
  ]);
  return stdout.split("\n").filter(Boolean);
}

const source = (extra = "") => `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./web, interval: 1h, prune: true, timeout: 90s}
${extra}`;

describe("twenty branches, twenty environments", { timeout: 600_000 }, async () => {
  const h = await harness("previews", {
    "web/app.yaml": webApp({ name: "web", message: "hello-${ENV}", port: 18480 }),
  });
  after(() => h.cleanup());

  test("each branch runs side by side on its own URL; deleting ten branches destroys exactly those ten", async () => {
    const branches = Array.from({ length: 20 }, (_, i) => `feature/b${String(i + 1).padStart(2, "0")}`);
    await h.git("push", "-q", "origin", ...branches.map((b) => `main:refs/heads/${b}`));
    const { agent, store } = await h.startAgent(
      `${source()}---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: main, name: production, protected: true}
    - {branch: "feature/*", name: "preview-{{branch.slug}}", ttl: 8h}
`,
      { concurrency: 4 },
    );
    const names = branches.map((b) => `preview-${b.replace("/", "-")}`);
    await eventually(
      () =>
        names.every((n) => store.getUnitStatus(n, "web")?.ready === "True") &&
        store.getUnitStatus("production", "web")?.ready === "True",
      "21 environments ready",
      420_000,
      () => store.listUnitStatus().filter((u) => u.ready !== "True"),
    );
    const urls = new Map(agent.listEnvironments().map((e) => [e.name, e.urls ?? []]));
    const seen = new Set<string>();
    for (const n of [...names, "production"]) {
      const url = urls.get(n)?.[0];
      assert.ok(url, `${n} has a URL`);
      assert.ok(!seen.has(url), `${n} shares ${url}`);
      seen.add(url);
      assert.equal(await httpText(Number(new URL(url).port)), `hello-${n}`);
    }

    const gone = branches.slice(0, 10);
    await h.git("push", "-q", "origin", ...gone.map((b) => `:refs/heads/${b}`));
    await agent.notifyPush({ sources: ["app"] });
    await eventually(
      () => names.slice(0, 10).every((n) => store.getEnvironment(n)?.state === "destroyed"),
      "ten environments destroyed",
      240_000,
    );
    await agent.idle();
    for (const n of names.slice(0, 10)) assert.deepEqual(await podsOf(n), [], `${n} left pods`);
    for (const n of [...names.slice(10), "production"]) {
      assert.equal(store.getEnvironment(n)?.state, "active", `${n} still active`);
      assert.equal((await podsOf(n)).length, 1, `${n} still runs`);
      const url = urls.get(n)![0]!;
      assert.equal(await httpText(Number(new URL(url).port)), `hello-${n}`);
    }
  });
});

describe("TTLs and the purge schedule", { timeout: 300_000 }, async () => {
  const h = await harness("ttl", {
    "web/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  env: ${ENV}\n",
  });
  after(() => h.cleanup());

  test("expired previews go at the scheduled time, protected never, extended ones survive, a push brings one back", async () => {
    await h.git("push", "-q", "origin", "main:refs/heads/feature/a", "main:refs/heads/feature/b");
    // Monday 2026-03-02, 08:00 UTC; the purge runs at 20:00 Berlin time = 19:00 UTC.
    let now = new Date("2026-03-02T08:00:00Z");
    const { agent, store } = await h.startAgent(
      `${source()}---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  purge: {schedule: "0 20 * * 1-5", timeZone: Europe/Berlin}
  rules:
    - {branch: main, name: production, protected: true, ttl: 1h}
    - {branch: "feature/*", name: "preview-{{branch.slug}}", ttl: 8h}
`,
      { now: () => now, lifecycleIntervalMs: 3_600_000 },
    );
    const api = await createApiServer({ agent, store, log: pino({ level: "silent" }) });
    after(() => api.close());
    const token = store.addToken("ops", "operator");
    const cli = (...args: string[]) => sluice(args, { env: { SLUICE_URL: api.url, SLUICE_TOKEN: token } });

    const all = ["production", "preview-feature-a", "preview-feature-b"];
    await eventually(
      () => all.every((n) => store.getUnitStatus(n, "web")?.ready === "True"),
      "3 envs ready",
      60_000,
      () => ({ units: store.listUnitStatus(), events: store.listEvents({ limit: 10 }) }),
    );
    assert.equal(store.getEnvironment("preview-feature-a")?.expiresAt, "2026-03-02T16:00:00.000Z");

    const ls = await cli("env", "ls");
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /preview-feature-a\s+feature\/a\s+/);
    assert.match(ls.stdout, /production\s+main\s+.*never \(protected\)/);

    const ext = await cli("env", "extend", "preview-feature-b", "4h");
    assert.equal(ext.code, 0, ext.stderr);
    assert.equal(store.getEnvironment("preview-feature-b")?.expiresAt, "2026-03-02T20:00:00.000Z");
    const bad = await cli("env", "extend", "preview-feature-b", "soon");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /duration/);

    // 18:00 UTC: feature/a expired at 16:00, but the purge runs only at 19:00 UTC.
    now = new Date("2026-03-02T18:00:00Z");
    assert.deepEqual(await agent.lifecycleTick(), []);
    now = new Date("2026-03-02T19:00:30Z");
    const purged = await agent.lifecycleTick();
    assert.deepEqual(
      purged.map((p) => p.name),
      ["preview-feature-a"],
    );
    await eventually(() => store.getEnvironment("preview-feature-a")?.state === "destroyed", "a destroyed");
    assert.equal(store.getEnvironment("preview-feature-b")?.state, "active");
    assert.equal(store.getEnvironment("production")?.state, "active");
    // A later check the same evening purges nothing more (b still has time; production is protected).
    now = new Date("2026-03-02T19:30:00Z");
    assert.deepEqual(await agent.lifecycleTick(), []);

    // The branch still exists: a listing does not bring the purged environment back…
    await agent.notifyPush({ sources: ["app"] });
    assert.equal(store.getEnvironment("preview-feature-a")?.state, "destroyed");
    // …a push does, with a fresh TTL.
    await h.commitAndPush(
      { "web/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n" },
      "feature/a",
    );
    await agent.notifyPush({ sources: ["app"] });
    await eventually(() => store.getUnitStatus("preview-feature-a", "web")?.ready === "True", "a back");
    assert.equal(store.getEnvironment("preview-feature-a")?.expiresAt, "2026-03-03T03:30:00.000Z");
    assert.ok((store.getEnvironment("preview-feature-a")?.uptimeSeconds ?? 0) >= 0);

    // Users: destroy (not a protected one), create again, sweep.
    const prot = await cli("env", "destroy", "production");
    assert.equal(prot.code, 2);
    assert.match(prot.stderr, /protected/);
    const d = await cli("env", "destroy", "preview-feature-b");
    assert.equal(d.code, 0, d.stderr);
    await eventually(() => store.getEnvironment("preview-feature-b")?.state === "destroyed", "b destroyed");
    await agent.notifyPush({ sources: ["app"] });
    assert.equal(
      store.getEnvironment("preview-feature-b")?.state,
      "destroyed",
      "a listing does not undo a destroy",
    );
    const c = await cli("env", "create", "feature/b");
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /preview-feature-b created/);
    await eventually(() => store.getUnitStatus("preview-feature-b", "web")?.ready === "True", "b back");
    const none = await cli("env", "create", "feature/none");
    assert.equal(none.code, 2);
    assert.match(none.stderr, /branch feature\/none does not exist/);
    const events = store.listEvents({ env: "preview-feature-b" }).map((e) => e.message);
    assert.ok(events.some((m) => /extended .* by ops/.test(m)));
    assert.ok(events.some((m) => /requested by ops/.test(m)));
  });
});

/** A target whose destroy fails for one unit a number of times: a target error half-way through. */
class FlakyDestroy implements Target {
  readonly kind = "local" as const;
  failuresLeft: number;
  constructor(
    private readonly inner: Target,
    private readonly unit: string,
    failures: number,
  ) {
    this.failuresLeft = failures;
  }
  plan(u: UnitId, d: KubeObject[]) {
    return this.inner.plan(u, d);
  }
  apply(u: UnitId, d: KubeObject[], o: ApplyOptions) {
    return this.inner.apply(u, d, o);
  }
  health(u: UnitId, r: ObjectRef[]) {
    return this.inner.health(u, r);
  }
  inventory(u: UnitId) {
    return this.inner.inventory(u);
  }
  async destroy(u: UnitId) {
    if (u.unit === this.unit && this.failuresLeft > 0) {
      this.failuresLeft--;
      throw new Error("injected: the target refused to delete Deployment/default/api");
    }
    return this.inner.destroy(u);
  }
  sweep(live: ReadonlySet<string>, opts: { dryRun: boolean }) {
    return this.inner.sweep!(live, opts);
  }
  close() {
    return this.inner.close();
  }
}

describe("a destroy that always finishes", { timeout: 400_000 }, async () => {
  const h = await harness("destroy", {
    "web/app.yaml": webApp({ name: "web", message: "web-${ENV}", port: 0 }),
    "api/app.yaml": webApp({ name: "api", message: "api-${ENV}", port: 0 }),
  });
  after(() => h.cleanup());

  test("a destroy failing half-way is retried and leaves nothing behind; gc sweeps a killed destroy's debris", async () => {
    await h.git("push", "-q", "origin", "main:refs/heads/feature/x");
    let flaky: FlakyDestroy | undefined;
    const { agent, store, local } = await h.startAgent(
      `${source(`---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: api}
spec: {sourceRef: {kind: GitRepository, name: app}, path: ./api, interval: 1h, prune: true, timeout: 90s, dependsOn: [{name: web}]}
`)}---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: main, name: production, protected: true}
    - {branch: "feature/*", name: "preview-{{branch.slug}}"}
`,
      { concurrency: 3 },
      (l) => {
        flaky = new FlakyDestroy(l, "web", 2);
        return flaky;
      },
    );
    const env = "preview-feature-x";
    await eventually(
      () =>
        ["web", "api"].every(
          (u) =>
            store.getUnitStatus(env, u)?.ready === "True" &&
            store.getUnitStatus("production", u)?.ready === "True",
        ),
      "both environments ready",
      240_000,
    );
    assert.equal((await podsOf(env)).length, 2);

    await h.git("push", "-q", "origin", ":refs/heads/feature/x");
    await agent.notifyPush({ sources: ["app"] });
    await eventually(
      () => store.getEnvironment(env)?.state === "destroyed",
      "destroyed after retries",
      120_000,
    );
    assert.equal(flaky?.failuresLeft, 0, "the injected failures happened");
    const incomplete = store.listEvents({ env }).filter((e) => e.reason === "DestroyIncomplete");
    assert.ok(incomplete.length >= 1, "the half-failed destroy was reported");
    assert.match(incomplete[0]!.message, /web: injected: the target refused/);
    assert.deepEqual(await podsOf(env), [], "nothing left behind");
    assert.equal(await local.inventory({ env, unit: "web" }), undefined);
    assert.equal(await local.inventory({ env, unit: "api" }), undefined);

    // A destroy killed half-way that lost its records: pods carry the labels of an environment
    // that no longer exists. Make such debris (apply directly, then drop the target's state file).
    await local.apply(
      { env: "ghost", unit: "web" },
      [
        {
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: "ghost", namespace: "default" },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: "ghost" } },
            template: {
              metadata: { labels: { app: "ghost" } },
              spec: {
                containers: [
                  { name: "c", image: "localhost/sluice/busybox:latest", command: ["sleep", "3600"] },
                ],
              },
            },
          },
        } as KubeObject,
      ],
      { prune: true, wait: false, timeoutMs: 60_000 },
    );
    const unitsDir = join(h.dir, "state", "local", "units");
    for (const f of readdirSync(unitsDir)) if (f.startsWith("ghost.")) rmSync(join(unitsDir, f));
    assert.equal((await podsOf("ghost")).length, 1);

    const listed = await agent.gc({ dryRun: true, who: "test" });
    assert.deepEqual(
      listed.map((o) => `${o.env} ${o.result}`),
      ["ghost listed"],
    );
    assert.equal((await podsOf("ghost")).length, 1, "a dry run removes nothing");
    const removed = await agent.gc({ dryRun: false, who: "test" });
    assert.deepEqual(
      removed.map((o) => `${o.env} ${o.subject.split("/")[0]} ${o.result}`),
      ["ghost pod deleted"],
    );
    assert.deepEqual(await podsOf("ghost"), []);
    assert.equal((await podsOf("production")).length, 2, "live environments are untouched");
  });
});

type Example = {
  action?: string;
  pull_request?: Record<string, unknown>;
  repository?: Record<string, unknown>;
};
const prExamples = (
  createRequire(import.meta.url)("@octokit/webhooks-examples") as { name: string; examples: Example[] }[]
).find((d) => d.name === "pull_request")!.examples;

/** GitHub's own example delivery for `action`, pointed at our repository and branches. */
function githubPullRequest(
  action: string,
  o: { number: number; head: string; base: string; repoUrl: string },
) {
  const ex = structuredClone(prExamples.find((e) => e.action === action)!);
  const pr = ex.pull_request as Record<string, any>;
  ex.repository = { ...ex.repository, clone_url: o.repoUrl };
  pr.number = o.number;
  pr.head = { ...pr.head, ref: o.head, repo: ex.repository };
  pr.base = { ...pr.base, ref: o.base, repo: ex.repository };
  (ex as Record<string, unknown>).number = o.number;
  return ex;
}

describe("pull request environments from webhooks", { timeout: 300_000 }, async () => {
  const h = await harness("prs", {
    "web/cm.yaml":
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  pr: pr-${PR_NUMBER:=none}\n",
  });
  after(() => h.cleanup());

  test("GitHub's opened, synchronize and closed deliveries create, update and destroy pr-<n>", async () => {
    const head = await h.commitAndPush(
      { "web/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n" },
      "main",
    );
    await h.git("push", "-q", "origin", `${head}:refs/heads/feature/login`);
    const { agent, store } = await h.startAgent(
      `${source()}---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules:
    - {branch: main, name: production, protected: true}
    - {pullRequest: {base: main}, name: "pr-{{pr.number}}", ttl: 24h}
---
apiVersion: v1
kind: Secret
metadata: {name: hook-token}
stringData: {token: s3cr3t-hook-token}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: github}
spec:
  type: github
  events: [pull_request, push]
  secretRef: {name: hook-token}
  resources: [{kind: GitRepository, name: app}]
`,
    );
    const api = await createApiServer({ agent, store, log: pino({ level: "silent" }) });
    after(() => api.close());
    const hook = `${api.url}${receiverPath("flux-system", "github", "s3cr3t-hook-token")}`;
    const deliver = async (payload: unknown, secret = "s3cr3t-hook-token") => {
      const body = JSON.stringify(payload);
      return fetch(hook, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "pull_request",
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`,
        },
        body,
      });
    };
    const pr = { number: 42, head: "feature/login", base: "main", repoUrl: h.server.repoUrl("prs") };

    const forged = await deliver(githubPullRequest("opened", pr), "wrong-secret");
    assert.equal(forged.status, 401);
    assert.equal(store.getEnvironment("pr-42"), undefined, "a forged delivery creates nothing");

    const opened = await deliver(githubPullRequest("opened", pr));
    assert.equal(opened.status, 202, await opened.text());
    await eventually(
      () => store.getUnitStatus("pr-42", "web")?.ready === "True",
      "pr-42 ready",
      60_000,
      () => ({ envs: store.listEnvironments(), events: store.listEvents({ limit: 8 }) }),
    );
    const rec = store.getEnvironment("pr-42")!;
    assert.equal(rec.prNumber, 42);
    assert.equal(rec.branch, "feature/login");
    assert.ok(rec.expiresAt, "a TTL applies");

    const pushed = await h.commitAndPush(
      { "web/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n" },
      "feature/login",
    );
    const sync = await deliver(githubPullRequest("synchronize", pr));
    assert.equal(sync.status, 202);
    await eventually(
      () => store.getUnitStatus("pr-42", "web")?.lastAppliedRevision === `feature/login@sha1:${pushed}`,
      "pr-42 updated to the pushed commit",
    );

    const closed = await deliver(githubPullRequest("closed", pr));
    assert.equal(closed.status, 202);
    await eventually(() => store.getEnvironment("pr-42")?.state === "destroyed", "pr-42 destroyed");
    assert.equal(store.getEnvironment("production")?.state, "active");
    assert.ok(
      store.listEvents({ env: "pr-42" }).some((e) => /pull request 42/.test(e.message)),
      "the creation names the pull request",
    );
  });
});

describe("pull request plans posted by the server", { timeout: 300_000 }, async () => {
  const h = await harness("prplans", {
    "web/cm.yaml": 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  replicas: "2"\n',
  });
  after(() => h.cleanup());

  test("an opened pull request gets one plan comment and statuses; a new push edits the same comment", async () => {
    const rec = await ForgeRecorder.start({ githubToken: "ghp_recorded-token-value" });
    after(() => rec.stop());
    await h.git("push", "-q", "origin", "main:refs/heads/feature/bump");
    await h.git("fetch", "-q", "origin");
    const head1 = await h.commitAndPush(
      {
        "web/cm.yaml":
          'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  replicas: "5"\n',
      },
      "feature/bump",
      "bump",
    );
    // What GitHub keeps for a pull request: its head under refs/pull/N/head.
    await h.git("push", "-q", "origin", `${head1}:refs/pull/7/head`);
    const { agent, store } = await h.startAgent(
      `${source()}---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: envs}
spec:
  sourceRef: {name: app}
  rules: [{branch: main, name: production, protected: true}]
---
apiVersion: v1
kind: Secret
metadata: {name: hook-token}
stringData: {token: s3cr3t-hook-token}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: github}
spec:
  type: github
  events: [pull_request]
  secretRef: {name: hook-token}
  resources: [{kind: GitRepository, name: app}]
---
apiVersion: v1
kind: Secret
metadata: {name: github-token}
stringData: {token: ghp_recorded-token-value}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: github}
spec: {type: github, address: "${rec.url}/Codertocat/Hello-World", secretRef: {name: github-token}}
`,
    );
    const api = await createApiServer({ agent, store, log: pino({ level: "silent" }) });
    after(() => api.close());
    const hook = `${api.url}${receiverPath("flux-system", "github", "s3cr3t-hook-token")}`;
    const deliver = async (payload: unknown) => {
      const body = JSON.stringify(payload);
      return fetch(hook, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "pull_request",
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": `sha256=${createHmac("sha256", "s3cr3t-hook-token").update(body).digest("hex")}`,
        },
        body,
      });
    };
    const pr = { number: 7, head: "feature/bump", base: "main", repoUrl: h.server.repoUrl("prplans") };
    const opened = githubPullRequest("opened", pr) as Example & { pull_request: Record<string, any> };
    opened.pull_request.head.sha = head1;
    const r = await deliver(opened);
    assert.equal(r.status, 202, await r.text());
    await eventually(
      () => rec.githubComments.length === 1,
      "a plan comment",
      120_000,
      () => rec.calls.slice(-5),
    );
    const comment = rec.githubComments[0]!;
    assert.match(comment.body, /<!-- sluice:plan -->/);
    assert.match(comment.body, /production/);
    assert.match(comment.body, /-\s+replicas: "2"\n\+\s+replicas: "5"/);
    await eventually(
      () =>
        rec.githubStatuses.some(
          (x) => x.sha === head1 && x.context === "sluice/plan" && x.state === "success",
        ),
      "the overall status",
      60_000,
    );

    const head2 = await h.commitAndPush(
      {
        "web/cm.yaml":
          'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  replicas: "6"\n',
      },
      "feature/bump",
      "bump again",
    );
    await h.git("push", "-q", "-f", "origin", `${head2}:refs/pull/7/head`);
    const sync = githubPullRequest("synchronize", pr) as Example & { pull_request: Record<string, any> };
    sync.pull_request.head.sha = head2;
    assert.equal((await deliver(sync)).status, 202);
    await eventually(
      () => /replicas: "6"/.test(rec.githubComments[0]!.body),
      "the same comment edited",
      120_000,
    );
    assert.equal(rec.githubComments.length, 1, "one comment, edited in place");
  });
});
