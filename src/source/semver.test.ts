import assert from "node:assert/strict";
import { test } from "node:test";
import { pickSemverTag } from "./index.js";

// Cases from the reference (semantics.md §2), applied to ref.semver.
test("picks the highest strictly parsed tag in range and returns the original tag", () => {
  assert.equal(pickSemverTag(["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"], "1.0.x"), "1.0.1");
  assert.equal(pickSemverTag(["v1.2.3", "v1.0.0", "v0.1.0"], "1.0.x"), "v1.0.0");
  assert.equal(pickSemverTag(["b1.2.3", "b1.0.0", "b0.1.0"], "1.0.x"), undefined);
  assert.equal(pickSemverTag(["1.2.0"], "1.0.x"), undefined);
  assert.equal(pickSemverTag([], "1.0.x"), undefined);
  assert.equal(pickSemverTag(["1", "1.0", "1.0.0"], "*"), "1.0.0");
});

test("pre-releases only when the range carries one", () => {
  const tags = ["1.0.0", "1.0.1", "1.1.0-rc.1", "latest", "3f2a9c1b7d"];
  assert.equal(pickSemverTag(tags, ">=1.0.0"), "1.0.1");
  assert.equal(pickSemverTag(tags, ">=1.0.0-0"), "1.1.0-rc.1");
});

test("comma means AND; an invalid range is a ConfigInvalid error", () => {
  assert.equal(pickSemverTag(["1.1.0", "1.5.0", "2.0.0"], ">=1.0.0, <2.0.0"), "1.5.0");
  assert.throws(() => pickSemverTag(["1.0.0"], "a"), /invalid semver range/);
});
