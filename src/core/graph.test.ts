import assert from "node:assert/strict";
import { test } from "node:test";
import { analyzeGraph } from "./graph.js";

test("orders units so that every dependency comes first", () => {
  const g = analyzeGraph([
    { id: "app", dependsOn: ["db", "config"] },
    { id: "db", dependsOn: ["infra"] },
    { id: "config", dependsOn: [] },
    { id: "infra", dependsOn: [] },
  ]);
  assert.deepEqual(g.cycles, []);
  const pos = (id: string) => g.order.indexOf(id);
  assert.ok(pos("infra") < pos("db") && pos("db") < pos("app") && pos("config") < pos("app"));
});

test("names every cycle and blocks what is in it or depends on it", () => {
  const g = analyzeGraph([
    { id: "a", dependsOn: ["b"] },
    { id: "b", dependsOn: ["c"] },
    { id: "c", dependsOn: ["a"] },
    { id: "d", dependsOn: ["a"] },
    { id: "e", dependsOn: [] },
    { id: "self", dependsOn: ["self"] },
  ]);
  assert.equal(g.cycles.length, 2);
  assert.deepEqual(new Set(g.cycles.find((c) => c.length === 3)), new Set(["a", "b", "c"]));
  assert.deepEqual(
    g.cycles.find((c) => c.length === 1),
    ["self"],
  );
  assert.deepEqual([...g.blocked].sort(), ["a", "b", "c", "d", "self"]);
  assert.deepEqual(g.order, ["e"]);
});

test("reports dependencies that do not exist", () => {
  const g = analyzeGraph([{ id: "a", dependsOn: ["ghost"] }]);
  assert.deepEqual(g.missing, [{ id: "a", dependency: "ghost" }]);
});
