import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { ReplayGuard, receiverPath, signBody, verifyWebhook } from "./index.js";

const TOKEN = "7f1c9b0d2a4e6f8a0b1c2d3e4f5a6b7c";
const body = readFileSync(new URL("./testdata/github-push.json", import.meta.url));

function github(headers: Record<string, string>, b: Buffer = body) {
  return verifyWebhook("github", TOKEN, { headers, body: b });
}

test("github: a correctly signed push is accepted with its event, delivery id and push details", () => {
  const v = github({
    "X-GitHub-Event": "push",
    "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    "X-Hub-Signature-256": `sha256=${createHmac("sha256", TOKEN).update(body).digest("hex")}`,
    "Content-Type": "application/json",
  });
  assert.deepEqual(v, {
    ok: true,
    event: "push",
    deliveryId: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    push: {
      repoUrls: [
        "https://github.com/Codertocat/Hello-World.git",
        "https://github.com/Codertocat/Hello-World",
        "git@github.com:Codertocat/Hello-World.git",
        "git://github.com/Codertocat/Hello-World.git",
      ],
      ref: "refs/heads/master",
      after: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    },
  });
});

test("github: headers are matched case-insensitively and array values use the first", () => {
  const v = github({ "x-github-event": "push", "x-hub-signature-256": signBody(TOKEN, body) });
  assert.equal(v.ok, true);
  const w = verifyWebhook("github", TOKEN, {
    headers: { "x-github-event": ["ping"], "x-hub-signature-256": [signBody(TOKEN, body), "sha256=00"] },
    body,
  });
  assert.deepEqual(w, { ok: true, event: "ping" });
});

test("github: the legacy sha1 X-Hub-Signature is accepted", () => {
  const v = github({ "X-GitHub-Event": "push", "X-Hub-Signature": signBody(TOKEN, body, "sha1") });
  assert.equal(v.ok, true);
});

