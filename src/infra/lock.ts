/**
 * One run per unit at a time, across processes: a lock file created exclusively (O_EXCL) holding
 * the owner's pid. A lock whose process is gone is taken over; a live one is waited for, bounded.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { SluiceError } from "../core/index.js";

export interface UnitLock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function holder(path: string): { pid: number; since: string } | undefined {
  try {
    const h = JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown; since?: unknown };
    return typeof h.pid === "number" ? { pid: h.pid, since: String(h.since ?? "") } : undefined;
  } catch {
    return undefined;
  }
}

export async function acquireLock(
  path: string,
  what: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<UnitLock> {
  const deadline = Date.now() + timeoutMs;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let firstMissing: number | undefined;
  for (;;) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, JSON.stringify({ pid: process.pid, since: new Date().toISOString() }));
      closeSync(fd);
      let held = true;
      return {
        release() {
          if (!held) return;
          held = false;
          if (holder(path)?.pid === process.pid) rmSync(path, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const h = holder(path);
    if (h && !alive(h.pid)) {
      rmSync(path, { force: true }); // its owner died
      continue;
    }
    if (!h) {
      // Being written right now, or garbage: give the writer a moment, then take it over.
      firstMissing ??= Date.now();
      if (Date.now() - firstMissing > 2_000) {
        rmSync(path, { force: true });
        continue;
      }
    }
    if (Date.now() >= deadline || signal?.aborted) {
      throw new SluiceError(
        "Locked",
        `${what} is locked by another run (pid ${h?.pid ?? "unknown"}${h?.since ? `, since ${h.since}` : ""})`,
        {
          detail: { lock: path },
          hint: `wait for it to finish; if no such process runs, remove ${path}`,
        },
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
