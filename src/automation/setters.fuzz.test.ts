/**
 * Property tests of the image setters: over generated manifests (plain, single- and double-quoted
 * values, mapping values and sequence items, CRLF or LF, comments everywhere, a missing final
 * newline) every byte outside the marked values stays as it was, each marked value reads back as
 * the policy's image (or its tag or name), a second run changes nothing, and hostile text carrying
 * the marker token only ever fails with a SluiceError.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { parse, parseAllDocuments } from "yaml";
import { isSluiceError } from "../core/index.js";
import { applySetters, type LatestImages } from "./index.js";

const NS = "flux-system";
const POLICIES = ["web", "api", "side"] as const;

const segment = fc.stringMatching(/^[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?$/);
const image = fc
  .record({
    registry: fc.option(
      fc.constantFrom("ghcr.io", "127.0.0.1:5000", "registry.example.com:443", "localhost"),
    ),
    path: fc.array(segment, { minLength: 1, maxLength: 3 }),
    tag: fc.oneof(
      fc.stringMatching(/^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/),
      fc.stringMatching(/^v?[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/),
      // Tags that read as numbers, booleans or null if written plain.
      fc.constantFrom("1.10", "10", "true", "null", "1e3", "0x1F", "yes", "08"),
    ),
    digest: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { freq: 4 }),
  })
  .map(
    ({ registry, path, tag, digest }) =>
      `${registry ? `${registry}/` : ""}${path.join("/")}:${tag}${digest ? `@sha256:${digest}` : ""}`,
  );

type Kind = "" | ":tag" | ":name";
interface Marked {
  policy: (typeof POLICIES)[number];
  kind: Kind;
  quote: "" | "'" | '"';
  old: string;
  /** As a sequence item (`- value # marker`) instead of a mapping value. */
  item: boolean;
  /** Spaces between the value and `#`. */
  gap: string;
}
type Line = { comment: string } | { key: string; value: string } | { blank: true } | { marked: Marked };

const plainText = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,11}$/);
const line: fc.Arbitrary<Line> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({ comment: fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, "")) }),
  },
  { weight: 2, arbitrary: fc.record({ key: segment, value: plainText }) },
  { weight: 1, arbitrary: fc.constant({ blank: true as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      marked: fc.record({
        policy: fc.constantFrom(...POLICIES),
        kind: fc.constantFrom<Kind>("", ":tag", ":name"),
        quote: fc.constantFrom<"" | "'" | '"'>("", "'", '"'),
        old: fc.oneof(image, plainText),
        item: fc.boolean(),
        gap: fc.constantFrom(" ", "  ", "\t", "   "),
      }),
    }),
  },
);

interface Doc {
  text: string;
  /** Per line: the bytes before and after the marked value, for marked lines. */
  lines: { text: string; marked?: Marked & { before: string; after: string } }[];
  eol: string;
}

function quoteValue(v: string, q: "" | "'" | '"'): string {
  if (q === "'") return `'${v.replaceAll("'", "''")}'`;
  if (q === '"') return JSON.stringify(v);
  return v;
}

/** One document: a top-level map; marked sequence items live under their own key. */
function build(lines: Line[], eol: string, finalNewline: boolean): Doc {
  const out: Doc["lines"] = [];
  let n = 0;
  for (const l of lines) {
    if ("comment" in l) out.push({ text: `# ${l.comment}` });
    else if ("blank" in l) out.push({ text: "" });
    else if ("key" in l) out.push({ text: `k${n++}-${l.key}: ${l.value}` });
    else {
      const m = l.marked;
      const marker = `# {"$imagepolicy": "${NS}:${m.policy}${m.kind}"}`;
      // A plain old value must be a plain scalar that stays one string.
      const old =
        m.quote === "" && (!/^[A-Za-z0-9_./][A-Za-z0-9_./:@-]*$/.test(m.old) || m.old.endsWith(":"))
          ? "x"
          : m.old;
      const value = quoteValue(old, m.quote);
      if (m.item) {
        out.push({ text: `k${n++}:` });
        const before = "  - ";
        const after = `${m.gap}${marker}`;
        out.push({ text: `${before}${value}${after}`, marked: { ...m, old, before, after } });
      } else {
        const before = `k${n++}: `;
        const after = `${m.gap}${marker}`;
        out.push({ text: `${before}${value}${after}`, marked: { ...m, old, before, after } });
      }
    }
  }
  const text = out.map((l) => l.text).join(eol) + (finalNewline ? eol : "");
  return { text, lines: out, eol };
}

const doc = fc
  .tuple(fc.array(line, { minLength: 1, maxLength: 25 }), fc.constantFrom("\n", "\r\n"), fc.boolean())
  .map(([lines, eol, fin]) => build(lines, eol, fin));

