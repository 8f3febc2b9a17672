/**
 * One agent per state directory. The lock is a file `agent.lock` created with O_EXCL and holding
 * `{pid, host, startedAt}`. A holder that is alive on this host means "in use"; a holder that is
 * dead means the lock is stale and is taken over, which the caller reports as a warning. "Dead" also
 * covers a PID reused by another process (on Linux the lock records the boot id and the process's
 * start time in clock ticks, which do not depend on the wall clock) and our own PID left behind by
 * an earlier incarnation — the usual case in a restarted container where the agent is PID 1. A lock
 * from another host (or a recreated container with a new hostname) cannot be checked by PID: the
 * holder touches the file every 15 s, and a foreign lock untouched for 2 minutes is stale.
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  utimesSync,
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
  /** Linux: the holder's boot and process start time, so a reboot or a reused PID is recognised. */
  bootId?: string;
  startTicks?: number;
}

export interface HeldLock {
  path: string;
  info: LockInfo;
  /** Set when a stale lock was taken over. */
  warning?: string;
}

export const LOCK_FILE = "agent.lock";
/** How often a holder touches its lock, and after how long without that a lock from another host is stale. */
export const LOCK_REFRESH_MS = 15_000;
export const FOREIGN_LOCK_STALE_MS = 120_000;

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
  const boot = bootId();
  const ticks = processStartTicks(process.pid);
  if (boot !== undefined && ticks !== undefined) Object.assign(info, { bootId: boot, startTicks: ticks });
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

/**
 * Marks the lock as alive (its mtime), for openers on other hosts, which cannot check our PID.
 * Called every {@link LOCK_REFRESH_MS} by the open store.
 */
export function refreshLock(lock: HeldLock): void {
  if (!heldHere.has(lock.path)) return;
  const seen = readLock(lock.path);
  if (seen === "missing" || !isOurs(seen, lock)) return;
  try {
    const t = new Date();
    utimesSync(lock.path, t, t);
  } catch {
    // best effort: the next refresh tries again
  }
}

function isOurs(seen: SeenLock, lock: HeldLock): boolean {
  return seen.info?.pid === lock.info.pid && seen.info.startedAt === lock.info.startedAt;
}

/** Removes the lock file only if it is still ours. Idempotent. */
export function releaseLock(lock: HeldLock): void {
  if (!heldHere.delete(lock.path)) return;
  const seen = readLock(lock.path);
  if (seen === "missing" || !isOurs(seen, lock)) return;
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
      const info: LockInfo = { pid: v.pid, host: v.host, startedAt: v.startedAt };
      if (typeof v.bootId === "string" && typeof v.startTicks === "number") {
        Object.assign(info, { bootId: v.bootId, startTicks: v.startTicks });
      }
      return info;
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
  if (h.host !== hostname()) {
    // We cannot see its PID (another machine, or a container with its own hostname and PID space):
    // it is alive as long as it keeps touching the lock.
    const quietMs = Date.now() - seen.mtimeMs;
    if (quietMs > FOREIGN_LOCK_STALE_MS) {
      return {
        held: false,
        why: `sluice pid ${h.pid} on host ${h.host} (started at ${h.startedAt}) has not refreshed it for ${Math.round(quietMs / 1000)} s`,
      };
    }
    return { held: true, holder: h };
  }
  if (h.pid === process.pid) {
    return {
      held: false,
      why: `it names this process's pid ${h.pid} from an earlier run (started at ${h.startedAt})`,
    };
  }
  if (h.bootId !== undefined && h.bootId !== bootId()) {
    return {
      held: false,
      why: `sluice pid ${h.pid} (started at ${h.startedAt}) ran before this host rebooted`,
    };
  }
  if (!isAlive(h.pid))
    return { held: false, why: `sluice pid ${h.pid} (started at ${h.startedAt}) is no longer running` };
  // Same boot, live PID: it is the holder only if it is the same process (same start time). Compared
  // in clock ticks since boot, so a wall-clock step cannot make a live holder look stale.
  if (h.startTicks !== undefined) {
    const now = processStartTicks(h.pid);
    if (now !== undefined && now !== h.startTicks) {
      return {
        held: false,
        why: `pid ${h.pid} now belongs to another process (sluice pid ${h.pid} started at ${h.startedAt} is gone)`,
      };
    }
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

/** Linux: when a process started, in clock ticks since boot (a clock-independent identity); else undefined. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces and parentheses); starttime is field 22.
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    return Number.isSafeInteger(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/** Linux: changes on every boot. */
function bootId(): string | undefined {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || undefined;
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
    rmSync(aside, { force: true });
    return false;
  }
  rmSync(aside, { force: true });
  return true;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
