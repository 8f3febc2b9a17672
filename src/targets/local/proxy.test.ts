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

// ---------------------------------------------------------------- http mode

/** A backend that answers `name`, the request body (if any) and the `x-seen` header it received. */
async function echoBackend(name: string): Promise<number> {
  const s = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      res.setHeader("x-backend", name);
      res.end(body ? `${name}:${body}` : name);
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as AddressInfo).port;
}

function request(
  port: number,
  opts: { agent?: http.Agent; headers?: Record<string, string>; method?: string; body?: string } = {},
): Promise<{ status: number; body: string; socketPort: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: opts.method ?? "GET",
        path: "/",
        agent: opts.agent ?? false,
        headers: opts.headers ?? {},
        timeout: 8000,
      },
      (res) => {
        let b = "";
        res.on("data", (c) => {
          b += c;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: b, socketPort: req.socket?.localPort ?? 0 }),
        );
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

const be = (id: string, port: number, weight = 1) => ({
  podId: id,
  podName: id.toLowerCase(),
  host: "127.0.0.1",
  port,
  weight,
});

test("http mode routes every request of a kept-alive connection on its own", async () => {
  const [a, b] = [await echoBackend("a"), await echoBackend("b")];
  const p = await proxy();
  p.setRoutes("http", [{ backends: [be("A", a)] }]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const r1 = await request(p.port, { agent });
    assert.equal(r1.body, "a");
    p.setRoutes("http", [{ backends: [be("A", a, 0), be("B", b)] }]);
    const r2 = await request(p.port, { agent });
    assert.equal(r2.body, "b", "the next request on the same connection follows the new weights");
    assert.equal(r2.socketPort, r1.socketPort, "the client connection was kept alive");
    // Weights per request: 1:3 over 40 requests on one connection is exactly 10:30.
    p.setRoutes("http", [{ backends: [be("A", a, 1), be("B", b, 3)] }]);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const r = await request(p.port, { agent });
      counts[r.body] = (counts[r.body] ?? 0) + 1;
    }
    assert.deepEqual(counts, { a: 10, b: 30 });
  } finally {
    agent.destroy();
  }
});

test("http mode: header and cookie matches pick their route, everything else the default", async () => {
  const [a, b] = [await echoBackend("a"), await echoBackend("b")];
  const p = await proxy();
  p.setRoutes("http", [
    {
      matches: [
        { headers: [{ name: "X-Version", value: "v2" }] },
        { cookies: [{ name: "ab", value: "v2" }] },
      ],
      backends: [be("B", b)],
    },
    { backends: [be("A", a)] },
  ]);
  for (let i = 0; i < 5; i++) {
    assert.equal((await request(p.port, { headers: { "x-version": "v2" } })).body, "b");
    assert.equal((await request(p.port, { headers: { cookie: "x=1; ab=v2; y=2" } })).body, "b");
    assert.equal((await request(p.port, { headers: { cookie: "ab=v3" } })).body, "a");
    assert.equal((await request(p.port, { headers: { "x-version": "v1" } })).body, "a");
    assert.equal((await request(p.port)).body, "a");
  }
});

test("http mode forwards bodies and retries a refused backend with a buffered body", async () => {
  const good = await echoBackend("good");
  const dead = await freePort();
  const p = await proxy();
  p.setRoutes("http", [{ backends: [be("D", dead), be("G", good)] }]);
  for (let i = 0; i < 4; i++) {
    const r = await request(p.port, {
      method: "POST",
      body: `hello ${i}`,
      headers: { "content-type": "text/plain" },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body, `good:hello ${i}`);
  }
  // A chunked body streams through (no retry possible, but the only backend is up).
  p.setRoutes("http", [{ backends: [be("G", good)] }]);
  const r = await new Promise<string>((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: p.port, method: "PUT", path: "/", agent: false },
      (res) => {
        let b = "";
        res.on("data", (c) => {
          b += c;
        });
        res.on("end", () => resolve(b));
      },
    );
    req.on("error", reject);
    req.write("part1-");
    setTimeout(() => req.end("part2"), 50);
  });
  assert.equal(r, "good:part1-part2");
});

test("http mode tunnels upgrades and counts requests in flight", async () => {
  const s = http.createServer((_req, res) => {
    setTimeout(() => res.end("slow"), 300);
  });
  const upgraded: net.Socket[] = [];
  s.on("upgrade", (_req, socket: net.Socket) => {
    upgraded.push(socket);
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
    socket.on("data", (d) => socket.write(d));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  const p = await proxy();
  p.setRoutes("http", [{ backends: [be("S", port)] }]);
  const pending = request(p.port);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(p.activeFor("S"), 1, "one request in flight");
  assert.equal((await pending).body, "slow");
  assert.equal(p.activeFor("S"), 0);

  const c = net.connect(p.port, "127.0.0.1");
  c.write("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
  let got = "";
  await new Promise<void>((resolve) => {
    c.on("data", (d) => {
      got += d;
      if (got.includes("\r\n\r\n") && !got.includes("ping")) c.write("ping");
      if (got.endsWith("ping")) resolve();
    });
  });
  assert.match(got, /^HTTP\/1\.1 101/);
  assert.equal(p.activeFor("S"), 1, "the tunnel counts while open");
  c.destroy();
  // An upgraded socket is no longer the server's: closeAllConnections() does not see it.
  for (const u of upgraded) u.destroy();
  s.closeAllConnections();
});

test("switching modes keeps the listener: tcp connections stay, new ones are parsed", async () => {
  const [a, b] = [await echoBackend("a"), await echoBackend("b")];
  const p = await proxy();
  p.setBackends([be("A", a)]);
  assert.equal(await get(p.port), "a");
  p.setRoutes("http", [
    { matches: [{ headers: [{ name: "x-ab", value: "1" }] }], backends: [be("B", b)] },
    { backends: [be("A", a)] },
  ]);
  assert.equal((await request(p.port, { headers: { "x-ab": "1" } })).body, "b");
  assert.equal((await request(p.port)).body, "a");
  p.setRoutes("tcp", [
    { matches: [{ headers: [{ name: "x-ab", value: "1" }] }], backends: [be("B", b)] },
    { backends: [be("A", a)] },
  ]);
  assert.equal((await request(p.port, { headers: { "x-ab": "1" } })).body, "a", "tcp mode ignores matches");
});
