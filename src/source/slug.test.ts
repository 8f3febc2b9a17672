import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { slugifyBranch } from "./index.js";

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

test("slugifyBranch lowercases and turns other characters into single dashes", () => {
  assert.equal(slugifyBranch("main"), "main");
  assert.equal(slugifyBranch("feature/Login_Page"), "feature-login-page");
  assert.equal(slugifyBranch("--Fix//bug #42--"), "fix-bug-42");
  assert.equal(slugifyBranch("Über-Änderung"), "uber-anderung");
  assert.equal(slugifyBranch("release/1.2.x"), "release-1-2-x");
});

test("slugifyBranch gives a hash-suffixed name when nothing usable remains", () => {
  const s = slugifyBranch("///");
  assert.match(s, /^branch-[0-9a-f]{8}$/);
  assert.notEqual(s, slugifyBranch("___"));
  assert.match(slugifyBranch("日本語"), /^branch-[0-9a-f]{8}$/);
});

test("slugifyBranch cuts long names to 63 characters with a hash suffix that keeps them distinct", () => {
  const a = `feature/${"very-long-name-".repeat(6)}a`;
  const b = `feature/${"very-long-name-".repeat(6)}b`;
  assert.equal(slugifyBranch(a).length <= 63, true);
  assert.match(slugifyBranch(a), /-[0-9a-f]{8}$/);
  assert.notEqual(slugifyBranch(a), slugifyBranch(b));
  assert.equal(slugifyBranch("x".repeat(63)), "x".repeat(63));
});

test("property: always a DNS-1123 label of at most 63 characters, deterministic and idempotent", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: "grapheme", maxLength: 100 })),
      (branch) => {
        const s = slugifyBranch(branch);
        assert.match(s, LABEL);
        assert.ok(s.length >= 1 && s.length <= 63);
        assert.equal(slugifyBranch(branch), s);
        assert.equal(slugifyBranch(s), s);
      },
    ),
    { numRuns: 3000 },
  );
});
