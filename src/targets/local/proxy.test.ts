import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { after, test } from "node:test";
import { ServiceProxy } from "./proxy.js";

const servers: http.Server[] = [];
const proxies: ServiceProxy[] = [];

after(async () => {
  for (const p of proxies) await p.close();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function backend(name: string): Promise<number> {
  const s = http.createServer((_req, res) => res.end(name));
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as AddressInfo).port;
}

function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, agent: false, timeout: 8000 }, (res) => {
        let b = "";
        res.on("data", (c) => {
          b += c;
        });
        res.on("end", () => resolve(b));
      })
      .on("error", reject);
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function proxy(): Promise<ServiceProxy> {
  const p = new ServiceProxy("test", () => {});
  proxies.push(p);
  await p.listen([]);
  return p;
}

test("round robin over equal weights, weighted shares, and backend changes", async () => {
  const [a, b] = [await backend("a"), await backend("b")];
  const p = await proxy();
  p.setBackends([
    { podId: "A", podName: "a", host: "127.0.0.1", port: a, weight: 1 },
    { podId: "B", podName: "b", host: "127.0.0.1", port: b, weight: 1 },
  ]);
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) seen.push(await get(p.port));
  assert.deepEqual(seen.sort(), ["a", "a", "a", "b", "b", "b"]);

  p.setBackends([
    { podId: "A", podName: "a", host: "127.0.0.1", port: a, weight: 3 },
    { podId: "B", podName: "b", host: "127.0.0.1", port: b, weight: 1 },
  ]);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 8; i++) {
    const r = await get(p.port);
    counts[r] = (counts[r] ?? 0) + 1;
  }
  assert.deepEqual(counts, { a: 6, b: 2 }, "weights 3:1 give a 3:1 share");

  p.setBackends([{ podId: "B", podName: "b", host: "127.0.0.1", port: b, weight: 1 }]);
  for (let i = 0; i < 3; i++) assert.equal(await get(p.port), "b");
});

test("a refused backend is skipped; a connection waits for a backend to appear", async () => {
  const good = await backend("good");
  const dead = await freePort();
  const p = await proxy();
  p.setBackends([
    { podId: "D", podName: "dead", host: "127.0.0.1", port: dead, weight: 1 },
    { podId: "G", podName: "good", host: "127.0.0.1", port: good, weight: 1 },
  ]);
  for (let i = 0; i < 4; i++) assert.equal(await get(p.port), "good");

  p.setBackends([]);
  const pending = get(p.port);
  await new Promise((r) => setTimeout(r, 300));
  p.setBackends([{ podId: "G", podName: "good", host: "127.0.0.1", port: good, weight: 1 }]);
  assert.equal(await pending, "good");
});

test("active connections are counted per pod until they close", async () => {
  const up = net.createServer((s) => s.on("data", (d) => s.write(d)));
  await new Promise<void>((r) => up.listen(0, "127.0.0.1", r));
  const p = await proxy();
  p.setBackends([
    { podId: "E", podName: "echo", host: "127.0.0.1", port: (up.address() as AddressInfo).port, weight: 1 },
  ]);
  const c = net.connect(p.port, "127.0.0.1");
  c.write("ping");
  const echoed = await new Promise<string>((r) => c.once("data", (d) => r(String(d))));
  assert.equal(echoed, "ping");
  assert.equal(p.activeFor("E"), 1);
  c.end();
  const end = Date.now() + 2000;
  while (p.activeFor("E") !== 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.equal(p.activeFor("E"), 0);
  up.close();
});

test("listen takes the preferred port when free and another one when not", async () => {
  const want = await freePort();
  const p1 = await proxy();
  await p1.close();
  const a = new ServiceProxy("a", () => {});
  proxies.push(a);
  assert.equal(await a.listen([want]), want);
  const b = new ServiceProxy("b", () => {});
  proxies.push(b);
  const got = await b.listen([want]);
  assert.notEqual(got, want);
  assert.ok(got > 0);
});
