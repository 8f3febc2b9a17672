import assert from "node:assert/strict";
import { test } from "node:test";
import { assign, ownerOf } from "./ring.js";

const envs = Array.from({ length: 3000 }, (_, i) => `env-${i}`);

test("rendezvous hashing spreads environments evenly and the same for every caller", () => {
  const a = assign(envs, ["r-a", "r-b", "r-c"]);
  const b = assign(envs, ["r-c", "r-a", "r-b"]);
  assert.deepEqual([...a], [...b]);
  const counts = new Map<string, number>();
  for (const o of a.values()) counts.set(o, (counts.get(o) ?? 0) + 1);
  for (const n of counts.values()) assert.ok(n > 850 && n < 1150, `uneven share ${n}`);
  assert.equal(ownerOf("x", []), undefined);
});

test("adding a member moves only what it wins (about 1/N); removing one moves only its own", () => {
  const three = assign(envs, ["r-a", "r-b", "r-c"]);
  const four = assign(envs, ["r-a", "r-b", "r-c", "r-d"]);
  let moved = 0;
  for (const e of envs) {
    if (three.get(e) !== four.get(e)) {
      moved++;
      assert.equal(four.get(e), "r-d", "a moved environment goes to the newcomer");
    }
  }
  assert.ok(moved > 3000 * 0.2 && moved < 3000 * 0.3, `moved ${moved} of 3000`);
  const two = assign(envs, ["r-a", "r-c"]);
  for (const e of envs) if (three.get(e) !== "r-b") assert.equal(two.get(e), three.get(e));
});
