import type { KubeObject } from "../core/index.js";
import type { Environment } from "../envs/index.js";
import type { ChangeSet } from "../plan/index.js";
import type { SmokeTestObject } from "./sluiceobjects.js";

/** A unit is one Kustomization of one environment: the thing that is rendered and applied. */
export interface UnitKey {
  env: string;
  unit: string;
}

export function unitKey(u: UnitKey): string {
  return `${u.env}/${u.unit}`;
}

export function parseUnitKey(k: string): UnitKey {
  const i = k.indexOf("/");
  return { env: k.slice(0, i), unit: k.slice(i + 1) };
}

/** Why a unit is not Ready; each failing stage has its own (Flux's names where Flux has one). */
export type Reason =
  | "ReconciliationSucceeded"
  | "Progressing"
  | "ArtifactFailed"
  | "BuildFailed"
  | "ReconciliationFailed"
  | "PruneFailed"
  | "HealthCheckFailed"
  | "DependencyNotReady"
  | "DependencyCycle"
  | "Suspended"
  | "SmokeTestFailed";

/** What the agent tells listeners (the SSE stream, the dashboard, tests). */
export type AgentEvent =
  | {
      type: "unit";
      env: string;
      unit: string;
      ready: string;
      reason: string;
      message: string;
      revision: string | null;
    }
  | { type: "environment"; env: string; state: string; branch: string | null }
  | { type: "source"; source: string; ok: boolean; message: string }
  | { type: "run"; env: string; unit: string; runId: number; result: string; changeSet?: ChangeSet }
  /** A build started, logged (`log` holds the new output) or finished. */
  | { type: "build"; build: string; commit: string; result: string; log?: string };

/** What one smoke test found, recorded with the run (`sluice get checks`, the API, the dashboard). */
export interface CheckRecord {
  env: string;
  unit: string;
  smokeTest: string;
  revision: string | null;
  runId: number;
  at: string;
  ok: boolean;
  /** Each check in order: name, pass/fail, duration, and what was seen (expected vs actual on failure). */
  results: { name: string; ok: boolean; ms: number; detail: string }[];
}

/** A hook run after a unit applied and became healthy (smoke tests); throwing fails the run. */
export type PostApplyHook = (ctx: {
  env: Environment;
  unit: string;
  objects: KubeObject[];
  smokeTests: SmokeTestObject[];
  /** Records a smoke test's results with the run. */
  record: (smokeTest: string, report: { ok: boolean; results: CheckRecord["results"] }) => void;
}) => Promise<void>;