const latestFor = (images: string[]): LatestImages =>
  new Map(POLICIES.map((p, i) => [`${NS}:${p}`, { image: images[i]! }]));

function expected(img: string, kind: Kind): string {
  const at = img.indexOf("@");
  const noDigest = at >= 0 ? img.slice(0, at) : img;
  const colon = noDigest.lastIndexOf(":");
  if (kind === ":tag") return noDigest.slice(colon + 1);
  if (kind === ":name") return noDigest.slice(0, colon);
  return img;
}

test("property: only the marked values change, each reads back as its policy's image, and a rerun changes nothing", () => {
  fc.assert(
    fc.property(doc, fc.array(image, { minLength: 3, maxLength: 3 }), (d, images) => {
      const latest = latestFor(images);
      // The generated text is valid YAML (else the generator is wrong, not the setters).
      for (const x of parseAllDocuments(d.text)) assert.equal(x.errors.length, 0, d.text);
      const r = applySetters(d.text, "fuzz.yaml", latest);
      assert.deepEqual(r.errors, []);
      const outLines = r.text.split(d.eol);
      const inLines = d.text.split(d.eol);
      assert.equal(outLines.length, inLines.length, "no line added or removed");
      let changed = 0;
      d.lines.forEach((l, i) => {
        const got = outLines[i]!;
        if (!l.marked) {
          assert.equal(got, l.text, `unmarked line ${i + 1} changed`);
          return;
        }
        const m = l.marked;
        assert.ok(
          got.startsWith(m.before) && got.endsWith(m.after),
          `bytes around line ${i + 1}'s value: ${got}`,
        );
        const written = got.slice(m.before.length, got.length - m.after.length);
        const want = expected(images[POLICIES.indexOf(m.policy)]!, m.kind);
        // Read the written scalar back the way Kubernetes tooling would.
        assert.equal(parse(`v: ${written}`).v, want, `line ${i + 1}: ${written}`);
        if (m.quote === "'") assert.ok(written.startsWith("'"), "single quotes kept");
        if (m.quote === '"') assert.ok(written.startsWith('"'), "double quotes kept");
        if (written !== quoteValue(m.old, m.quote)) changed++;
      });
      assert.equal(r.updates.length, changed, "one update per changed value");
      assert.equal(r.text.endsWith(d.eol), d.text.endsWith(d.eol), "the final line ending kept");
      const again = applySetters(r.text, "fuzz.yaml", latest);
      assert.equal(again.text, r.text, "idempotent");
      assert.equal(again.updates.length, 0);
    }),
    { numRuns: 600 },
  );
});

test("property: text carrying the marker token only ever fails with a SluiceError", () => {
  const noise = fc
    .array(
      fc.oneof(
        fc.constantFrom(
          '# {"$imagepolicy": "flux-system:web"}',
          '# {"$imagepolicy": "flux-system:web:tag"}',
          '# {"$imagepolicy": flux-system/web}',
          '{"$imagepolicy": "a:b:c:d"}',
          "image: x:1 ",
          "- ",
          ": ",
          "[",
          "]",
          "{",
          "}",
          "|\n",
          ">\n",
          "'",
          '"',
          "&a ",
          "*a",
          "\n",
          "\r\n",
          "  ",
          "\t",
          "#",
          "---\n",
        ),
        fc.string({ maxLength: 10 }),
      ),
      { maxLength: 60 },
    )
    .map((xs) => `"$imagepolicy"\n${xs.join("")}`);
  const latest = latestFor(["ghcr.io/a/web:1.0.0", "ghcr.io/a/api:2.0.0", "ghcr.io/a/side:3.0.0"]);
  fc.assert(
    fc.property(noise, (text) => {
      try {
        const r = applySetters(text, "noise.yaml", latest);
        assert.equal(typeof r.text, "string");
      } catch (e) {
        assert.ok(isSluiceError(e), `not a SluiceError: ${(e as Error)?.stack}`);
      }
    }),
    { numRuns: 2000 },
  );
});

test("regression: a marked file of megabytes of nesting is refused quickly, not parsed into gigabytes", () => {
  const text = `image: a:1 # {"$imagepolicy": "flux-system:web"}\nx: ${"[".repeat(3_000_000)}${"]".repeat(3_000_000)}\n`;
  const t0 = performance.now();
  assert.throws(
    () => applySetters(text, "deep.yaml", latestFor(["b:2", "c:3", "d:4"])),
    (e) => isSluiceError(e, "YamlInvalid") && /deep\.yaml: line 2: nesting deeper than/.test(e.message),
  );
  assert.ok(performance.now() - t0 < 5000, `took ${Math.round(performance.now() - t0)} ms`);
});
