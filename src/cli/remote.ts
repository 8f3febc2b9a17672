/**
 * The commands that talk to a running agent over its HTTP API, shaped like Flux's:
 * `sluice get envs|units|sources|runs`, `sluice reconcile|suspend|resume UNIT`, `sluice events`.
 *
 * Where: `--url`, else `SLUICE_URL`, else http://127.0.0.1:7070. Who: `--token`, else
 * `SLUICE_TOKEN`, else the file named by `--token-file`/`SLUICE_TOKEN_FILE`, else — only for an
 * agent on this machine (a loopback URL) — the operator token `sluice serve` wrote into
 * `$SLUICE_STATE_DIR/operator-token` (default `.sluice/state`). A token is never printed.
 *
 * Tables for people (aligned columns, ages like `5m`, control characters removed from anything
 * the server sends so a hostile message cannot drive the terminal), `-o json` for scripts. Every
 * failure prints `error: …` (and a `hint: …`) on stderr and sets the exit code to 2.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Command, Option } from "commander";
import { errorMessage, isSluiceError, SluiceError } from "../core/index.js";
import type { CheckRecord, ImageStatus } from "../reconcile/index.js";
import type {
  ApiErrorBody,
  EnvironmentsAnswer,
  EventsAnswer,
  ReconcileAnswer,
  RunsAnswer,
  SourcesAnswer,
  SuspendAnswer,
  UnitsAnswer,
} from "../server/index.js";
import type { EventRecord } from "../store/index.js";
import type { Orphan } from "../targets/index.js";

export const DEFAULT_API_URL = "http://127.0.0.1:7070";
const EXIT_ERROR = 2;
/** Most API calls answer at once; a reconcile with `--with-source` waits for a Git listing. */
const REQUEST_TIMEOUT_MS = 60_000;

/** Where output goes and what ends `--watch`; tests pass their own, the CLI uses the process's. */
export interface RemoteIO {
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Ends `events --watch` (default: Ctrl-C). */
  signal?: AbortSignal;
}

interface ConnFlags {
  url?: string;
  token?: string;
  tokenFile?: string;
}
type Output = "table" | "json";

// --- the client ---------------------------------------------------------------------------------

class ApiClient {
  constructor(
    readonly url: string,
    private readonly token: string | undefined,
  ) {}

  get<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
    return this.request<T>("GET", path, query);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", path, {}, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>("DELETE", path, {});
  }

  /** Opens the event stream; resolves with the response once its headers arrived. */
  async stream(signal: AbortSignal): Promise<Response> {
    const res = await this.fetch("/api/v1/stream", { method: "GET", signal });
    if (!res.ok) throw await this.failure(res);
    return res;
  }

  private async request<T>(
    method: string,
    path: string,
    query: Record<string, string | number | undefined>,
    body?: unknown,
  ): Promise<T> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") qs.set(k, String(v));
    const full = qs.size ? `${path}?${qs}` : path;
    const init: RequestInit = { method, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    const res = await this.fetch(full, init);
    if (!res.ok) throw await this.failure(res);
    try {
      return (await res.json()) as T;
    } catch {
      throw new SluiceError("Internal", `the server at ${this.url} did not answer ${path} with JSON`, {
        hint: "is SLUICE_URL the address of `sluice serve`?",
      });
    }
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("Accept", path.endsWith("/stream") ? "text/event-stream" : "application/json");
    if (this.token) headers.set("Authorization", `Bearer ${this.token}`);
    try {
      return await fetch(`${this.url}${path}`, { ...init, headers, redirect: "error" });
    } catch (e) {
      if ((e as Error).name === "AbortError" && init.signal?.aborted && !isTimeout(init.signal)) throw e;
      const cause = (e as { cause?: unknown }).cause;
      const why = isTimeout(init.signal)
        ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
        : cause
          ? errorMessage(cause)
          : errorMessage(e);
      throw new SluiceError(
        "TargetUnavailable",
        `cannot reach the Sluice API at ${this.url}: ${why}; is \`sluice serve\` running?`,
        { hint: "start it with `sluice serve --config PATH`, or set SLUICE_URL (or --url) to its address" },
      );
    }
  }

  private async failure(res: Response): Promise<SluiceError> {
    let message = `${res.status} ${res.statusText}`;
    let code = "";
    try {
      const body = (await res.json()) as Partial<ApiErrorBody>;
      if (body.error?.message) message = clean(body.error.message);
      code = body.error?.code ?? "";
    } catch {
      // not one of our error bodies
    }
    if (res.status === 401)
      return new SluiceError(
        "Unauthorized",
        `the Sluice API at ${this.url} refused the request: ${message}`,
        {
          hint: this.token
            ? "the token is not valid (revoked, or for another agent); set SLUICE_TOKEN or --token"
            : "set SLUICE_TOKEN (or --token / --token-file) to an API token",
        },
      );
    if (res.status === 403)
      return new SluiceError("Forbidden", message, { hint: "this action needs an operator token" });
    if (res.status === 404) return new SluiceError("NotFound", message);
    if (res.status === 409) return new SluiceError("Conflict", message);
    if (res.status === 400) return new SluiceError("ConfigInvalid", message);
    return new SluiceError(
      "Internal",
      `the Sluice API answered ${res.status}${code ? ` (${code})` : ""}: ${message}`,
    );
  }
}

