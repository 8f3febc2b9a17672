/**
 * One agent per state directory. The lock is a file `agent.lock` created with O_EXCL and holding
 * `{pid, host, startedAt}`. A holder that is alive on this host means "in use"; a holder that is
 * dead (or a PID since reused by a process younger than the lock, or our own PID left behind by a
 * previous incarnation — the usual case in a restarted container where the agent is PID 1) means
 * the lock is stale and is taken over, which the caller reports as a warning. A lock from another
 * host cannot be checked and is treated as held.
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { SluiceError } from "../core/index.js";

export class StoreLockedError extends SluiceError {
  constructor(message: string, opts: { detail?: Record<string, unknown>; hint?: string } = {}) {
    super("Locked", message, opts);
    this.name = "StoreLockedError";
  }
}

export interface LockInfo {
  pid: number;
  host: string;
  startedAt: string;
}

export interface HeldLock {
  path: string;
  info: LockInfo;
  /** Set when a stale lock was taken over. */
  warning?: string;
}

export const LOCK_FILE = "agent.lock";

/** Locks held by this process, so a second open in the same process is refused, not "stale". */
const heldHere = new Set<string>();

export function acquireLock(dir: string): HeldLock {
  const path = join(resolve(dir), LOCK_FILE);
  if (heldHere.has(path)) {
    throw new StoreLockedError(
      `state directory ${dir} is in use by this sluice process (pid ${process.pid}); it is already open`,
      { detail: { dir, pid: process.pid }, hint: "close the other store first, or use another --state-dir" },
    );
  }
  const info: LockInfo = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  const body = `${JSON.stringify(info)}\n`;
  let warning: string | undefined;
  // Bounded: each round either creates the file, throws, or removes one stale lock.
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryCreate(path, body)) {
      heldHere.add(path);
      return warning === undefined ? { path, info } : { path, info, warning };
    }
    const seen = readLock(path);
    if (seen === "missing") continue; // released between our create and our read
    const verdict = judge(seen);
    if (verdict.held) {
      const h = verdict.holder;
      throw new StoreLockedError(
        `state directory ${dir} is in use by sluice pid ${h.pid}${h.host === info.host ? "" : ` on host ${h.host}`} started at ${h.startedAt}; stop it or use another --state-dir`,
        {
          detail: { dir, pid: h.pid, host: h.host, startedAt: h.startedAt },
          hint: `stop that process, or if it is gone and the directory is shared between hosts, remove ${path}`,
        },
      );
    }
    if (takeOver(path, seen.raw))
      warning = `took over a stale lock on state directory ${dir}: ${verdict.why}`;
  }
  throw new StoreLockedError(`could not take the lock on state directory ${dir}: it kept changing under us`, {
    detail: { dir },
    hint: "another sluice is starting on the same directory; start only one",
  });
}

/** Removes the lock file only if it is still ours. Idempotent. */
export function releaseLock(lock: HeldLock): void {
  if (!heldHere.delete(lock.path)) return;
  const seen = readLock(lock.path);
  if (seen === "missing" || seen.info?.pid !== lock.info.pid || seen.info.startedAt !== lock.info.startedAt)
    return;
  try {
    unlinkSync(lock.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function tryCreate(path: string, body: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new SluiceError("Internal", `cannot create the lock file ${path}: ${(e as Error).message}`, {
      cause: e,
      hint: "check that the state directory is writable",
    });
  }
  try {
    writeSync(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}

interface SeenLock {
  raw: string;
  info: LockInfo | undefined;
  mtimeMs: number;
}

function readLock(path: string): SeenLock | "missing" {
  // A lock file is written right after it is created; give a concurrent creator a moment to finish.
  const deadline = Date.now() + 1000;
  for (;;) {
    let raw: string;
    let mtimeMs: number;
    try {
      raw = readFileSync(path, "utf8");
      mtimeMs = statSync(path).mtimeMs;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return "missing";
      throw e;
    }
    const info = parseLock(raw);
    if (info || Date.now() > deadline) return { raw, info, mtimeMs };
    sleepSync(50);
  }
}

function parseLock(raw: string): LockInfo | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockInfo>;
    if (
      typeof v.pid === "number" &&
      Number.isInteger(v.pid) &&
      v.pid > 0 &&
      typeof v.host === "string" &&
      typeof v.startedAt === "string"
    ) {
      return { pid: v.pid, host: v.host, startedAt: v.startedAt };
    }
  } catch {
    // unreadable → undefined
  }
  return undefined;
}

type Verdict = { held: true; holder: LockInfo } | { held: false; why: string };

function judge(seen: SeenLock): Verdict {
  const h = seen.info;
  if (!h) return { held: false, why: "the lock file was empty or unreadable" };
  if (h.host !== hostname()) return { held: true, holder: h };
  if (h.pid === process.pid) {
    return {
      held: false,
      why: `it names this process's pid ${h.pid} from an earlier run (started at ${h.startedAt})`,
    };
  }
  if (!isAlive(h.pid))
    return { held: false, why: `sluice pid ${h.pid} (started at ${h.startedAt}) is no longer running` };
  const lockedAt = Date.parse(h.startedAt);
  const procStart = processStartMs(h.pid);
  // The process was started after the lock was written: the PID was reused, the holder is gone.
  if (procStart !== undefined && Number.isFinite(lockedAt) && procStart > lockedAt + 2000) {
    return {
      held: false,
      why: `pid ${h.pid} now belongs to a process started after the lock (${h.startedAt})`,
    };
  }
  return { held: true, holder: h };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else — alive.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Linux only: when a process started (ms since epoch), from /proc; undefined when unknown. */
function processStartMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces and parentheses).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const startTicks = Number(fields[19]); // field 22 overall: starttime, in clock ticks since boot
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(btime)) return undefined;
    return (btime + startTicks / 100) * 1000; // USER_HZ is 100 on every Linux ABI Node supports
  } catch {
    return undefined;
  }
}

/**
 * Moves a stale lock aside and checks that what we moved is what we judged: if another opener
 * replaced it meanwhile, its fresh lock is put back (link fails if someone else already has it).
 */
function takeOver(path: string, judgedRaw: string): boolean {
  const aside = `${path}.stale-${process.pid}-${Date.now()}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
  let moved = "";
  try {
    moved = readFileSync(aside, "utf8");
  } catch {
    // vanished: treat as different
  }
  if (moved !== judgedRaw) {
    try {
      linkSync(aside, path); // unlike rename, never replaces a lock created in the meantime
    } catch {
      // someone holds it now; the next round will see them
    }
    unlinkSync(aside);
    return false;
  }
  unlinkSync(aside);
  return true;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
