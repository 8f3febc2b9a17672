/**
 * Running the real OpenTofu (or Terraform) binary: where it is, the environment it gets, and its
 * machine-readable (`-json`) output reduced to what Sluice needs (change summaries, diagnostics,
 * outputs). Output is read as a stream and bounded; the process is killed at its time limit.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, isAbsolute, join } from "node:path";
import { SluiceError } from "../core/index.js";
import type { ResolvedTofu, TofuOptions } from "./types.js";

const DEFAULT_TIMEOUT_MS = 30 * 60_000;

function cacheDir(env: NodeJS.ProcessEnv): string {
  return env.SLUICE_CACHE ?? join(homedir(), ".cache", "sluice");
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const d of (env.PATH ?? "").split(delimiter)) {
    if (d && executable(join(d, name))) return join(d, name);
  }
  return undefined;
}

/**
 * The binary: `opts.binary`, else $SLUICE_TOFU, else `${SLUICE_BIN:-~/.cache/sluice/bin}/tofu`
 * (scripts/peers/tofu.sh), else `tofu` then `terraform` on PATH. The CLI configuration:
 * `opts.cliConfigFile`, else $SLUICE_TOFU_RC, else $TF_CLI_CONFIG_FILE when that file exists, else
 * ~/.cache/sluice/tofu.rc (scripts/peers/tofu.sh's filesystem mirror) when it exists.
 */
