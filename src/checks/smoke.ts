/**
 * Smoke tests (the seed's test.sh as data): a `SmokeTest` names a Service and a list of checks —
 * a TCP port check, then HTTP requests whose status and body must match exactly. They run after a
 * unit is applied and healthy; the first failing check fails the run (SmokeTestFailed).
 */

import { connect } from "node:net";
import { isDeepStrictEqual } from "node:util";
import { parseDuration, type SmokeTestSpec } from "../config/index.js";
import { SluiceError } from "../core/index.js";

export interface CheckResult {
  name: string;
  ok: boolean;
  ms: number;
  /** What was seen, in a sentence (never a secret: checks talk to public endpoints). */
  detail: string;
}

export interface SmokeReport {
  ok: boolean;
  results: CheckResult[];
}

export interface Address {
  host: string;
  port: number;
}

/** Runs every check in order against `addr`; `onResult` is told as each finishes (for progress). */
export async function runSmokeTest(
  spec: SmokeTestSpec,
  addr: Address,
  onResult?: (r: CheckResult) => void,
): Promise<SmokeReport> {
  const timeoutMs = spec.timeout ? (parseDuration(spec.timeout) ?? 5000) : 5000;
  const results: CheckResult[] = [];
  for (const check of spec.checks) {
    const t0 = Date.now();
    let r: CheckResult;
    try {
      const detail = check.tcp
        ? await tcpCheck(addr, timeoutMs)
        : await httpCheck(addr, check.http!, timeoutMs);
      r = { name: check.name, ok: true, ms: Date.now() - t0, detail };
    } catch (e) {
      r = {
        name: check.name,
        ok: false,
        ms: Date.now() - t0,
        detail: e instanceof Error ? e.message : String(e),
      };
    }
    results.push(r);
    onResult?.(r);
    if (!r.ok) break;
  }
  return { ok: results.every((r) => r.ok) && results.length === spec.checks.length, results };
}

/** Throws SmokeTestFailed describing the first failure. */
export function assertPassed(name: string, report: SmokeReport): void {
  const bad = report.results.find((r) => !r.ok);
  if (bad)
    throw new SluiceError("SmokeTestFailed", `smoke test ${name}: check "${bad.name}" failed: ${bad.detail}`);
}

function tcpCheck(addr: Address, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: addr.host, port: addr.port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${addr.host}:${addr.port} did not accept a connection within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.end();
      resolve(`connection successful ${addr.host}:${addr.port}`);
    });
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${addr.host}:${addr.port}: ${e.message}`));
    });
  });
}

type HttpCheck = NonNullable<SmokeTestSpec["checks"][number]["http"]>;

async function httpCheck(addr: Address, c: HttpCheck, timeoutMs: number): Promise<string> {
  const url = `http://${addr.host}:${addr.port}${c.path}`;
  const res = await fetch(url, {
    method: c.method ?? "GET",
    headers: c.headers ?? {},
    ...(c.body !== undefined ? { body: c.body } : {}),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  const e = c.expect;
  if (e.status !== undefined && res.status !== e.status) {
    throw new Error(
      `${c.method ?? "GET"} ${c.path}: status ${res.status}, expected ${e.status}; body: ${clip(text)}`,
    );
  }
  if (e.body !== undefined && text !== e.body)
    throw new Error(`${c.path}: body ${clip(text)}, expected ${clip(e.body)}`);
  if (e.contains !== undefined && !text.includes(e.contains))
    throw new Error(`${c.path}: body ${clip(text)} does not contain ${clip(e.contains)}`);
  if (e.json !== undefined) {
    let got: unknown;
    try {
      got = JSON.parse(text);
    } catch {
      throw new Error(`${c.path}: body is not JSON: ${clip(text)}`);
    }
    if (!isDeepStrictEqual(got, e.json))
      throw new Error(
        `${c.path}: got ${clip(JSON.stringify(got))}, expected ${clip(JSON.stringify(e.json))}`,
      );
  }
  return `${res.status} ${clip(text, 300)}`;
}

function clip(s: string, n = 200): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}
