import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { receiverPath, signBody } from "../receivers/index.js";
import { GENERIC_TOKEN, GITLAB_TOKEN, makeFixture, WEBHOOK_TOKEN } from "./_testkit.js";
import { type ApiServer, createApiServer } from "./index.js";

const fx = makeFixture();
let api: ApiServer;
const PUSH = readFileSync(new URL("./testdata/github-push.json", import.meta.url));
const GITHUB_PATH = receiverPath("flux-system", "github-receiver", WEBHOOK_TOKEN);

before(async () => {
  api = await createApiServer({ agent: fx.agent, store: fx.store, log: fx.log });
});
after(async () => {
  await api.close();
  fx.cleanup();
});

async function deliver(path: string, body: Buffer | string, headers: Record<string, string>) {
  const res = await fetch(`${api.url}${path}`, { method: "POST", headers, body });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) };
}

function github(event: string, body: Buffer | string, opts: { signature?: string; delivery?: string } = {}) {
  return {
    "content-type": "application/json",
    "user-agent": "GitHub-Hookshot/5b6f0d7",
    "x-github-event": event,
    "x-github-delivery": opts.delivery ?? randomUUID(),
    "x-github-hook-id": "482133799",
    "x-hub-signature-256": opts.signature ?? signBody(WEBHOOK_TOKEN, body),
  };
}

describe("GitHub receiver", () => {
  test("a signed push refreshes the Receiver's GitRepositories (200)", async () => {
    const n = fx.agent.pushes.length;
    const r = await deliver(GITHUB_PATH, PUSH, github("push", PUSH));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {
      refreshed: ["flux-system/app", "flux-system/infra"],
      reconciled: ["main/api", "preview-x/api"],
    });
    assert.deepEqual(fx.agent.pushes.slice(n), [{ sources: ["flux-system/app", "flux-system/infra"] }]);
    assert.ok(fx.agent.reconciles.some((c) => c.env === "main" && c.unit === "api"));
  });

  test("a ping is 200 and triggers nothing", async () => {
    const n = fx.agent.pushes.length;
    const body = JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 482133799 });
    const r = await deliver(GITHUB_PATH, body, github("ping", body));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { ping: true });
    assert.equal(fx.agent.pushes.length, n);
  });

  test("an event outside spec.events is acknowledged and ignored", async () => {
    const n = fx.agent.pushes.length;
    const body = JSON.stringify({ action: "opened", issue: { number: 1 } });
    const r = await deliver(GITHUB_PATH, body, github("issues", body));
    assert.equal(r.status, 200);
    assert.match(r.json.ignored, /"issues" is not one of the receiver's events/);
    assert.equal(fx.agent.pushes.length, n);
  });

  test("a wrong or missing signature is 401, logged without payload or token", async () => {
    const n = fx.agent.pushes.length;
    const before = fx.logText().length;
    const wrong = await deliver(
      GITHUB_PATH,
      PUSH,
      github("push", PUSH, { signature: signBody("not-the-token", PUSH) }),
    );
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, "Unauthorized");
    const headers: Record<string, string> = github("push", PUSH);
    delete headers["x-hub-signature-256"];
    const missing = await deliver(GITHUB_PATH, PUSH, headers);
    assert.equal(missing.status, 401);
    // A body changed after signing.
    const tampered = Buffer.from(PUSH.toString().replace("refs/heads/main", "refs/heads/evil"));
    const t = await deliver(
      GITHUB_PATH,
      tampered,
      github("push", tampered, { signature: signBody(WEBHOOK_TOKEN, PUSH) }),
    );
    assert.equal(t.status, 401);
    assert.equal(fx.agent.pushes.length, n);

    const logged = fx.logText().slice(before);
    assert.match(logged, /webhook rejected/);
    assert.match(logged, /flux-system\/github-receiver/);
    assert.match(logged, /signature mismatch/);
    for (const leak of [
      WEBHOOK_TOKEN,
      "0d1a26e67d8f5eaf",
      "Bump api image",
      "refs/heads/evil",
      GITHUB_PATH.slice(6),
    ])
      assert.ok(!logged.includes(leak), `log contains ${leak}`);
    for (const answer of [wrong.text, missing.text, t.text]) assert.ok(!answer.includes(WEBHOOK_TOKEN));
  });

  test("a replayed delivery is 409 and triggers nothing", async () => {
    const body = Buffer.from(PUSH.toString().replace("Bump api image to 1.4.2", "Bump api image to 1.4.3"));
    const delivery = randomUUID();
    const first = await deliver(GITHUB_PATH, body, github("push", body, { delivery }));
    assert.equal(first.status, 200);
    const n = fx.agent.pushes.length;
    const again = await deliver(GITHUB_PATH, body, github("push", body, { delivery }));
    assert.equal(again.status, 409);
    assert.equal(again.json.error.code, "Conflict");
    assert.match(again.json.error.message, /already received/);
    // The delivery id is not signed: a fresh id on the same signed body is still a replay.
    const fresh = await deliver(GITHUB_PATH, body, github("push", body));
    assert.equal(fresh.status, 409);
    assert.equal(fx.agent.pushes.length, n);
  });

  test("an unsigned request cannot poison the replay guard", async () => {
    const body = Buffer.from(PUSH.toString().replace("1.4.2", "1.4.9"));
    const delivery = randomUUID();
    const forged = await deliver(
      GITHUB_PATH,
      body,
      github("push", body, { delivery, signature: signBody("x", body) }),
    );
    assert.equal(forged.status, 401);
    const real = await deliver(GITHUB_PATH, body, github("push", body, { delivery }));
    assert.equal(real.status, 200);
  });

  test("a body over 1 MiB is 413", async () => {
    const big = Buffer.alloc(1024 * 1024 + 10, 0x20);
    const r = await deliver(GITHUB_PATH, big, github("push", big));
    assert.equal(r.status, 413);
  });
});

describe("other receivers and paths", () => {
  test("an unknown /hook/ path is 404; GET on a receiver is 405", async () => {
    const r = await deliver(`/hook/${"0".repeat(64)}`, PUSH, github("push", PUSH));
    assert.equal(r.status, 404);
    const g = await fetch(`${api.url}${GITHUB_PATH}`);
    assert.equal(g.status, 405);
    await g.text();
  });

  test("gitlab: X-Gitlab-Token must match; a push refreshes its source", async () => {
    const path = receiverPath("flux-system", "gitlab-receiver", GITLAB_TOKEN);
    const body = JSON.stringify({
      object_kind: "push",
      ref: "refs/heads/main",
      project: { git_http_url: "https://gl/x.git" },
    });
    const bad = await deliver(path, body, { "x-gitlab-event": "Push Hook", "x-gitlab-token": "nope" });
    assert.equal(bad.status, 401);
    const n = fx.agent.pushes.length;
    const ok = await deliver(path, body, {
      "x-gitlab-event": "Push Hook",
      "x-gitlab-token": GITLAB_TOKEN,
      "x-gitlab-event-uuid": randomUUID(),
    });
    assert.equal(ok.status, 200);
    // flux-system/other is not among the fake agent's sources: nothing to refresh.
    assert.deepEqual(ok.json, { refreshed: [], reconciled: [] });
    assert.equal(fx.agent.pushes.length, n);
  });

  test("generic: knowing the path is enough, and repeats are allowed", async () => {
    const path = receiverPath("flux-system", "generic-receiver", GENERIC_TOKEN);
    for (let i = 0; i < 2; i++) {
      const r = await deliver(path, "", {});
      assert.equal(r.status, 200);
      assert.deepEqual(r.json.refreshed, ["flux-system/app"]);
    }
  });
});
