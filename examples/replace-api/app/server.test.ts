import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import { request as rawRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createReplacer,
  createServer,
  DEFAULT_REPLACEMENTS,
  loadReplacements,
  MAX_BODY_BYTES,
  type ServerOptions,
  shutdown,
} from "./server.js";

const SEED_1_IN = "The analysts of ABN did a great job!";
const SEED_1_OUT = "The analysts of ABN Amro did a great job!";
const SEED_2_IN =
  "Abn is one of the largest banks in Netherlands. aBN amro's annual budget is ... ING is a global organization. InG Bank is in fortune 500 companies. VolksBank , TriodoS and raBo are anothers as aBn";
const SEED_2_OUT =
  "ABN Amro is one of the largest banks in Netherlands. ABN Amro's annual budget is ... ING Bank is a global organization. ING Bank is in fortune 500 companies. de Volksbank , Triodos Bank and Rabobank are anothers as ABN Amro";

interface Started {
  base: string;
  server: http.Server;
  lines: string[];
}

async function start(opts: ServerOptions = {}): Promise<Started> {
  const lines: string[] = [];
  const server = createServer({ log: (line) => lines.push(line), ...opts });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, server, lines };
}

async function stop(s: Started): Promise<void> {
  await shutdown(s.server, 2000);
}

async function replaceVia(base: string, text: string): Promise<string> {
  const res = await fetch(`${base}/api/replace`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ test: text }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { result: string };
  return body.result;
}

