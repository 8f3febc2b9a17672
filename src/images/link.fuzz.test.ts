/**
 * Property tests of the registry `Link` header parser (RFC 8288): for generated headers — several
 * link-values, parameters in any order and case, quoted parameters holding `,`, `;`, `<` and `>`,
 * optional white space — `nextLink` returns the target of the first link whose (first) `rel` names
 * `next`, and nothing when none does; for any text it never throws and stays fast.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { nextLink } from "./registry.js";

const uri = fc
  .tuple(
    fc.constantFrom("/v2/", "https://registry.example.com/v2/", "http://127.0.0.1:5000/v2/", ""),
    fc.stringMatching(/^[a-z0-9/_.-]{1,20}$/),
    fc.stringMatching(/^[A-Za-z0-9%=&,;:@.+_-]{0,30}$/),
  )
  .map(([base, path, query]) => `${base}${path}/tags/list${query ? `?${query}` : ""}`);

const ows = fc.constantFrom("", " ", "  ", "\t");
// Characters a quoted-string may hold (RFC 7230 qdtext and quoted-pairs), including separators.
const quoted = fc
  .array(
    fc.oneof(
      fc.constantFrom(",", ";", "<", ">", "=", " ", '\\"', "\\\\", "rel=next", "next"),
      fc.stringMatching(/^[A-Za-z0-9 ]{0,6}$/),
    ),
    {
      maxLength: 8,
    },
  )
  .map((xs) => `"${xs.join("")}"`);
const relValue = fc.array(
  fc.constantFrom("next", "prev", "last", "first", "alternate", "NEXT", "Next", "nextish"),
  {
    minLength: 1,
    maxLength: 3,
  },
);

interface Param {
  name: string;
  value: string;
  /** For rel: the relation types it names. */
  rels?: string[];
}
const param: fc.Arbitrary<Param> = fc.oneof(
  fc.tuple(fc.constantFrom("rel", "REL", "Rel"), relValue, fc.boolean()).map(([name, rels, q]) => ({
    name,
    rels,
    value: q || rels.length > 1 ? `"${rels.join(" ")}"` : rels[0]!,
  })),
  fc
    .tuple(
      fc.constantFrom("title", "type", "anchor", "hreflang", "title*"),
      fc.oneof(quoted, fc.stringMatching(/^[A-Za-z0-9/.-]{1,10}$/)),
    )
    .map(([name, value]) => ({ name, value })),
);
const link = fc.record({
  uri,
  params: fc.array(param, { maxLength: 4 }),
  ws: fc.array(ows, { minLength: 4, maxLength: 4 }),
});

/** The answer by RFC 8288: the first link whose first rel parameter lists `next` (case-insensitive). */
function expected(links: { uri: string; params: Param[] }[]): string | undefined {
  for (const l of links) {
    const rel = l.params.find((p) => p.name.toLowerCase() === "rel");
    if (rel?.rels?.some((r) => r.toLowerCase() === "next")) return l.uri;
  }
  return undefined;
}

test("property: the target of the first link whose rel is next, whatever the other parameters hold", () => {
  fc.assert(
    fc.property(fc.array(link, { minLength: 1, maxLength: 4 }), (links) => {
      const header = links
        .map(
          (l) =>
            `${l.ws[0]}<${l.uri}>${l.params.map((p) => `${l.ws[1]};${l.ws[2]}${p.name}${l.ws[3]}=${l.ws[3]}${p.value}`).join("")}`,
        )
        .join(", ");
      assert.equal(nextLink(header), expected(links), header);
    }),
    { numRuns: 5000 },
  );
});

test("property: any text: no exception, an answer in bounded time", () => {
  const piece = fc.oneof(
    fc.constantFrom("<", ">", ";", ",", "=", '"', "\\", " ", "rel", "next", "\t"),
    fc.string({ maxLength: 5 }),
  );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.array(piece, { maxLength: 200 }).map((xs) => xs.join("")),
        fc.string({ maxLength: 500 }),
      ),
      (h) => {
        const r = nextLink(h);
        assert.ok(r === undefined || typeof r === "string");
      },
    ),
    { numRuns: 5000 },
  );
  // Worst cases for a backtracking parser, far beyond any header size a server sends.
  for (const h of [
    "<".repeat(100_000),
    `<a>${";x".repeat(50_000)}`,
    `<a>; title="${"\\".repeat(100_000)}`,
    `${'<a>; rel="'.repeat(20_000)}`,
  ]) {
    const t0 = performance.now();
    nextLink(h);
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `${h.slice(0, 12)}…: ${Math.round(ms)} ms`);
  }
  assert.equal(nextLink(null), undefined);
  assert.equal(nextLink(""), undefined);
});
