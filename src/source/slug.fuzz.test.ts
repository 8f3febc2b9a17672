/**
 * Property tests of branch slugs and the environment names built from them: always a DNS-1123
 * label of at most 63 characters, deterministic, distinct for distinct branches in practice
 * (branches that differ only in case or punctuation share a slug by design; the Environments
 * resolution then keeps their environments apart), and never two branches in one environment —
 * even for branch names crafted to collide.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import { resolveEnvironments } from "../envs/index.js";
import { slugifyBranch } from "./index.js";

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The slug before any cut: what two branches must share to share a slug without a hash collision. */
const folded = (b: string) =>
  b
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");

// Realistic branch names: prefixes, ticket numbers, words, versions, long descriptions.
const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,11}$/);
const realistic = fc
  .tuple(
    fc.constantFrom(
      "feature/",
      "fix/",
      "release/",
      "user/alice/",
      "renovate/",
      "dependabot/npm_and_yarn/",
      "",
    ),
    fc.option(fc.stringMatching(/^[A-Z]{2,5}-[0-9]{1,5}$/)),
    fc.array(word, { minLength: 1, maxLength: 12 }),
    fc.constantFrom("-", "_", ".", "/"),
  )
  .map(([prefix, ticket, words, sep]) => `${prefix}${ticket ? `${ticket}-` : ""}${words.join(sep)}`);
const anyBranch = fc.oneof(
  realistic,
  fc.string({ maxLength: 120 }),
  fc.string({ unit: "grapheme", maxLength: 80 }),
  // Long names that share a long prefix and differ only at the end.
  fc
    .tuple(fc.constantFrom("a", "b", "c", "x-"), fc.nat(999))
    .map(([t, n]) => `feature/${"shared-long-description-".repeat(4)}${t}${n}`),
);

test("property: a DNS-1123 label of at most 63 characters, deterministic, its own slug", () => {
  fc.assert(
    fc.property(anyBranch, (b) => {
      const s = slugifyBranch(b);
      assert.match(s, LABEL);
      assert.ok(s.length >= 1 && s.length <= 63, `${s.length} characters`);
      assert.equal(slugifyBranch(b), s);
      assert.equal(slugifyBranch(s), s);
    }),
    { numRuns: 5000 },
  );
});

test("property: distinct branches get distinct slugs unless they fold to the same text", () => {
  fc.assert(
    fc.property(anyBranch, anyBranch, (a, b) => {
      if (a === b) return;
      const fa = folded(a);
      const fb = folded(b);
      // Same folded text: a shared slug by design (feature/A and feature-a). Long ones are told apart by a hash.
      if (fa === fb && fa !== "" && fa.length <= 63) return;
      assert.notEqual(slugifyBranch(a), slugifyBranch(b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }),
    { numRuns: 5000 },
  );
});

test("in practice: 20 000 realistic branches, no slug collision that folding does not explain", () => {
  const branches = new Set(fc.sample(realistic, { numRuns: 20_000, seed: 12 }));
  const bySlug = new Map<string, string>();
  let explained = 0;
  for (const b of branches) {
    const s = slugifyBranch(b);
    const other = bySlug.get(s);
    if (other !== undefined) {
      assert.equal(folded(other), folded(b), `${other} and ${b} collide as ${s}`);
      explained++;
    }
    bySlug.set(s, b);
  }
  assert.ok(branches.size > 15_000, "the sample is varied");
  assert.ok(explained < branches.size / 100, `${explained} folded collisions`);
});

const spec = {
  sourceRef: { name: "app" },
  rules: [
    { branch: "main", name: "production" },
    { branch: "**", name: "preview-{{branch.slug}}" },
  ],
};

test("property: environment names are distinct labels, one per branch, whatever the listing order", () => {
  // Sets of branches built to collide: case and punctuation variants, long shared prefixes,
  // names that are another branch's slug.
  const variants = anyBranch.chain((b) =>
    fc.constantFrom(
      b,
      b.toUpperCase(),
      b.replaceAll("/", "-"),
      b.replaceAll("-", "_"),
      slugifyBranch(b),
      `${b}/`,
    ),
  );
  fc.assert(
    fc.property(fc.uniqueArray(variants, { minLength: 1, maxLength: 12 }), (list) => {
      // Git itself refuses some names; keep the ones a listing could hold.
      const branches = list.filter(
        (b) => b !== "" && !/[\s~^:?*[\\\u0000-\u001f\u007f]|\.\.|@\{|\/\/|^\/|\/$|\.$|^-/.test(b),
      );
      const one = resolveEnvironments(spec, branches);
      const two = resolveEnvironments(spec, [...branches].reverse());
      const names = one.environments.map((e) => e.name);
      assert.equal(new Set(names).size, names.length, `two branches share an environment: ${names}`);
      for (const n of names) assert.ok(LABEL.test(n) && n.length <= 63, n);
      // Every branch gets an environment, or the conflict is reported; nothing is silently lost.
      assert.equal(one.environments.length + one.conflicts.length, branches.length);
      const pairs = (r: typeof one) => r.environments.map((e) => `${e.branch}=${e.name}`).sort();
      assert.deepEqual(pairs(two), pairs(one), "deterministic whatever the order");
    }),
    { numRuns: 1500 },
  );
});

test("crafted collisions: a branch named like another's slug or suffixed name never takes its environment", () => {
  const long = `feature/${"very-long-branch-description-".repeat(3)}x`;
  const slug = slugifyBranch(long);
  assert.equal(slugifyBranch(slug), slug, "the slug is a branch name of its own");
  const r = resolveEnvironments(spec, [long, slug]);
  assert.deepEqual(r.conflicts, []);
  const names = r.environments.map((e) => e.name);
  assert.equal(new Set(names).size, 2, names.join(", "));
  // feature/a and feature-a share a base name; the one that is not its own slug gets a suffix of a
  // hash of its key, which anyone can compute. A third branch crafted with that exact name claims
  // it first: the victim is reported as a conflict, never merged into the attacker's environment.
  const hash = createHash("sha256").update("branch:feature/a").digest("hex").slice(0, 8);
  const crafted = resolveEnvironments(spec, ["feature/a", "feature-a", `feature-a-${hash}`]);
  const byBranch = new Map(crafted.environments.map((e) => [e.branch, e.name]));
  assert.equal(new Set(byBranch.values()).size, byBranch.size, "no environment shared");
  assert.equal(byBranch.size + crafted.conflicts.length, 3);
});