describe("POST /api/replace", () => {
  let s: Started;
  before(async () => {
    s = await start();
  });
  after(() => stop(s));

  test("answers the seed's first case exactly", async () => {
    const res = await fetch(`${s.base}/api/replace`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{\n  "test" : "${SEED_1_IN}"\n}`,
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const text = await res.text();
    assert.deepEqual(JSON.parse(text), { result: SEED_1_OUT });
    assert.equal(text, `{\n  "result": "${SEED_1_OUT}"\n}\n`);
  });

  test("answers the seed's second case exactly", async () => {
    assert.equal(await replaceVia(s.base, SEED_2_IN), SEED_2_OUT);
  });

  test("expands each short name", async () => {
    const cases: [string, string][] = [
      ["ABN", "ABN Amro"],
      ["ING", "ING Bank"],
      ["Volksbank", "de Volksbank"],
      ["Triodos", "Triodos Bank"],
      ["Rabo", "Rabobank"],
    ];
    for (const [input, output] of cases) {
      assert.equal(await replaceVia(s.base, `I bank at ${input}.`), `I bank at ${output}.`, input);
    }
  });

  test("matches case-insensitively and writes the canonical case", async () => {
    assert.equal(
      await replaceVia(s.base, "abn, iNg, VOLKSBANK, triodos, RABO"),
      "ABN Amro, ING Bank, de Volksbank, Triodos Bank, Rabobank",
    );
  });

  test("replaces whole words only", async () => {
    const untouched = "ABNA thinking INGest Volksbanken Triodosx Rabobanks rabot _ING ING2 ABN_ Amro";
    assert.equal(await replaceVia(s.base, untouched), untouched);
    assert.equal(
      await replaceVia(s.base, "(ABN) 'ing' ABN's ING-group Rabo/Triodos"),
      "(ABN Amro) 'ING Bank' ABN Amro's ING Bank-group Rabobank/Triodos Bank",
    );
    assert.equal(
      await replaceVia(s.base, "éABN ABNé ABN"),
      "éABN ABNé ABN Amro",
      "letters beyond ASCII count as word characters",
    );
  });

  test("normalises names already in full form instead of doubling them", async () => {
    assert.equal(
      await replaceVia(s.base, "abn amro, ING BANK, De Volksbank, triodos bank, RABOBANK"),
      "ABN Amro, ING Bank, de Volksbank, Triodos Bank, Rabobank",
    );
    assert.equal(
      await replaceVia(s.base, "ABN  \tAMRO"),
      "ABN Amro",
      "any whitespace between the words of a full name",
    );
    assert.equal(await replaceVia(s.base, "ABN Amro ABN Amro"), "ABN Amro ABN Amro", "idempotent");
  });

  test("leaves text without bank names and the empty string alone", async () => {
    assert.equal(await replaceVia(s.base, ""), "");
    assert.equal(
      await replaceVia(s.base, "Nothing to see here. ✓ ünïcödé"),
      "Nothing to see here. ✓ ünïcödé",
    );
  });

  test("accepts a body of exactly 1 MiB", async () => {
    const prefix = '{"test": "';
    const suffix = '"}';
    const body = prefix + "a".repeat(MAX_BODY_BYTES - prefix.length - suffix.length) + suffix;
    assert.equal(Buffer.byteLength(body), MAX_BODY_BYTES);
    const res = await fetch(`${s.base}/api/replace`, {
      method: "POST",
      body,
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { result: string }).result.length, MAX_BODY_BYTES - 12);
  });

  test("logs one line per request without the body", async () => {
    const before = s.lines.length;
    await replaceVia(s.base, "secret-ish ABN text");
    const added = s.lines.slice(before);
    assert.equal(added.length, 1);
    assert.match(added[0] ?? "", /POST \/api\/replace 200/);
    assert.doesNotMatch(added[0] ?? "", /secret-ish/);
  });
});

describe("bad requests", () => {
  let s: Started;
  before(async () => {
    s = await start();
  });
  after(() => stop(s));

  async function expectError(
    init: { method?: string; path?: string; body?: string },
    status: number,
    message: RegExp,
  ): Promise<Response> {
    const res = await fetch(`${s.base}${init.path ?? "/api/replace"}`, {
      method: init.method ?? "POST",
      ...(init.body === undefined ? {} : { body: init.body }),
      headers: { "content-type": "application/json" },
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, status, `status for ${JSON.stringify(init).slice(0, 80)}`);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const body = (await res.json()) as { error: unknown };
    assert.equal(typeof body.error, "string");
    assert.match(body.error as string, message);
    return res;
  }

  test("a body that is not JSON is a 400", async () => {
    await expectError({ body: "test=ABN" }, 400, /not valid JSON/);
    await expectError({ body: "" }, 400, /not valid JSON/);
    await expectError({ body: '{"test": "ABN"' }, 400, /not valid JSON/);
  });

  test("JSON that is not an object is a 400", async () => {
    for (const body of ['"ABN"', "[]", "null", "42"])
      await expectError({ body }, 400, /must be a JSON object/);
  });

  test("a missing test field is a 400", async () => {
    await expectError({ body: "{}" }, 400, /missing field "test"/);
    await expectError({ body: '{"text": "ABN"}' }, 400, /missing field "test"/);
  });

  test("a test field that is not a string is a 400", async () => {
    for (const value of ["42", "null", "true", '["ABN"]', '{"a": "ABN"}']) {
      await expectError({ body: `{"test": ${value}}` }, 400, /"test" must be a string/);
    }
  });

  test("a body over 1 MiB is a 400, declared or streamed", async () => {
    const big = JSON.stringify({ test: "a".repeat(MAX_BODY_BYTES) });
    await expectError({ body: big }, 400, /larger than 1048576 bytes/);

    // Chunked upload without Content-Length: the limit is enforced while reading.
    const { port } = s.server.address() as AddressInfo;
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = rawRequest({ host: "127.0.0.1", port, method: "POST", path: "/api/replace" }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.setTimeout(5000, () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      const chunk = "a".repeat(64 * 1024);
      req.write('{"test": "');
      for (let i = 0; i < 17; i++) req.write(chunk);
      req.end('"}');
    });
    assert.equal(status, 400);
    assert.match((JSON.parse(body) as { error: string }).error, /larger than/);

    // The server is still serving afterwards.
    assert.equal(await replaceVia(s.base, "ABN"), "ABN Amro");
  });

  test("a wrong method is a 405 with Allow", async () => {
    const res = await expectError({ method: "GET" }, 405, /use POST/);
    assert.equal(res.headers.get("allow"), "POST");
    await expectError({ method: "PUT", body: '{"test": "ABN"}' }, 405, /use POST/);
    await expectError({ method: "POST", path: "/healthz", body: "{}" }, 405, /GET \/healthz/);
  });

  test("an unknown path is a 404", async () => {
    await expectError({ path: "/api/replace/x", body: '{"test": "ABN"}' }, 404, /no route/);
    await expectError({ method: "GET", path: "/" }, 404, /no route/);
  });

  test("every bad request is logged with its status", () => {
    assert.ok(s.lines.some((l) => / 400 /.test(l)));
    assert.ok(s.lines.some((l) => / 404 /.test(l)));
    assert.ok(s.lines.some((l) => / 405 /.test(l)));
  });
});

describe("GET /healthz", () => {
  test("answers 200", async () => {
    const s = await start();
    try {
      const res = await fetch(`${s.base}/healthz`, { signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: "ok" });
      assert.equal((await fetch(`${s.base}/healthz?probe=1`, { method: "HEAD" })).status, 200);
    } finally {
      await stop(s);
    }
  });
});

describe("replacement table", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "replace-api-test-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("an override table replaces the built-in one", async () => {
    const file = join(dir, "replacements.json");
    writeFileSync(file, JSON.stringify({ Knab: "Knab Bank", ASN: "ASN Bank" }));
    const s = await start({ replacements: loadReplacements(file) });
    try {
      assert.equal(await replaceVia(s.base, "knab, asn bank and ABN"), "Knab Bank, ASN Bank and ABN");
    } finally {
      await stop(s);
    }
  });

  test("the shipped ConfigMap table behaves like the built-in one", () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const shipped = loadReplacements(join(here, "..", "deploy", "base", "replacements.json"));
    assert.deepEqual(shipped, { ...DEFAULT_REPLACEMENTS });
    assert.equal(createReplacer(shipped)(SEED_2_IN), SEED_2_OUT);
  });

  test("an invalid table is refused naming the file and the reason", () => {
    const cases: [string, RegExp][] = [
      ["{", /not valid JSON/],
      ['["ABN"]', /expected a JSON object/],
      ['{"ABN": 1}', /"ABN" is not a string/],
      ['{"ABN": " "}', /non-blank/],
    ];
    for (const [content, reason] of cases) {
      const file = join(dir, "bad.json");
      writeFileSync(file, content);
      assert.throws(
        () => loadReplacements(file),
        (err: Error) => err.message.includes(file) && reason.test(err.message),
      );
    }
    assert.throws(() => loadReplacements(join(dir, "missing.json")), /cannot read REPLACEMENTS_FILE/);
  });

  test("names with regex characters are matched literally", () => {
    const replace = createReplacer({ "A.B": "A.B (Bank)", "C+": "C+ Bank" });
    assert.equal(replace("a.b AxB c+ cc"), "A.B (Bank) AxB C+ Bank cc");
  });
});

describe("run as a program", () => {
  const serverFile = fileURLToPath(new URL("./server.ts", import.meta.url));

  function run(env: Record<string, string>): {
    child: ReturnType<typeof spawn>;
    ready: Promise<number>;
    exited: Promise<number | null>;
    output: () => string;
  } {
    const child = spawn(process.execPath, ["--import", "tsx", serverFile], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const ready = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not listening after 15 s: ${out}`)), 15_000);
      const check = (): void => {
        const m = /listening on :(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      child.stdout?.on("data", check);
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`exited early: ${out}`));
      });
    });
    return { child, ready, exited, output: () => out };
  }

  test("reads PORT and REPLACEMENTS_FILE, and finishes in-flight requests on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "replace-api-run-"));
    const file = join(dir, "replacements.json");
    writeFileSync(file, JSON.stringify({ ABN: "ABN Amro Bank N.V." }));
    const p = run({ PORT: "0", REPLACEMENTS_FILE: file });
    try {
      const port = await p.ready;
      const base = `http://127.0.0.1:${port}`;
      assert.equal(await replaceVia(base, "ABN and ING"), "ABN Amro Bank N.V. and ING");

      // A request whose body is still arriving when SIGTERM lands must complete.
      const pending = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = rawRequest(
          {
            host: "127.0.0.1",
            port,
            method: "POST",
            path: "/api/replace",
            headers: { "content-type": "application/json" },
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => {
              text += c;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.setTimeout(10_000, () => req.destroy(new Error("timed out")));
        req.on("error", reject);
        req.write('{"test": "AB');
        setTimeout(() => {
          p.child.kill("SIGTERM");
          setTimeout(() => req.end('N"}'), 300);
        }, 200);
      });
      const { status, body } = await pending;
      assert.equal(status, 200);
      assert.deepEqual(JSON.parse(body), { result: "ABN Amro Bank N.V." });
      assert.equal(await p.exited, 0);
      assert.match(p.output(), /SIGTERM received/);
      await assert.rejects(fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) }));
    } finally {
      p.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("refuses to start with an invalid REPLACEMENTS_FILE or PORT", async () => {
    const dir = mkdtempSync(join(tmpdir(), "replace-api-run-"));
    try {
      const file = join(dir, "bad.json");
      writeFileSync(file, "not json");
      const bad = run({ PORT: "0", REPLACEMENTS_FILE: file });
      bad.ready.catch(() => {});
      assert.equal(await bad.exited, 2);
      assert.match(bad.output(), /REPLACEMENTS_FILE .*bad\.json is not valid JSON/);

      const badPort = run({ PORT: "eighty" });
      badPort.ready.catch(() => {});
      assert.equal(await badPort.exited, 2);
      assert.match(badPort.output(), /PORT must be an integer/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
