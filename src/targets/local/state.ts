/**
 * What the local target remembers between runs, one JSON file per unit in
 * `<stateDir>/units/<env>.<unit>.json` (written atomically: temp file + rename, mode 0600):
 * the inventory (the only objects prune may delete), content hashes of non-pod objects (to tell
 * created / configured / unchanged), the desired hash and replica count of each workload (for
 * health), and each Service's selector, ports and the proxy port it listens on (so the address
 * survives a restart). Pods themselves are never recorded: podman's labels are the truth for them.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ObjectRef } from "../../core/index.js";
import { SluiceError } from "../../core/index.js";
import { ownerOf, type UnitId } from "../types.js";
import { sanitize, sha } from "./translate.js";

export interface ServicePortRecord {
  name?: string;
  port: number;
  targetPort: number | string;
  protocol: string;
  /** The 127.0.0.1 port the proxy listens on. */
  listen: number;
}

export interface ServiceRecord {
  namespace: string;
  name: string;
  selector: Record<string, string>;
  ports: ServicePortRecord[];
}

export interface WorkloadRecord {
  kind: string;
  namespace: string;
  name: string;
  hash: string;
  replicas: number;
  /** A failure that pods cannot show (the image could not be pulled, a pod could not be created). */
  lastError?: string;
}

export interface UnitState {
  version: 1;
  env: string;
  unit: string;
  /** Set when an apply recorded its intent but did not finish (the agent was killed). */
  pending?: boolean;
  inventory: ObjectRef[];
  /** objectKey → content hash, for non-pod objects. */
  objects: Record<string, string>;
  /** subject → record. */
  workloads: Record<string, WorkloadRecord>;
  /** `namespace/name` → record. */
  services: Record<string, ServiceRecord>;
  /** objectKeys whose prune is disabled by annotation: never deleted by prune, only forgotten. */
  keep?: string[];
}

export class StateStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "units");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(u: UnitId): string {
    // The hash keeps `a.b`+`c` and `a`+`b.c` apart after sanitizing.
    return join(this.dir, `${sanitize(u.env)}.${sanitize(u.unit)}-${sha(ownerOf(u), 8)}.json`);
  }

  load(u: UnitId): UnitState | undefined {
    let text: string;
    try {
      text = readFileSync(this.file(u), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    return parse(text, this.file(u));
  }

  all(): UnitState[] {
    const out: UnitState[] = [];
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith(".json")) continue;
      try {
        out.push(parse(readFileSync(join(this.dir, f), "utf8"), join(this.dir, f)));
      } catch {
        // A damaged file of one unit must not stop the others; that unit re-applies from scratch.
      }
    }
    return out;
  }

  save(s: UnitState): void {
    const f = this.file(s);
    const tmp = `${f}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, f);
  }

  remove(u: UnitId): void {
    rmSync(this.file(u), { force: true });
  }
}

function parse(text: string, file: string): UnitState {
  let v: UnitState;
  try {
    v = JSON.parse(text) as UnitState;
  } catch (e) {
    throw new SluiceError("Internal", `local target state ${file} is not valid JSON`, {
      cause: e,
      hint: "delete the file; the next apply recreates it",
    });
  }
  if (v?.version !== 1 || !Array.isArray(v.inventory)) {
    throw new SluiceError("Internal", `local target state ${file} has an unknown format`, {
      hint: "delete the file; the next apply recreates it",
    });
  }
  v.objects ??= {};
  v.workloads ??= {};
  v.services ??= {};
  return v;
}

export function emptyState(u: UnitId): UnitState {
  return { version: 1, env: u.env, unit: u.unit, inventory: [], objects: {}, workloads: {}, services: {} };
}