function isTimeout(signal: AbortSignal | null | undefined): boolean {
  return !!signal?.aborted && (signal.reason as Error | undefined)?.name === "TimeoutError";
}

function isLoopback(url: URL): boolean {
  return ["127.0.0.1", "localhost", "[::1]", "::1"].includes(url.hostname) || url.hostname.startsWith("127.");
}

function client(flags: ConnFlags, env: NodeJS.ProcessEnv): ApiClient {
  const raw = flags.url ?? env.SLUICE_URL ?? DEFAULT_API_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SluiceError("ConfigInvalid", `API URL ${JSON.stringify(raw)} is not a URL`, {
      hint: "e.g. SLUICE_URL=http://127.0.0.1:7070",
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new SluiceError("ConfigInvalid", `API URL ${raw}: expected http:// or https://`);
  if (url.username || url.password)
    throw new SluiceError("ConfigInvalid", "the API URL must not contain credentials; use SLUICE_TOKEN");
  const base = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  let token = flags.token ?? env.SLUICE_TOKEN;
  const tokenFile = flags.tokenFile ?? env.SLUICE_TOKEN_FILE;
  if (!token && tokenFile) {
    try {
      token = readFileSync(tokenFile, "utf8").trim();
    } catch (e) {
      throw new SluiceError("ConfigInvalid", `cannot read the token file ${tokenFile}: ${errorMessage(e)}`);
    }
  }
  if (!token && isLoopback(url)) {
    // `sluice serve` on this machine writes its operator token here (mode 0600).
    const f = join(resolve(env.SLUICE_STATE_DIR ?? ".sluice/state"), "operator-token");
    if (existsSync(f)) {
      try {
        token = readFileSync(f, "utf8").trim();
      } catch {
        // unreadable: go without, and let the server say 401
      }
    }
  }
  return new ApiClient(base, token || undefined);
}

// --- formatting ---------------------------------------------------------------------------------

/** Anything from the server, made safe and one-line for a terminal. */
function clean(s: unknown): string {
  return String(s ?? "")
    .replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ")
    .trim();
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Aligned columns, three spaces apart, the last one not padded (like kubectl and flux). */
export function formatTable(header: string[], rows: string[][]): string {
  const cells = [header, ...rows.map((r) => r.map(clean))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => [...(r[i] ?? "")].length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + " ".repeat(widths[i]! - [...c].length)))
        .join("   ")
        .trimEnd(),
    )
    .join("\n")
    .concat("\n");
}

/** `42s`, `5m`, `3h`, `2d` since an ISO time (kubectl's AGE); `-` when unknown. */
export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "-";
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** `in 3h`, `5m ago` until an ISO time; `-` when none. */
export function until(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "-";
  return t >= now ? `in ${age(new Date(now).toISOString(), t)}` : `${age(iso, now)} ago`;
}

/** Hours an environment has been up over all its lives, e.g. `12.5h`. */
function uptime(e: { uptimeSeconds?: number; activeSince?: string | null }, now = Date.now()): string {
  const live = e.activeSince ? Math.max(0, now - Date.parse(e.activeSince)) / 1000 : 0;
  const h = ((e.uptimeSeconds ?? 0) + live) / 3600;
  return `${h < 10 ? h.toFixed(1) : Math.round(h)}h`;
}

/** `main@sha1:0123456789ab` — the branch and the first 12 hex digits of the commit. */
function shortRevision(rev: string | null | undefined): string {
  if (!rev) return "-";
  return rev.replace(/(sha1:|sha256:)([0-9a-f]{12})[0-9a-f]+/, "$1$2");
}

function duration(start: string, end: string | null): string {
  if (!end) return "-";
  const ms = Date.parse(end) - Date.parse(start);
  if (!Number.isFinite(ms) || ms < 0) return "-";
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

// --- commands -----------------------------------------------------------------------------------

function connOptions(cmd: Command): Command {
  return cmd
    .option("--url <url>", `API address (default: SLUICE_URL or ${DEFAULT_API_URL})`)
    .option("--token <token>", "API token (default: SLUICE_TOKEN)")
    .option("--token-file <file>", "read the API token from a file (default: SLUICE_TOKEN_FILE)");
}

function outputOption(cmd: Command): Command {
  return cmd.addOption(
    new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"),
  );
}

function positive(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > 10_000)
      throw new SluiceError("ConfigInvalid", `${flag} ${v}: expected a whole number from 1 to 10000`);
    return n;
  };
}

