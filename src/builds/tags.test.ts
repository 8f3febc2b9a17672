import assert from "node:assert/strict";
import { test } from "node:test";
import { imageTags } from "./tags.js";

const sha = "0123456789abcdef0123456789abcdef01234567";

test("a release tag drops its v: v1.0.2 → 1.0.2, plus latest", () => {
  assert.deepEqual(imageTags({ commit: sha, gitTag: "v1.0.2" }), ["1.0.2", "latest"]);
  assert.deepEqual(imageTags({ commit: sha, gitTag: "2.0.8-beta.67" }), ["2.0.8-beta.67", "latest"]);
});

test("any other commit is tagged with the first 10 characters of its id", () => {
  assert.deepEqual(imageTags({ commit: sha }), ["0123456789", "latest"]);
  assert.deepEqual(imageTags({ commit: sha, gitTag: "release-candidate" }), ["0123456789", "latest"]);
});

test("a short or malformed commit id is refused", () => {
  assert.throws(() => imageTags({ commit: "abc" }));
});
