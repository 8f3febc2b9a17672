/**
 * Before/after hooks: an argument array run without a shell (a shell only when the config says
 * `["sh", "-c", "…"]`), in the unit's working copy, with SLUICE_UNIT, SLUICE_ENV, SLUICE_STACK,
 * SLUICE_ACTION (and SLUICE_UNIT_PATH, SLUICE_WORK_DIR) in its environment. Bounded in time.
 */
import { spawn } from "node:child_process";
import { parseDuration, SluiceError } from "../core/index.js";
import type { StackAction, StackUnitSpec } from "./types.js";

export type Hook = NonNullable<NonNullable<StackUnitSpec["hooks"]>["before"]>[number];

const DEFAULT_ACTIONS: StackAction[] = ["plan", "apply", "destroy"];
const DEFAULT_TIMEOUT_MS = 10 * 60_000;

export function hooksFor(unit: StackUnitSpec, when: "before" | "after", action: StackAction): Hook[] {
  return (unit.hooks?.[when] ?? []).filter((h) => (h.actions ?? DEFAULT_ACTIONS).includes(action));
}

export interface HookContext {
  stack: string;
  unit: string;
  env: string;
  action: StackAction;
  unitPath: string;
  cwd: string;
  signal?: AbortSignal;
}

/** Runs one hook; throws a SluiceError (with the end of its output) when it fails. */
export function runHook(h: Hook, when: "before" | "after", c: HookContext): Promise<void> {
  const timeoutMs = h.timeout ? (parseDuration(h.timeout) ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
  const [cmd, ...args] = h.command;
  const label = `${when}-hook ${JSON.stringify(h.command.join(" ").slice(0, 80))}`;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd!, args, {
      cwd: c.cwd,
      env: {
        ...process.env,
        SLUICE_UNIT: c.unit,
        SLUICE_ENV: c.env,
        SLUICE_STACK: c.stack,
        SLUICE_ACTION: c.action,
        SLUICE_UNIT_PATH: c.unitPath,
        SLUICE_WORK_DIR: c.cwd,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const keep = (b: Buffer) => {
      out = (out + b.toString("utf8")).slice(-4000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    let why: string | undefined;
    const timer = setTimeout(() => {
      why = `timed out after ${Math.round(timeoutMs / 1000)}s`;
      child.kill("SIGKILL");
    }, timeoutMs);
    const onAbort = () => {
      why = "cancelled";
      child.kill("SIGKILL");
    };
    c.signal?.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      c.signal?.removeEventListener("abort", onAbort);
    };
    child.on("error", (e) => {
      done();
      reject(
        new SluiceError("ReconciliationFailed", `unit ${c.unit}: ${label} could not start: ${e.message}`),
      );
    });
    child.on("close", (code, sig) => {
      done();
      if (code === 0 && !why) return resolvePromise();
      const tail = out.trim().split("\n").slice(-3).join(" ").slice(-300);
      reject(
        new SluiceError(
          "ReconciliationFailed",
          `unit ${c.unit}: ${label} failed (${why ?? (sig ? `signal ${sig}` : `exit code ${code}`)})${tail ? `: ${tail}` : ""}`,
          { detail: { unit: c.unit, hook: when } },
        ),
      );
    });
  });
}
