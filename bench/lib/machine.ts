/** What the benchmarks ran on. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { hasTimeTool } from "./proc.js";
import type { Machine } from "./types.js";

function tryRun(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 });
  } catch (e) {
    // `kubectl version` exits 1 without a cluster but still prints the client versions.
    const out = (e as { stdout?: string }).stdout;
    return typeof out === "string" && out.length > 0 ? out : undefined;
  }
}

export function machine(): Machine {
  const c = cpus();
  let os = "unknown";
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // not Linux, or no os-release
  }
  const kv = tryRun("kubectl", ["version", "--client"]) ?? "";
  const ks = tryRun("kustomize", ["version"])?.trim();
  return {
    cpu: c[0]?.model.trim() ?? "unknown",
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os,
    kernel: release(),
    node: process.version,
    kubectl: /Client Version:\s*(\S+)/.exec(kv)?.[1],
    kustomize: ks ? `kustomize ${ks}` : /Kustomize Version:\s*(\S+)/.exec(kv)?.[1],
    timeTool: hasTimeTool,
  };
}