/**
 * Adds `get`, `reconcile`, `suspend`, `resume` and `events` to the `sluice` program.
 * @example registerRemoteCommands(buildProgram())
 */
export function registerRemoteCommands(program: Command, io: RemoteIO = {}): void {
  const out = io.stdout ?? ((s: string) => void process.stdout.write(s));
  const err = io.stderr ?? ((s: string) => void process.stderr.write(s));
  const env = io.env ?? process.env;

  /** Runs an action; a failure is printed and becomes exit code 2 (nothing on stdout). */
  const run =
    <A extends unknown[]>(fn: (...args: A) => Promise<void>) =>
    async (...args: A): Promise<void> => {
      try {
        await fn(...args);
      } catch (e) {
        if (isSluiceError(e)) {
          err(`error: ${e.message}\n`);
          if (e.hint) err(`hint: ${e.hint}\n`);
        } else {
          err(`error: ${errorMessage(e)}\n`);
        }
        process.exitCode = EXIT_ERROR;
      }
    };

  const empty = (what: string, o: Output): boolean => {
    if (o === "json") return false;
    err(`no ${what} found\n`);
    return true;
  };

  // sluice get …
  const get = program.command("get").description("show what the agent knows (like `flux get`)");

  const envs = get.command("envs").aliases(["environments", "env"]).description("list environments");
  connOptions(outputOption(envs)).action(
    run(async (f: ConnFlags & { output: Output }) => {
      const { environments } = await client(f, env).get<EnvironmentsAnswer>("/api/v1/environments");
      if (f.output === "json") return out(json(environments));
      if (!environments.length && empty("environments", f.output)) return;
      out(
        formatTable(
          ["NAME", "BRANCH", "TARGET", "STATE", "REVISION", "PROTECTED", "AGE", "EXPIRES"],
          environments.map((e) => [
            e.name,
            e.branch ?? "-",
            e.target,
            e.state,
            shortRevision(e.revision),
            e.protected ? "yes" : "no",
            age(e.createdAt),
            e.expiresAt ?? "-",
          ]),
        ),
      );
    }),
  );

  connOptions(
    outputOption(
      get
        .command("images")
        .aliases(["image"])
        .description(
          "image repositories, policies with their latest image, automations (like `flux get image all`)",
        ),
    ),
  ).action(
    run(async (f: ConnFlags & { output: Output }) => {
      const st = await client(f, env).get<ImageStatus>("/api/v1/images");
      if (f.output === "json") return out(json(st));
      const ok = (b: boolean) => (b ? "True" : "False");
      out(
        formatTable(
          ["IMAGEREPOSITORY", "READY", "TAGS", "LAST SCAN", "MESSAGE"],
          st.repositories.map((r) => [r.name, ok(r.ok), String(r.count), age(r.scannedAt), r.message]),
        ),
      );
      out("\n");
      out(
        formatTable(
          ["IMAGEPOLICY", "READY", "LATEST IMAGE", "MESSAGE"],
          st.policies.map((p) => [p.name, ok(p.ok), p.latestImage ?? "-", p.message]),
        ),
      );
      out("\n");
      out(
        formatTable(
          ["IMAGEUPDATEAUTOMATION", "READY", "LAST RUN", "LAST COMMIT", "MESSAGE"],
          st.automations.map((a) => [
            a.name,
            ok(a.ok),
            age(a.lastRunAt),
            a.lastCommit?.slice(0, 10) ?? "-",
            a.message,
          ]),
        ),
      );
    }),
  );

  connOptions(
    outputOption(
      get
        .command("checks")
        .aliases(["check", "smoketests"])
        .description("the last smoke-test results of each unit, check by check")
        .option("--env <env>", "only this environment"),
    ),
  ).action(
    run(async (f: ConnFlags & { output: Output; env?: string }) => {
      const { checks } = await client(f, env).get<{ checks: CheckRecord[] }>("/api/v1/checks", {
        env: f.env,
      });
      if (f.output === "json") return out(json(checks));
      if (!checks.length && empty("smoke-test results", f.output)) return;
      out(
        formatTable(
          ["ENVIRONMENT", "UNIT", "SMOKETEST", "CHECK", "RESULT", "TIME", "DETAIL"],
          checks.flatMap((c) =>
            c.results.map((r) => [
              c.env,
              c.unit,
              c.smokeTest,
              r.name,
              r.ok ? "passed" : "FAILED",
              `${r.ms} ms`,
              truncate(clean(r.detail), 100),
            ]),
          ),
        ),
      );
    }),
  );

  const units = get
    .command("units")
    .aliases(["unit", "kustomizations", "ks"])
    .description("list units (Kustomizations per environment) with their status")
    .option("--env <env>", "only this environment");
  connOptions(outputOption(units)).action(
    run(async (f: ConnFlags & { output: Output; env?: string }) => {
      const { units } = await client(f, env).get<UnitsAnswer>("/api/v1/units", { env: f.env });
      if (f.output === "json") return out(json(units));
      if (!units.length && empty("units", f.output)) return;
      out(
        formatTable(
          ["ENV", "UNIT", "READY", "SUSPENDED", "REASON", "REVISION", "AGE", "MESSAGE"],
          units.map((u) => [
            u.env,
            u.unit,
            u.ready,
            u.suspended ? "True" : "False",
            u.reason,
            shortRevision(u.lastAppliedRevision ?? u.revision),
            age(u.updatedAt),
            truncate(clean(u.message), 120),
          ]),
        ),
      );
    }),
  );

  const sources = get
    .command("sources")
    .aliases(["source", "git"])
    .description("list Git sources and their branches");
  connOptions(outputOption(sources)).action(
    run(async (f: ConnFlags & { output: Output }) => {
      const { sources } = await client(f, env).get<SourcesAnswer>("/api/v1/sources");
      if (f.output === "json") return out(json(sources));
      if (!sources.length && empty("sources", f.output)) return;
      out(
        formatTable(
          ["NAME", "URL", "READY", "BRANCHES", "LAST FETCH", "MESSAGE"],
          sources.map((s) => [
            s.name,
            s.url,
            s.ok ? "True" : "False",
            String(Object.keys(s.branches).length),
            age(s.lastFetchAt),
            truncate(clean(s.message), 120),
          ]),
        ),
      );
    }),
  );

  const runs = get
    .command("runs")
    .alias("run")
    .description("list reconcile runs, newest first")
    .option("--env <env>", "only this environment")
    .option("--unit <unit>", "only this unit")
    .option("--limit <n>", "at most this many (default 50)", positive("--limit"));
  connOptions(outputOption(runs)).action(
    run(async (f: ConnFlags & { output: Output; env?: string; unit?: string; limit?: number }) => {
      const { runs } = await client(f, env).get<RunsAnswer>("/api/v1/runs", {
        env: f.env,
        unit: f.unit,
        limit: f.limit,
      });
      if (f.output === "json") return out(json(runs));
      if (!runs.length && empty("runs", f.output)) return;
      out(
        formatTable(
          ["ID", "ENV", "UNIT", "RESULT", "TRIGGER", "REVISION", "STARTED", "DURATION", "CHANGES", "MESSAGE"],
          runs.map((r) => [
            String(r.id),
            r.env,
            r.unit,
            r.result,
            r.trigger,
            shortRevision(r.revision),
            age(r.startedAt),
            duration(r.startedAt, r.endedAt),
            Object.entries(r.summary)
              .map(([k, n]) => `${n} ${k}`)
              .join(", ") || "-",
            truncate(clean([r.reason, r.message].filter(Boolean).join(": ")), 120),
          ]),
        ),
      );
    }),
  );

  // sluice reconcile|suspend|resume UNIT
  /** `--env`, or the one environment that has the unit. */
  const resolveEnv = async (c: ApiClient, unit: string, given?: string): Promise<string> => {
    if (given) return given;
    const { units } = await c.get<UnitsAnswer>("/api/v1/units");
    const envs = [...new Set(units.filter((u) => u.unit === unit).map((u) => u.env))];
    if (envs.length === 1) return envs[0]!;
    if (envs.length === 0)
      throw new SluiceError("NotFound", `no environment has a unit named ${unit}`, {
        hint: "`sluice get units` lists them",
      });
    throw new SluiceError("ConfigInvalid", `unit ${unit} exists in ${envs.length} environments; choose one`, {
      hint: `--env ${envs.slice(0, 5).join(" | --env ")}`,
    });
  };
  const unitPath = (e: string, u: string, action: string) =>
    `/api/v1/environments/${encodeURIComponent(e)}/units/${encodeURIComponent(u)}/${action}`;

  connOptions(
    program
      .command("reconcile")
      .description("reconcile a unit now (like `flux reconcile kustomization`)")
      .argument("<unit>", "unit (Kustomization) name")
      .option("--env <env>", "its environment (may be left out when only one has the unit)")
      .option("--with-source", "list the Git source first, so a push not yet seen is picked up"),
  ).action(
    run(async (unit: string, f: ConnFlags & { env?: string; withSource?: boolean }) => {
      const c = client(f, env);
      const e = await resolveEnv(c, unit, f.env);
      const a = await c.post<ReconcileAnswer>(unitPath(e, unit, "reconcile"), { withSource: !!f.withSource });
      out(
        `► reconcile of unit ${clean(a.queued.unit)} in environment ${clean(a.queued.env)} queued${a.queued.withSource ? " (source refreshed)" : ""}\n`,
      );
    }),
  );

  for (const [name, suspend] of [
    ["suspend", true],
    ["resume", false],
  ] as const) {
    connOptions(
      program
        .command(name)
        .description(suspend ? "stop reconciling a unit until resumed" : "reconcile a suspended unit again")
        .argument("<unit>", "unit (Kustomization) name")
        .option("--env <env>", "its environment (may be left out when only one has the unit)"),
    ).action(
      run(async (unit: string, f: ConnFlags & { env?: string }) => {
        const c = client(f, env);
        const e = await resolveEnv(c, unit, f.env);
        const a = await c.post<SuspendAnswer>(unitPath(e, unit, name));
        out(
          `► unit ${clean(a.unit)} in environment ${clean(a.env)} ${a.suspended ? "suspended" : "resumed"}\n`,
        );
      }),
    );
  }

  // sluice promote / rollback / rollout / build
  connOptions(
    program
      .command("promote")
      .description(
        "move what runs in one environment to the next, the GitOps way (fast-forward or merge of its branch)",
      )
      .argument("<from>", "environment to promote from")
      .argument("<to>", "environment to promote into")
      .option("--reason <text>", "why (recorded with the event and in the commit)"),
  ).action(
    run(async (from: string, to: string, f: ConnFlags & { reason?: string }) => {
      const a = await client(f, env).post<{ promoted: { mode: string; commit: string; url?: string } }>(
        `/api/v1/environments/${encodeURIComponent(from)}/promote`,
        { to, ...(f.reason ? { reason: f.reason } : {}) },
      );
      out(
        `► ${clean(from)} promoted to ${clean(to)}: ${clean(a.promoted.mode)} to ${clean(a.promoted.commit.slice(0, 10))}${a.promoted.url ? ` (${clean(a.promoted.url)})` : ""}\n`,
      );
    }),
  );
  connOptions(
    program
      .command("rollback")
      .description(
        "return an environment to its previous version (instant with a standby slot, else a git revert)",
      )
      .argument("<env>")
      .option("--reason <text>", "why (recorded with the event and in the commit)"),
  ).action(
    run(async (e: string, f: ConnFlags & { reason?: string }) => {
      const a = await client(f, env).post<{ rolledBack: { mode: string; detail: string } }>(
        `/api/v1/environments/${encodeURIComponent(e)}/rollback`,
        f.reason ? { reason: f.reason } : {},
      );
      out(`► ${clean(e)} rolled back (${clean(a.rolledBack.mode)}): ${clean(a.rolledBack.detail)}\n`);
    }),
  );
  const rollout = program.command("rollout").description("act on a unit's Rollout (blue/green, canary, A/B)");
  for (const command of ["promote", "abort", "resume"] as const) {
    connOptions(
      rollout
        .command(command)
        .description(
          command === "promote"
            ? "skip the remaining steps: the new version takes all traffic"
            : command === "abort"
              ? "stop the new version: all traffic back to the stable one"
              : "end the current pause of a canary",
        )
        .argument("<unit>")
        .option("--env <env>", "its environment (may be left out when only one has the unit)"),
    ).action(
      run(async (unit: string, f: ConnFlags & { env?: string }) => {
        const c = client(f, env);
        const e = await resolveEnv(c, unit, f.env);
        const a = await c.post<{ rollouts: { name: string; phase: string; message: string }[] }>(
          `/api/v1/environments/${encodeURIComponent(e)}/units/${encodeURIComponent(unit)}/rollout/${command}`,
        );
        for (const r of a.rollouts)
          out(`► Rollout ${clean(r.name)}: ${clean(r.phase)} — ${clean(r.message)}\n`);
      }),
    );
  }
  connOptions(
    program
      .command("build")
      .description("build and push a Build's image now, at a branch or tag (the agent runs it)")
      .argument("<name>", "Build name")
      .option("--ref <ref>", "branch, or tags/<tag> (default main)", "main"),
  ).action(
    run(async (name: string, f: ConnFlags & { ref: string }) => {
      const ref = f.ref.startsWith("tags/")
        ? { tag: f.ref.slice(5) }
        : { branch: f.ref.replace(/^heads\//, "") };
      out(`► building ${clean(name)} at ${clean(f.ref)}\n`);
      const c = client(f, env);
      // The log streams over the event stream while the build runs; the answer ends it.
      const ac = new AbortController();
      let streamed = false;
      // Connected before the build starts, so no line is missed.
      const opened = await c.stream(ac.signal).catch(() => undefined);
      const follow = Promise.resolve(opened)
        .then(async (res) => {
          if (!res) return;
          const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            buf += value;
            for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
              const frame = buf.slice(0, i);
              buf = buf.slice(i + 2);
              if (!frame.startsWith("event: build\n")) continue;
              const ev = JSON.parse(frame.slice(frame.indexOf("data: ") + 6)) as {
                build: string;
                log?: string;
              };
              if (!ev.log || (ev.build !== name && !ev.build.endsWith(`/${name}`))) continue;
              streamed = true;
              for (const line of ev.log.split(/\r?\n/)) if (line.trim()) out(`  ${clean(line)}\n`);
            }
          }
        })
        .catch(() => {});
      const a = await c
        .post<{
          build: { result: string; images: string[]; lastLines: string[]; commit: string };
        }>(`/api/v1/builds/${encodeURIComponent(name)}`, ref)
        .finally(() => ac.abort());
      await follow;
      if (!streamed) for (const l of a.build.lastLines) out(`  ${clean(l)}\n`);
      if (a.build.result !== "succeeded") throw new SluiceError("BuildFailed", `build of ${name} failed`);
      out(`✔ ${a.build.images.map(clean).join(", ")}\n`);
    }),
  );

  // sluice env …
  const envCmd = program
    .command("env")
    .description("preview environments: list, create from a branch, destroy, extend, sweep orphans");
  connOptions(outputOption(envCmd.command("ls").alias("list").description("list environments"))).action(
    run(async (f: ConnFlags & { output: Output }) => {
      const { environments } = await client(f, env).get<EnvironmentsAnswer>("/api/v1/environments");
      const shown = environments.filter((e) => e.state !== "destroyed");
      if (f.output === "json") return out(json(shown));
      if (!shown.length && empty("environments", f.output)) return;
      out(
        formatTable(
          ["NAME", "BRANCH", "AGE", "EXPIRES", "STATUS", "UPTIME", "URL"],
          shown.map((e) => [
            e.name,
            e.prNumber ? `${e.branch ?? "-"} (PR #${e.prNumber})` : (e.branch ?? "-"),
            age(e.createdAt),
            e.protected ? "never (protected)" : until(e.expiresAt),
            e.state,
            uptime(e),
            (e.urls ?? []).join(" ") || "-",
          ]),
        ),
      );
    }),
  );
  connOptions(
    envCmd.command("create").description("create the environment of a branch now").argument("<branch>"),
  ).action(
    run(async (branch: string, f: ConnFlags) => {
      const a = await client(f, env).post<{ created: { name: string } }>("/api/v1/environments", { branch });
      out(`► environment ${clean(a.created.name)} created for branch ${clean(branch)}\n`);
    }),
  );
  connOptions(
    envCmd
      .command("destroy")
      .description("destroy an environment now (not a protected one)")
      .argument("<name>"),
  ).action(
    run(async (name: string, f: ConnFlags) => {
      await client(f, env).delete(`/api/v1/environments/${encodeURIComponent(name)}`);
      out(`► environment ${clean(name)} is being destroyed\n`);
    }),
  );
  connOptions(
    envCmd
      .command("extend")
      .description("give an environment more time before it expires")
      .argument("<name>")
      .argument("<duration>", "e.g. 4h, 30m"),
  ).action(
    run(async (name: string, duration: string, f: ConnFlags) => {
      const a = await client(f, env).post<{ extended: { expiresAt: string } }>(
        `/api/v1/environments/${encodeURIComponent(name)}/extend`,
        { duration },
      );
      out(`► environment ${clean(name)} now expires at ${clean(a.extended.expiresAt)}\n`);
    }),
  );
  connOptions(
    outputOption(
      envCmd
        .command("gc")
        .description("remove what targets still hold for environments that no longer exist")
        .option("--dry-run", "only list them"),
    ),
  ).action(
    run(async (f: ConnFlags & { output: Output; dryRun?: boolean }) => {
      const a = await client(f, env).post<{ orphans: Orphan[] }>("/api/v1/gc", { dryRun: !!f.dryRun });
      if (f.output === "json") return out(json(a.orphans));
      if (!a.orphans.length) return void out("no orphaned objects\n");
      out(
        formatTable(
          ["ENVIRONMENT", "UNIT", "OBJECT", "RESULT"],
          a.orphans.map((o) => [o.env, o.unit ?? "-", o.subject, o.result]),
        ),
      );
    }),
  );

  // sluice events
  connOptions(
    outputOption(
      program
        .command("events")
        .description("show the agent's events, oldest first (like `flux events`)")
        .option("--env <env>", "only this environment")
        .option("--unit <unit>", "only this unit")
        .option("--limit <n>", "the newest this many (default 100)", positive("--limit"))
        .option("-w, --watch", "keep printing new events until Ctrl-C"),
    ),
  ).action(
    run(
      async (
        f: ConnFlags & { output: Output; env?: string; unit?: string; limit?: number; watch?: boolean },
      ) => {
        const c = client(f, env);
        const filter = { env: f.env, unit: f.unit };
        const { events } = await c.get<EventsAnswer>("/api/v1/events", { ...filter, limit: f.limit });
        const header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
        const row = (e: EventRecord) => [
          age(e.at),
          e.severity === "info" ? "Normal" : e.severity === "warning" ? "Warning" : "Error",
          e.reason,
          [e.env, e.unit].filter(Boolean).join("/") || "agent",
          clean(e.message),
        ];
        if (!f.watch) {
          if (f.output === "json") return out(json(events));
          if (!events.length && empty("events", f.output)) return;
          return out(formatTable(header, events.map(row)));
        }
        // Watching: what there is, then whatever the stream says happened, as it happens.
        // -o json prints one event per line (NDJSON); a table keeps its first widths.
        const print = (list: EventRecord[], first: boolean) => {
          if (f.output === "json") for (const e of list) out(`${JSON.stringify(e)}\n`);
          else if (list.length || first) {
            const t = formatTable(header, list.map(row));
            out(first ? t : t.slice(t.indexOf("\n") + 1));
          }
        };
        print(events, true);
        let lastId = events.at(-1)?.id ?? 0;
        if (!events.length) {
          // Nothing matched: start after the newest event of all, not from the beginning.
          const newest = await c.get<EventsAnswer>("/api/v1/events", { limit: 1 });
          lastId = newest.events.at(-1)?.id ?? 0;
        }
        await watchStream(c, io.signal, async () => {
          for (let page = 0; page < 100; page++) {
            const next = await c.get<EventsAnswer>("/api/v1/events", {
              ...filter,
              sinceId: lastId,
              limit: 500,
            });
            if (!next.events.length) return;
            lastId = next.events.at(-1)!.id;
            print(next.events, false);
            if (next.events.length < 500) return;
          }
        });
      },
    ),
  );
}