export function resolveTofu(opts: TofuOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedTofu {
  const bin = env.SLUICE_BIN ?? join(cacheDir(env), "bin");
  const wanted = opts.binary ?? env.SLUICE_TOFU;
  let binary: string | undefined;
  if (wanted) {
    binary = isAbsolute(wanted) || wanted.includes("/") ? wanted : onPath(wanted, env);
    if (!binary || !executable(binary))
      throw new SluiceError("NotFound", `the OpenTofu binary ${wanted} was not found or is not executable`, {
        hint: "set SLUICE_TOFU (or --tofu) to the path of a tofu or terraform binary",
      });
  } else {
    const built = join(bin, "tofu");
    binary = executable(built) ? built : (onPath("tofu", env) ?? onPath("terraform", env));
    if (!binary)
      throw new SluiceError(
        "NotFound",
        `no OpenTofu binary: ${built} is missing and neither tofu nor terraform is on PATH`,
        {
          hint: "run scripts/peers/tofu.sh (builds OpenTofu into ~/.cache/sluice/bin), or set SLUICE_TOFU to your tofu or terraform binary",
        },
      );
  }
  let cliConfigFile = opts.cliConfigFile ?? env.SLUICE_TOFU_RC;
  if (!cliConfigFile) {
    const rc = join(cacheDir(env), "tofu.rc");
    if (env.TF_CLI_CONFIG_FILE && existsSync(env.TF_CLI_CONFIG_FILE)) cliConfigFile = env.TF_CLI_CONFIG_FILE;
    else if (existsSync(rc)) cliConfigFile = rc;
  }
  return {
    binary,
    ...(cliConfigFile ? { cliConfigFile } : {}),
    env: opts.env ?? {},
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  };
}

/** The parts of OpenTofu's `-json` UI stream Sluice reads. */
export interface TofuMessages {
  /** The last change_summary (apply/destroy print the plan's first, then their own). */
  summary?: { add: number; change: number; remove: number; operation: string };
  /** Error diagnostics: summary and detail. */
  errors: string[];
  /** `outputs` message values, when present (apply; sensitive ones carry no value). */
  outputs?: Record<string, { sensitive?: boolean; value?: unknown }>;
}

export interface TofuResult {
  code: number;
  /** The plain stdout (commands run without -json), bounded. */
  stdout: string;
  /** The end of stderr, bounded. */
  stderr: string;
  messages: TofuMessages;
  durationMs: number;
}

const MAX_TEXT = 1024 * 1024;

/** Runs `tofu args…` in `cwd`; never throws for a non-zero exit (the caller decides). */
export function runTofu(
  t: ResolvedTofu,
  args: string[],
  o: { cwd: string; env?: Record<string, string>; json?: boolean; signal?: AbortSignal },
): Promise<TofuResult> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TF_IN_AUTOMATION: "1",
    TF_INPUT: "0",
    CHECKPOINT_DISABLE: "1",
    ...t.env,
    ...o.env,
  };
  if (t.cliConfigFile) env.TF_CLI_CONFIG_FILE = t.cliConfigFile;
  else delete env.TF_CLI_CONFIG_FILE;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(t.binary, args, { cwd: o.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    const messages: TofuMessages = { errors: [] };
    let stdout = "";
    let stderr = "";
    let pending = "";
    const onLine = (line: string) => {
      if (!o.json) {
        if (stdout.length < MAX_TEXT) stdout += `${line}\n`;
        return;
      }
      if (!line.startsWith("{")) return;
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (m.type === "change_summary" && m.changes && typeof m.changes === "object") {
        const c = m.changes as Record<string, unknown>;
        messages.summary = {
          add: Number(c.add ?? 0),
          change: Number(c.change ?? 0),
          remove: Number(c.remove ?? 0),
          operation: String(c.operation ?? ""),
        };
      } else if (m.type === "diagnostic" && m["@level"] === "error") {
        const d = (m.diagnostic ?? {}) as { summary?: string; detail?: string; address?: string };
        const text = [d.address, d.summary, d.detail].filter((x) => x).join(": ");
        if (messages.errors.length < 20) messages.errors.push(text || String(m["@message"] ?? "error"));
      } else if (m.type === "outputs" && m.outputs && typeof m.outputs === "object") {
        messages.outputs = m.outputs as TofuMessages["outputs"];
      }
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      let i = pending.indexOf("\n");
      while (i >= 0) {
        onLine(pending.slice(0, i));
        pending = pending.slice(i + 1);
        i = pending.indexOf("\n");
      }
      if (pending.length > 64 * MAX_TEXT) pending = ""; // one absurd line: drop it
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      stderr += chunk;
      if (stderr.length > 2 * MAX_TEXT) stderr = stderr.slice(-MAX_TEXT);
    });
    let killedFor: string | undefined;
    const kill = (why: string) => {
      if (killedFor) return;
      killedFor = why;
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
    };
    const timer = setTimeout(() => kill(`timed out after ${Math.round(t.timeoutMs / 1000)}s`), t.timeoutMs);
    timer.unref();
    const onAbort = () => kill("cancelled");
    o.signal?.addEventListener("abort", onAbort, { once: true });
    child.on("error", (e) => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      reject(
        new SluiceError("NotFound", `could not run ${t.binary}: ${e.message}`, {
          hint: "run scripts/peers/tofu.sh, or set SLUICE_TOFU to a tofu or terraform binary",
        }),
      );
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      if (pending) onLine(pending);
      if (killedFor) messages.errors.unshift(`${args[0]} ${killedFor}`);
      resolvePromise({
        code: code ?? 1,
        stdout,
        stderr: stderr.slice(-MAX_TEXT),
        messages,
        durationMs: Date.now() - started,
      });
    });
  });
}

/** A short reason for a failed command: its error diagnostics, else the text from the first "Error:". */
export function failureText(r: TofuResult): string {
  if (r.messages.errors.length) return r.messages.errors.join("; ");
  const lines = `${r.stderr}\n${r.stdout}`
    .split("\n")
    .map((l) => l.replace(/^[│╷╵]\s?/, "").trim())
    .filter((l) => l && !/^─+$/.test(l));
  const first = lines.findIndex((l) => l.startsWith("Error:"));
  const picked = first >= 0 ? lines.slice(first, first + 6) : lines.slice(-6);
  return picked.join(" ").slice(0, 1000) || `exit code ${r.code}`;
}