test("github: form-encoded payloads are parsed from the payload field", () => {
  const form = Buffer.from(`payload=${encodeURIComponent(body.toString("utf8"))}`);
  const v = github(
    {
      "X-GitHub-Event": "push",
      "Content-Type": "application/x-www-form-urlencoded",
      "X-Hub-Signature-256": signBody(TOKEN, form),
    },
    form,
  );
  assert.equal(v.ok && v.push?.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
});

test("github: wrong secret, tampered body, missing or malformed signature are refused", () => {
  const good = signBody(TOKEN, body);
  assert.deepEqual(github({ "X-Hub-Signature-256": signBody("other-secret", body) }), {
    ok: false,
    reason: "signature mismatch",
  });
  const tampered = Buffer.from(body.toString("utf8").replace("master", "main"));
  assert.deepEqual(github({ "X-Hub-Signature-256": good }, tampered), {
    ok: false,
    reason: "signature mismatch",
  });
  assert.deepEqual(github({}), { ok: false, reason: "missing X-Hub-Signature-256 header" });
  for (const bad of [
    "sha256=",
    `sha256=${"z".repeat(64)}`,
    good.slice(0, -2),
    `md5=${"0".repeat(32)}`,
    good.slice(7),
  ]) {
    assert.deepEqual(github({ "X-Hub-Signature-256": bad }), {
      ok: false,
      reason: "malformed signature header",
    });
  }
  // An empty secret never verifies anything (an HMAC with an empty key is forgeable).
  assert.equal(
    verifyWebhook("github", "", { headers: { "X-Hub-Signature-256": signBody("", body) }, body }).ok,
    false,
  );
});

test("github: refusal reasons never contain the payload or the secret", () => {
  const v = github({ "X-Hub-Signature-256": signBody("nope", body) });
  assert.equal(v.ok, false);
  const reason = v.ok ? "" : v.reason;
  assert.ok(!reason.includes(TOKEN) && !reason.includes("Codertocat"));
});

test("gitlab: the X-Gitlab-Token must equal the token; push details are parsed", () => {
  const payload = Buffer.from(
    JSON.stringify({
      object_kind: "push",
      ref: "refs/heads/main",
      before: "95790bf891e76fee5e1747ab589903a6a1f80f22",
      after: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
      checkout_sha: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
      project: {
        web_url: "https://gitlab.example.com/mike/diaspora",
        git_ssh_url: "git@gitlab.example.com:mike/diaspora.git",
        git_http_url: "https://gitlab.example.com/mike/diaspora.git",
      },
    }),
  );
  const v = verifyWebhook("gitlab", TOKEN, {
    headers: { "X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook" },
    body: payload,
  });
  assert.deepEqual(v, {
    ok: true,
    event: "Push Hook",
    push: {
      repoUrls: [
        "https://gitlab.example.com/mike/diaspora.git",
        "https://gitlab.example.com/mike/diaspora",
        "git@gitlab.example.com:mike/diaspora.git",
      ],
      ref: "refs/heads/main",
      after: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    },
  });
  assert.deepEqual(
    verifyWebhook("gitlab", TOKEN, { headers: { "X-Gitlab-Token": `${TOKEN}x` }, body: payload }),
    {
      ok: false,
      reason: "token mismatch",
    },
  );
  assert.deepEqual(verifyWebhook("gitlab", TOKEN, { headers: {}, body: payload }), {
    ok: false,
    reason: "missing X-Gitlab-Token header",
  });
});

test("generic accepts anything; generic-hmac checks X-Signature with sha1, sha256 or sha512", () => {
  const b = Buffer.from('{"hello":"world"}');
  assert.deepEqual(verifyWebhook("generic", TOKEN, { headers: {}, body: b }), { ok: true });
  for (const algo of ["sha1", "sha256", "sha512"] as const) {
    const sig = `${algo}=${createHmac(algo, TOKEN).update(b).digest("hex")}`;
    assert.deepEqual(verifyWebhook("generic-hmac", TOKEN, { headers: { "X-Signature": sig }, body: b }), {
      ok: true,
    });
  }
  assert.deepEqual(
    verifyWebhook("generic-hmac", TOKEN, { headers: { "X-Signature": signBody("x", b) }, body: b }),
    {
      ok: false,
      reason: "signature mismatch",
    },
  );
  assert.deepEqual(verifyWebhook("generic-hmac", TOKEN, { headers: {}, body: b }), {
    ok: false,
    reason: "missing X-Signature header",
  });
});

test("receiverPath is /hook/ + sha256(token + name + namespace), as Flux computes it", () => {
  const expected = createHash("sha256").update(`${TOKEN}github-receiverflux-system`).digest("hex");
  assert.equal(receiverPath("flux-system", "github-receiver", TOKEN), `/hook/${expected}`);
  assert.match(receiverPath("a", "b", "c"), /^\/hook\/[0-9a-f]{64}$/);
  assert.notEqual(receiverPath("ns", "a", TOKEN), receiverPath("ns", "b", TOKEN));
});

test("ReplayGuard refuses a delivery id seen within the window and forgets it afterwards", () => {
  const g = new ReplayGuard({ windowMs: 1000, max: 3 });
  assert.equal(g.isReplay("d1", 0), false);
  assert.equal(g.isReplay("d1", 500), true);
  assert.equal(g.isReplay("d1", 1500), false); // window passed: accepted (and remembered again)
  for (const id of ["a", "b", "c", "d"]) g.isReplay(id, 1600);
  assert.equal(g.size, 3); // bounded: the oldest were forgotten
  assert.equal(g.isReplay("d", 1700), true);
});

test("fuzz: verifyWebhook never throws and never accepts arbitrary signature headers", () => {
  const headerValue = fc.oneof(
    fc.string(),
    fc.constant(undefined),
    fc.array(fc.string(), { maxLength: 3 }),
    fc.stringMatching(/^(sha1|sha256|sha512|md5)=[0-9a-fA-F]{0,130}$/),
  );
  fc.assert(
    fc.property(
      fc.constantFrom("github", "gitlab", "generic-hmac") as fc.Arbitrary<
        "github" | "gitlab" | "generic-hmac"
      >,
      fc.dictionary(
        fc.oneof(
          fc.constantFrom(
            "X-Hub-Signature-256",
            "x-hub-signature",
            "X-Signature",
            "X-Gitlab-Token",
            "X-GitHub-Event",
            "content-type",
          ),
          fc.string(),
        ),
        headerValue,
      ),
      fc.uint8Array({ maxLength: 512 }),
      (kind, headers, bytes) => {
        const v = verifyWebhook(kind, TOKEN, { headers, body: Buffer.from(bytes) });
        assert.equal(typeof v.ok, "boolean");
        // Random headers must not verify (a 2^-256 chance aside); a GitLab token equal to ours is not generated.
        assert.equal(v.ok, false);
      },
    ),
    { numRuns: 2000 },
  );
});

test("fuzz: a signature made with the token always verifies, for any body and event", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), fc.string(), (bytes, event) => {
      const b = Buffer.from(bytes);
      const v = verifyWebhook("github", TOKEN, {
        headers: { "X-Hub-Signature-256": signBody(TOKEN, b), "X-GitHub-Event": event },
        body: b,
      });
      assert.equal(v.ok, true);
      const h = verifyWebhook("generic-hmac", TOKEN, {
        headers: { "X-Signature": signBody(TOKEN, b, "sha512") },
        body: b,
      });
      assert.equal(h.ok, true);
    }),
    { numRuns: 500 },
  );
});
