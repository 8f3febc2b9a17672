/**
 * ImagePolicy selection: every case of Flux's image-reflector-controller policy tests
 * (semver_test, alphabetical_test, numerical_test, filter_test, factory_test), its ImagePolicy docs
 * (release candidates, the minio RELEASE.<timestamp> example, the main-<sha>-<ts> guide example),
 * and Sluice's reference cases (shared/reference/semantics.md §2).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ImagePolicySpec } from "../config/index.js";
import { isSluiceError } from "../core/index.js";
import { compilePolicy, selectLatest } from "./index.js";

const ref = { name: "app" };
const semver = (range: string, filterTags?: ImagePolicySpec["filterTags"]): ImagePolicySpec => ({
  imageRepositoryRef: ref,
  policy: { semver: { range } },
  ...(filterTags ? { filterTags } : {}),
});
const alpha = (order?: "asc" | "desc", filterTags?: ImagePolicySpec["filterTags"]): ImagePolicySpec => ({
  imageRepositoryRef: ref,
  policy: { alphabetical: order ? { order } : {} },
  ...(filterTags ? { filterTags } : {}),
});
const num = (order?: "asc" | "desc", filterTags?: ImagePolicySpec["filterTags"]): ImagePolicySpec => ({
  imageRepositoryRef: ref,
  policy: { numerical: order ? { order } : {} },
  ...(filterTags ? { filterTags } : {}),
});
const pick = (spec: ImagePolicySpec, tags: string[]) => selectLatest(spec, tags).tag;
const fails = (spec: ImagePolicySpec, tags: string[], code: string, msg: RegExp) =>
  assert.throws(
    () => pick(spec, tags),
    (e: unknown) => isSluiceError(e) && e.code === code && msg.test(e.message),
  );

function shuffle<T>(a: T[], seed: number): T[] {
  const out = [...a];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test("semver (Flux semver_test): regular, v prefix kept, invalid prefix, empty, no match", () => {
  assert.equal(pick(semver("1.0.x"), ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"]), "1.0.1");
  assert.equal(pick(semver("1.0.x"), ["v1.2.3", "v1.0.0", "v0.1.0"]), "v1.0.0");
  fails(semver("1.0.x"), ["b1.2.3", "b1.0.0", "b0.1.0"], "NotFound", /unable to determine latest version/);
  fails(semver("1.0.x"), [], "NotFound", /version list argument cannot be empty/);
  fails(semver("1.0.x"), ["1.2.0"], "NotFound", /unable to determine latest version/);
});

test("semver: invalid ranges are configuration errors naming the field (Flux factory_test)", () => {
  for (const r of ["1.0.0p", "1x", "x1", "-1", "a", "*-*"]) {
    assert.throws(
      () => compilePolicy(semver(r), { subject: "ImagePolicy/apps/web" }),
      (e: unknown) =>
        isSluiceError(e, "ConfigInvalid") &&
        e.message.includes("ImagePolicy/apps/web") &&
        e.message.includes("spec.policy.semver.range"),
      r,
    );
  }
});

test("semver: pre-releases out, then in with -0; non-semver tags ignored", () => {
  const tags = ["1.0.0", "1.0.1", "1.1.0-rc.1", "latest", "3f2a9c1b7d"];
  assert.equal(pick(semver(">=1.0.0"), tags), "1.0.1");
  assert.equal(pick(semver(">=1.0.0-0"), tags), "1.1.0-rc.1");
  assert.equal(pick(semver("*"), ["1", "1.0", "1.0.0"]), "1.0.0");
  // the docs' release-candidate example
  assert.equal(
    pick(semver("^1.x-0", { pattern: ".*-rc.*" }), [
      "1.0.0",
      "1.1.0-rc.1",
      "1.1.0-rc.2",
      "1.2.0",
      "2.0.0-rc.1",
    ]),
    "1.1.0-rc.2",
  );
  // equal versions: the first one listed wins, with its own spelling
  assert.equal(pick(semver(">=1.0.0"), ["v1.0.0", "1.0.0", "1.0.0+build"]), "v1.0.0");
  assert.equal(pick(semver(">=1.0.0"), ["1.0.0+build", "v1.0.0"]), "1.0.0+build");
});

test("alphabetical (Flux alphabetical_test): asc by default picks the greatest, desc the least", () => {
  const calver = ["16.04", "16.04.1", "16.10", "20.04", "20.10"];
  const names = ["xenial", "yakkety", "zesty", "artful", "bionic"];
  const ts = ["1606234201", "1606364286", "1606334092", "1606334284", "1606334201"];
  assert.equal(pick(alpha(), calver), "20.10");
  assert.equal(pick(alpha("desc"), calver), "16.04");
  assert.equal(pick(alpha(), names), "zesty");
  assert.equal(pick(alpha("desc"), names), "artful");
  assert.equal(pick(alpha(), ts), "1606364286");
  assert.equal(pick(alpha("desc"), ts), "1606234201");
  assert.equal(
    pick(
      alpha(),
      ts.map((t) => `rel-${t}`),
    ),
    "rel-1606364286",
  );
  fails(alpha(), [], "NotFound", /version list argument cannot be empty/);
  assert.equal(pick(alpha("asc"), ["1.0.0", "2.0.0", "latest"]), "latest");
  assert.equal(pick(alpha("asc"), ["1", "9", "10"]), "9");
  // byte order, as Go sorts: uppercase before lowercase
  assert.equal(pick(alpha("asc"), ["Zeta", "alpha"]), "alpha");
});

test("numerical (Flux numerical_test): integers, floats, timestamps, single values, errors", () => {
  for (let seed = 1; seed <= 5; seed++) {
    assert.equal(
      pick(num(), shuffle(["-62", "-88", "73", "72", "15", "16", "15", "29", "-33", "-91"], seed)),
      "73",
    );
    assert.equal(
      pick(num("desc"), shuffle(["5", "-8", "-78", "25", "70", "-4", "80", "92", "-20", "-24"], seed)),
      "-78",
    );
    const floatsAsc = [
      "47.40896403322944",
      "-27.8520927455902",
      "-27.930666514224427",
      "-31.352485948094568",
      "-50.41072694704882",
      "-21.962849842263736",
      "24.71884721436865",
      "-39.99177354004344",
      "53.47333823144817",
      "3.2008658570411086",
    ];
    assert.equal(pick(num("asc"), shuffle(floatsAsc, seed)), "53.47333823144817");
    const floatsDesc = [
      "-65.27202780220686",
      "57.82948329142309",
      "22.40184684363291",
      "-86.36934305697784",
      "-90.29082099756083",
      "-12.041712603564264",
      "77.70488240399305",
      "-38.98425003883552",
      "16.06867070412028",
      "53.735674335181216",
    ];
    assert.equal(pick(num("desc"), shuffle(floatsDesc, seed)), "-90.29082099756083");
    const unix = ["1606234201", "1606364286", "1606334092", "1606334284", "1606334201"];
    assert.equal(pick(num("asc"), shuffle(unix, seed)), "1606364286");
    assert.equal(pick(num("desc"), shuffle(unix, seed)), "1606234201");
  }
  assert.equal(pick(num(), ["1"]), "1");
  assert.equal(pick(num("desc"), ["1"]), "1");
  assert.equal(pick(num("asc"), ["1", "9", "10"]), "10");
  fails(num(), ["0", "1a", "b"], "ConfigInvalid", /failed to parse invalid numeric value '1a'/);
  fails(num(), [], "NotFound", /version list argument cannot be empty/);
  fails(num(), ["1", "2", "latest"], "ConfigInvalid", /'latest'/);
  fails(num(), ["1234e56789"], "ConfigInvalid", /'1234e56789'/);
});

test("filterTags (Flux filter_test and docs): pattern, named groups, $ts / ${ts} / $1 extraction", () => {
  const tags = [
    "main-2d3fcbd-1611906956",
    "main-abc1234-1611906999",
    "main-zzz-1711906999",
    "feature-1-1811906956",
    "latest",
  ];
  const pattern = "^main-[a-fA-F0-9]+-(?P<ts>.*)";
  assert.equal(pick(num("asc", { pattern, extract: "$ts" }), tags), "main-abc1234-1611906999");
  assert.equal(pick(num("asc", { pattern, extract: "${ts}" }), tags), "main-abc1234-1611906999");
  assert.equal(pick(num("asc", { pattern, extract: "$1" }), tags), "main-abc1234-1611906999");
  // a loose capture extracts "def-5" from main-abc-def-5: not a number, as the docs warn
  fails(num("asc", { pattern, extract: "$ts" }), [...tags, "main-abc-def-5"], "ConfigInvalid", /'def-5'/);
  assert.equal(
    pick(num("asc", { pattern: "^main-[a-fA-F0-9]+-(?P<ts>[1-9][0-9]*)$", extract: "$ts" }), [
      ...tags,
      "main-abc-def-5",
    ]),
    "main-abc1234-1611906999",
  );
  // filter_test: ver(\d+) with $1 keeps ver1..3 and drops rel1
  assert.equal(
    pick(num("desc", { pattern: "ver(\\d+)", extract: "$1" }), ["ver1", "ver2", "ver3", "rel1"]),
    "ver1",
  );
  assert.equal(pick(alpha("asc", { pattern: "^ver" }), ["ver1", "ver2", "ver3", "rel1", "zzz"]), "ver3");
  // minio: RELEASE.<RFC 3339>Z
  const minio = [
    "RELEASE.2021-01-30T00-20-58Z",
    "RELEASE.2021-02-01T22-56-52Z",
    "RELEASE.2020-12-29T23-29-29Z",
    "latest",
  ];
  assert.equal(
    pick(alpha("asc", { pattern: "^RELEASE\\.(?P<timestamp>.*)Z$", extract: "$timestamp" }), minio),
    "RELEASE.2021-02-01T22-56-52Z",
  );
  // nothing kept
  fails(num("asc", { pattern: "^nope" }), tags, "NotFound", /filterTags.pattern kept none of 5 tags/);
  // two tags extracting the same value: the later tag is returned (Flux's map)
  assert.equal(pick(num("asc", { pattern: "-(\\d+)$", extract: "$1" }), ["a-5", "b-5", "c-1"]), "b-5");
  // extract with $1x reads the group named "1x": empty, so every tag maps to ""
  fails(num("asc", { pattern: "(\\d+)", extract: "$1x" }), ["1", "2"], "ConfigInvalid", /''/);
});

test("filterTags: Go's (?P<…>) spelling is translated; RE2-refused constructs are configuration errors", () => {
  assert.equal(
    pick(semver(">=0.0.0", { pattern: "^v(?P<v>.*)$", extract: "$v" }), ["v1.0.0", "v2.0.0", "x3.0.0"]),
    "v2.0.0",
  );
  for (const pattern of ["(a)\\1", "(?=x)", "(?<!x)y", "a**"]) {
    assert.throws(
      () => compilePolicy(alpha("asc", { pattern }), { subject: "ImagePolicy/apps/web" }),
      (e: unknown) =>
        isSluiceError(e, "ConfigInvalid") && /spec.filterTags.pattern .* not a valid RE2/.test(e.message),
      pattern,
    );
  }
});

test("the result names the image: name:tag from the repository's spec.image", () => {
  const r = selectLatest(semver("0.0.x"), ["0.0.1", "0.0.2", "latest"], { image: "127.0.0.1:5000/app" });
  assert.deepEqual(r, { tag: "0.0.2", name: "127.0.0.1:5000/app", image: "127.0.0.1:5000/app:0.0.2" });
  assert.deepEqual(selectLatest(semver("0.0.x"), ["0.0.1"]), { tag: "0.0.1", name: "", image: "0.0.1" });
});

test("a compiled policy selects from 10,000 tags in well under 50 ms", () => {
  const tags: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    tags.push(
      i % 3 === 0
        ? `${i % 7}.${i % 13}.${i}`
        : i % 3 === 1
          ? `main-${(i * 2654435761).toString(16).slice(0, 8)}-${1600000000 + i}`
          : `v1.${i}.0-rc.${i % 5}`,
    );
  }
  const specs = [
    semver(">=1.0.0 <5"),
    semver(">=1.0.0-0"),
    alpha("asc"),
    num("asc", { pattern: "^main-[a-f0-9]+-(?P<ts>[0-9]+)$", extract: "$ts" }),
  ];
  for (const spec of specs) {
    const p = compilePolicy(spec);
    p.select(tags);
    let ms = Number.POSITIVE_INFINITY;
    for (let run = 0; run < 3; run++) {
      const t0 = performance.now();
      p.select(tags);
      ms = Math.min(ms, performance.now() - t0);
    }
    assert.ok(ms < 50, `${p.kind} ${p.detail}: ${ms.toFixed(1)} ms`);
  }
});
