import assert from "node:assert/strict";
import { test } from "node:test";
import { WorkQueue } from "./queue.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("never runs the same key twice at once, and runs it again when enqueued while running", async () => {
  let running = 0;
  let maxRunning = 0;
  const runs: string[][] = [];
  const q = new WorkQueue({
    concurrency: 4,
    worker: async (_k, triggers) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs.push(triggers);
      await sleep(30);
      running--;
    },
  });
  q.enqueue("env/app", "a");
  await sleep(5);
  q.enqueue("env/app", "b");
  q.enqueue("env/app", "c");
  await q.idle();
  await sleep(5);
  await q.idle();
  assert.equal(maxRunning, 1);
  assert.deepEqual(runs, [["a"], ["b,c"]]);
});

test("waiting triggers for one key are merged into one run", async () => {
  const runs: string[][] = [];
  const q = new WorkQueue({ concurrency: 1, worker: async (k, t) => void runs.push([k, ...t]) });
  q.enqueue("x", "1");
  q.enqueue("y", "1");
  q.enqueue("y", "2");
  await q.idle();
  assert.deepEqual(runs, [
    ["x", "1"],
    ["y", "1", "2"],
  ]);
});

test("bounded concurrency across keys", async () => {
  let running = 0;
  let max = 0;
  const q = new WorkQueue({
    concurrency: 2,
    worker: async () => {
      running++;
      max = Math.max(max, running);
      await sleep(10);
      running--;
    },
  });
  for (let i = 0; i < 10; i++) q.enqueue(`k${i}`, "t");
  await q.idle();
  assert.equal(max, 2);
});

test("a failing key is retried with exponential backoff", async () => {
  const delays: number[] = [];
  let calls = 0;
  const q = new WorkQueue({
    concurrency: 1,
    backoff: { baseMs: 10, maxMs: 40 },
    random: () => 1,
    onError: (_k, _e, d) => delays.push(d),
    worker: async () => {
      calls++;
      if (calls < 4) throw new Error("boom");
    },
  });
  q.enqueue("k", "t");
  const deadline = Date.now() + 2000;
  while (calls < 4 && Date.now() < deadline) await sleep(5);
  assert.equal(calls, 4);
  assert.deepEqual(delays, [10, 20, 40]);
  await q.stop();
});