/**
 * Follows `/api/v1/stream` until `signal` (or Ctrl-C): every frame — a change or a heartbeat —
 * triggers `onActivity` (serialized: one at a time, and one more if frames came meanwhile).
 * The stream ending on the server's side is an error.
 */
async function watchStream(c: ApiClient, signal: AbortSignal | undefined, onActivity: () => Promise<void>) {
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  if (signal) {
    if (signal.aborted) return;
    signal.addEventListener("abort", onSigint, { once: true });
  } else process.once("SIGINT", onSigint);
  let busy: Promise<void> | null = null;
  let again = false;
  let failure: unknown = null;
  const poke = () => {
    if (busy) {
      again = true;
      return;
    }
    busy = (async () => {
      do {
        again = false;
        await onActivity();
      } while (again && !ac.signal.aborted);
    })()
      .catch((e) => {
        failure = e;
        ac.abort();
      })
      .finally(() => {
        busy = null;
      });
  };
  try {
    const res = await c.stream(ac.signal);
    const reader = res.body!.getReader();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      poke();
    }
    if (!ac.signal.aborted)
      throw new SluiceError("TargetUnavailable", `the event stream from ${c.url} ended (the agent stopped?)`);
  } catch (e) {
    if (!ac.signal.aborted || failure) throw failure ?? e;
  } finally {
    if (signal) signal.removeEventListener("abort", onSigint);
    else process.off("SIGINT", onSigint);
    ac.abort();
    if (busy) await busy;
  }
  if (failure) throw failure;
}
