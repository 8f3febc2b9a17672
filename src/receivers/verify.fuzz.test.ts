/**
 * Property tests of webhook verification beyond verify.test.ts's: the signature header parses back
 * exactly what was written (any case, surrounding white space) and nothing else; any tampering —
 * one bit of the body, one digit of the signature, another token — is refused; header lookup is
 * case-insensitive and safe with prototype-like names; hostile JSON payloads never throw; and the
 * replay guard agrees with a model of "seen within the window", for ids of any length.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import { header, parseSignature, ReplayGuard, signBody, verifyWebhook } from "./verify.js";

const TOKEN = "fuzz-token-0f9e8d";
const ALGOS = { sha1: 20, sha256: 32, sha512: 64 } as const;
const algo = fc.constantFrom("sha1", "sha256", "sha512") as fc.Arbitrary<keyof typeof ALGOS>;
const randomCase = (s: string, flips: boolean[]) =>
  [...s].map((c, i) => (flips[i % Math.max(1, flips.length)] ? c.toUpperCase() : c)).join("");

test("property: <algo>=<hex> parses back to the same bytes, in any case and with surrounding white space", () => {
  fc.assert(
    fc.property(
      algo.chain((a) =>
        fc.tuple(fc.constant(a), fc.uint8Array({ minLength: ALGOS[a], maxLength: ALGOS[a] })),
      ),
      fc.array(fc.boolean(), { maxLength: 8 }),
      fc.constantFrom("", " ", "\t", "  "),
      ([a, bytes], flips, ws) => {
        const hex = randomCase(Buffer.from(bytes).toString("hex"), flips);
        const sig = parseSignature(`${ws}${a}=${hex}${ws}`);
        assert.ok(sig, `${a}=${hex}`);
        assert.equal(sig.algo, a);
        assert.deepEqual([...sig.digest], [...bytes]);
      },
    ),
    { numRuns: 2000 },
  );
});

test("property: anything else is not a signature, and parsing never throws", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ unit: "binary", maxLength: 300 }),
        // Near misses: wrong lengths, unknown algorithms, separators, signs, non-hex digits.
        fc
          .tuple(
            fc.constantFrom("sha1", "sha256", "sha512", "md5", "SHA256", "sha256 ", "sha3", ""),
            fc.constantFrom("=", "==", ":", " = ", ""),
            fc.stringMatching(/^[0-9a-fA-FxXg+-]{0,140}$/),
          )
          .map(([a, s, h]) => `${a}${s}${h}`),
      ),
      (v) => {
        const sig = parseSignature(v);
        if (sig === undefined) return;
        // Accepted only in the exact form, with the exact length.
        const m = /^(sha1|sha256|sha512)=([0-9a-fA-F]+)$/.exec(v.trim());
        assert.ok(m, `accepted ${JSON.stringify(v)}`);
        assert.equal(m[2]!.length, ALGOS[m[1] as keyof typeof ALGOS] * 2);
      },
    ),
    { numRuns: 5000 },
  );
  assert.equal(parseSignature(`sha256=${"a".repeat(1_000_000)}`), undefined);
  assert.equal(parseSignature(undefined), undefined);
});

test("property: one flipped bit of the body, one changed digit of the signature or another token is refused", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 1024 }),
      algo,
      fc.nat(),
      fc.nat(7),
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.constantFrom("github", "generic-hmac") as fc.Arbitrary<"github" | "generic-hmac">,
      (bytes, a, at, bit, otherToken, kind) => {
        const body = Buffer.from(bytes);
        const name =
          kind === "github" ? (a === "sha1" ? "X-Hub-Signature" : "X-Hub-Signature-256") : "X-Signature";
        const sig =
          kind === "github"
            ? signBody(TOKEN, body, a === "sha1" ? "sha1" : "sha256")
            : signBody(TOKEN, body, a);
        const ok = (headers: Record<string, string>, b: Buffer, token = TOKEN) =>
          verifyWebhook(kind, token, { headers, body: b }).ok;
        assert.equal(ok({ [name]: sig }, body), true, "the genuine delivery verifies");
        const flipped = Buffer.from(body);
        flipped[at % flipped.length]! ^= 1 << bit;
        assert.equal(ok({ [name]: sig }, flipped), false, "tampered body");
        const eq = sig.indexOf("=") + 1;
        const i = eq + (at % (sig.length - eq));
        const digit = sig[i] === "0" ? "1" : "0";
        assert.equal(
          ok({ [name]: `${sig.slice(0, i)}${digit}${sig.slice(i + 1)}` }, body),
          false,
          "tampered signature",
        );
        if (otherToken !== TOKEN) assert.equal(ok({ [name]: sig }, body, otherToken), false, "another token");
        assert.equal(ok({}, body), false, "unsigned");
      },
    ),
    { numRuns: 1500 },
  );
});

test("property: header lookup ignores case, takes the first of repeated values, and survives prototype names", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(
        "X-Hub-Signature-256",
        "x-gitlab-token",
        "Content-Type",
        "__proto__",
        "constructor",
        "toString",
      ),
      fc.array(fc.boolean(), { maxLength: 24 }),
      fc.oneof(
        fc.string({ maxLength: 20 }),
        fc.array(fc.string({ maxLength: 20 }), { minLength: 1, maxLength: 3 }),
      ),
      (name, flips, value) => {
        const headers: Record<string, string | string[]> = Object.create(null);
        headers[randomCase(name, flips)] = value;
        const want = Array.isArray(value) ? value[0] : value;
        assert.equal(header(headers, name.toLowerCase()), want);
        assert.equal(header(headers, name.toUpperCase()), want);
        assert.equal(header({}, name), undefined);
      },
    ),
    { numRuns: 1000 },
  );
});

test("property: signed pushes with hostile JSON never throw, and push details are bounded strings", () => {
  const hostile = fc.oneof(
    fc.jsonValue({ maxDepth: 5 }),
    fc.record({
      ref: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string())),
      after: fc.oneof(fc.string(), fc.object()),
      repository: fc.oneof(
        fc.record({
          clone_url: fc.oneof(fc.string({ maxLength: 3000 }), fc.integer(), fc.constant(null)),
          html_url: fc.oneof(fc.string(), fc.object()),
          ssh_url: fc.string(),
        }),
        fc.string(),
        fc.constant(null),
      ),
      project: fc.oneof(fc.record({ git_http_url: fc.string(), web_url: fc.integer() }), fc.constant([])),
    }),
  );
  fc.assert(
    fc.property(hostile, fc.boolean(), (payload, form) => {
      const json = JSON.stringify(payload) ?? "null";
      const text = form ? `payload=${encodeURIComponent(json)}` : json;
      const body = Buffer.from(text);
      const ctype = form ? "application/x-www-form-urlencoded" : "application/json";
      const gh = verifyWebhook("github", TOKEN, {
        headers: {
          "X-Hub-Signature-256": signBody(TOKEN, body),
          "X-GitHub-Event": "push",
          "content-type": ctype,
        },
        body,
      });
      const gl = verifyWebhook("gitlab", TOKEN, {
        headers: { "X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook", "content-type": ctype },
        body,
      });
      for (const v of [gh, gl]) {
        assert.equal(v.ok, true);
        if (!v.ok || !v.push) continue;
        for (const u of v.push.repoUrls) assert.ok(typeof u === "string" && u.length > 0 && u.length <= 2048);
        for (const s of [v.push.ref, v.push.after])
          assert.ok(s === undefined || (typeof s === "string" && s.length <= 2048));
      }
    }),
    { numRuns: 1000 },
  );
  // Nesting no JSON parser should have to recurse through.
  const deep = Buffer.from(`${"[".repeat(500_000)}${"]".repeat(500_000)}`);
  const v = verifyWebhook("github", TOKEN, {
    headers: { "X-Hub-Signature-256": signBody(TOKEN, deep), "X-GitHub-Event": "push" },
    body: deep,
  });
  assert.equal(v.ok, true);
});

test("property: the replay guard agrees with a model of 'seen within the window', for ids of any length", () => {
  const WINDOW = 1000;
  // Ids of every length, many sharing long prefixes (real ids are GUIDs; senders choose them).
  const prefix = "d".repeat(300);
  const id = fc.oneof(
    fc.string({ maxLength: 8 }),
    fc.string({ maxLength: 8 }).map((s) => `${prefix}${s}`),
    fc.nat(50).map((n) => `${prefix}${"x".repeat(n)}`),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(id, fc.nat(400)), { maxLength: 60 }), (ops) => {
      const guard = new ReplayGuard({ windowMs: WINDOW, max: 10_000 });
      const model = new Map<string, number>();
      let now = 0;
      for (const [x, dt] of ops) {
        now += dt;
        const at = model.get(x);
        const want = at !== undefined && now - at < WINDOW;
        assert.equal(guard.isReplay(x, now), want, `${JSON.stringify(x.slice(280))} at ${now}`);
        if (!want) model.set(x, now);
      }
    }),
    { numRuns: 2000 },
  );
  // Bounded: the oldest are forgotten first.
  const g = new ReplayGuard({ windowMs: 1e9, max: 100 });
  for (let i = 0; i < 1000; i++) g.isReplay(`id-${i}-${"y".repeat(i % 400)}`, i);
  assert.equal(g.size, 100);
  assert.equal(g.isReplay(`id-999-${"y".repeat(999 % 400)}`, 1000), true);
});

test("the HMAC is over the raw bytes, not a re-serialisation: equivalent JSON is not accepted", () => {
  const body = Buffer.from('{"ref":"refs/heads/main","after":"1"}');
  const sig = `sha256=${createHmac("sha256", TOKEN).update(body).digest("hex")}`;
  const same = Buffer.from('{ "ref": "refs/heads/main", "after": "1" }');
  assert.equal(verifyWebhook("github", TOKEN, { headers: { "X-Hub-Signature-256": sig }, body }).ok, true);
  assert.equal(
    verifyWebhook("github", TOKEN, { headers: { "X-Hub-Signature-256": sig }, body: same }).ok,
    false,
  );
});
