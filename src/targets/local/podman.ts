/**
 * The one place Sluice runs podman: always with an argument array (never a shell) and always with
 * Sluice's own containers.conf selected through `CONTAINERS_CONF`, so the user's configuration in
 * /etc/containers is neither needed nor edited. Reads are batched: one `podman pod ps` and one
 * `podman ps -a` (JSON, filtered by label) describe everything a unit runs.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SluiceError } from "../../core/index.js";

/** scripts/podman/containers.conf in the Sluice checkout (same depth from src/ and dist/). */
export function defaultContainersConf(): string {
  const fromEnv = process.env.SLUICE_CONTAINERS_CONF;
  if (fromEnv) return fromEnv;
  return fileURLToPath(new URL("../../../scripts/podman/containers.conf", import.meta.url));
}

export interface PodmanResult {
  stdout: string;
  stderr: string;
}

export interface PodmanOptions {
  /** Kill podman after this long (default 2 minutes). */
  timeoutMs?: number;
  /** Output as it comes (stdout and stderr), e.g. to stream a build's log. */
  onOutput?: (chunk: string) => void;
}

/** podman prints this on hosts without syslog; it is noise, not an error. */
const NOISE = /^.*failed to connect to syslog.*$/gm;

export class Podman {
  readonly path: string;
  readonly conf: string;
  constructor(path = "podman", conf = defaultContainersConf()) {
    this.path = path;
    this.conf = conf;
  }

  /** Runs podman; rejects with a SluiceError naming the command (arguments are never secret). */
  run(args: string[], opts: PodmanOptions = {}): Promise<PodmanResult> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        this.path,
        args,
        {
          env: { ...process.env, CONTAINERS_CONF: this.conf },
          maxBuffer: 64 * 1024 * 1024,
          timeout: opts.timeoutMs ?? 120_000,
          encoding: "utf8",
        },
        (err, stdout, stderr) => {
          const errText = String(stderr ?? "")
            .replace(NOISE, "")
            .trim();
          if (err) {
            const e = err as NodeJS.ErrnoException & { killed?: boolean };
            if (e.code === "ENOENT") {
              reject(
                new SluiceError("TargetUnavailable", `podman was not found at ${this.path}`, {
                  hint: "install podman (apt-get install podman runc), or run scripts/setup.sh",
                }),
              );
              return;
            }
            const what = e.killed ? "timed out" : "failed";
            reject(
              new SluiceError(
                "TargetUnavailable",
                `podman ${args.slice(0, 2).join(" ")} ${what}: ${lastLines(errText || String(e.message), 4)}`,
                { detail: { args: args.slice(0, 3), stderr: errText.slice(-2000) } },
              ),
            );
            return;
          }
          resolve({ stdout: String(stdout ?? ""), stderr: errText });
        },
      );
      if (opts.onOutput) {
        child.stdout?.on("data", (d) => opts.onOutput!(String(d)));
        child.stderr?.on("data", (d) => opts.onOutput!(String(d)));
      }
    });
  }

  async json<T>(args: string[]): Promise<T> {
    const { stdout } = await this.run(args);
    const text = stdout.trim();
    if (!text) return [] as T;
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new SluiceError("TargetUnavailable", `podman ${args[0]} printed output that is not JSON`, {
        cause: e,
      });
    }
  }

  async check(): Promise<void> {
    if (!existsSync(this.conf)) {
      throw new SluiceError("TargetUnavailable", `Sluice's podman configuration ${this.conf} is missing`, {
        hint: "run Sluice from its checkout, or set SLUICE_CONTAINERS_CONF to a containers.conf",
      });
    }
    await this.run(["version", "--format", "{{.Client.Version}}"], { timeoutMs: 30_000 });
  }

  /**
   * Pods and their containers that carry the labels (`key` or `key=value`). With `containersOnly`,
   * one `podman ps` call: pods are known through their containers (pods without any are missed).
   */
  async observe(labelFilters: string[], opts: { containersOnly?: boolean } = {}): Promise<ObservedPod[]> {
    const filters = labelFilters.flatMap((f) => ["--filter", `label=${f}`]);
    const [pods, ctrs] = await Promise.all([
      opts.containersOnly
        ? Promise.resolve(undefined)
        : this.json<RawPod[]>(["pod", "ps", "--format", "json", ...filters]),
      this.json<RawContainer[]>(["ps", "-a", "--pod", "--format", "json", ...filters]),
    ]);
    const byPod = new Map<string, ObservedContainer[]>();
    const derived = new Map<string, RawPod>();
    for (const c of ctrs ?? []) {
      if (!c.Pod || c.IsInfra) continue;
      const list = byPod.get(c.Pod) ?? [];
      list.push({
        id: c.Id,
        name: (c.Names ?? [])[0] ?? c.Id,
        state: String(c.State ?? "unknown").toLowerCase(),
        exitCode: c.ExitCode ?? 0,
        startedAt: c.StartedAt ?? 0,
        labels: c.Labels ?? {},
        image: c.Image ?? "",
        ports: (c.Ports ?? []).map((p) => ({
          hostIp: p.host_ip ?? "",
          hostPort: p.host_port,
          containerPort: p.container_port,
          protocol: (p.protocol ?? "tcp").toUpperCase(),
        })),
      });
      byPod.set(c.Pod, list);
      if (!derived.has(c.Pod))
        derived.set(c.Pod, {
          Id: c.Pod,
          Name: c.PodName ?? c.Pod,
          Status: "unknown",
          Labels: c.Labels ?? {},
        });
    }
    return (pods ?? [...derived.values()]).map((p) => ({
      id: p.Id,
      name: p.Name,
      status: String(p.Status ?? "unknown"),
      created: p.Created ?? "",
      labels: p.Labels ?? {},
      containers: (byPod.get(p.Id) ?? []).sort((a, b) => a.name.localeCompare(b.name)),
    }));
  }
}

export interface ObservedPort {
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: string;
}

export interface ObservedContainer {
  id: string;
  name: string;
  /** created, running, exited, stopped, paused, unknown … */
  state: string;
  exitCode: number;
  startedAt: number;
  labels: Record<string, string>;
  image: string;
  ports: ObservedPort[];
}

export interface ObservedPod {
  id: string;
  name: string;
  status: string;
  created: string;
  labels: Record<string, string>;
  /** App containers only (no infra), by name. */
  containers: ObservedContainer[];
}

interface RawPod {
  Id: string;
  Name: string;
  Status?: string;
  Created?: string;
  Labels?: Record<string, string>;
}

interface RawContainer {
  Id: string;
  Names?: string[];
  State?: string;
  ExitCode?: number;
  StartedAt?: number;
  Labels?: Record<string, string>;
  Image?: string;
  Pod?: string;
  PodName?: string;
  IsInfra?: boolean;
  Ports?: { host_ip?: string; host_port: number; container_port: number; protocol?: string }[];
}

export function lastLines(text: string, n: number): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(-n).join(" | ");
}
