/**
 * A real OCI registry (the CNCF distribution registry, Debian's `docker-registry`) on 127.0.0.1,
 * started as a child process with its own configuration and storage, for the demo and the tests.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { SluiceError } from "../core/index.js";

export interface Registry {
  /** `127.0.0.1:PORT`, the host part of image references. */
  host: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function startRegistry(opts: {
  dataDir: string;
  port?: number;
  binary?: string;
}): Promise<Registry> {
  const port = opts.port ?? (await freePort());
  mkdirSync(join(opts.dataDir, "storage"), { recursive: true });
  const config = join(opts.dataDir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log: {level: warn, accesslog: {disabled: true}}",
      `storage: {filesystem: {rootdirectory: ${JSON.stringify(join(opts.dataDir, "storage"))}}, delete: {enabled: true}}`,
      `http: {addr: "127.0.0.1:${port}"}`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(opts.binary ?? "docker-registry", ["serve", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const spawnError = new Promise<Error>((r) => child.once("error", r));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const early = await Promise.race([
      exited.then((c) => `exited with code ${c}`),
      spawnError.then((e) => e.message),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)),
    ]);
    if (early) {
      throw new SluiceError(
        "TargetUnavailable",
        `docker-registry could not start: ${early}: ${stderr.trim().split("\n").slice(-2).join(" ")}`,
        {
          hint: "install it with apt-get install docker-registry (scripts/setup.sh does)",
        },
      );
    }
    try {
      const r = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new SluiceError("TargetUnavailable", `docker-registry did not answer on ${url} within 20 s`);
    }
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    },
  };
}
