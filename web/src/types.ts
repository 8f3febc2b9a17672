/**
 * The API's answers as the dashboard reads them. They mirror src/server/_dashboard.ts and
 * src/store/index.ts (the server is built separately, so the shapes are restated here).
 */

export type Role = "viewer" | "operator";
export type Health = "Healthy" | "Progressing" | "Degraded" | "Failed" | "Unknown";
export type Sync = "InSync" | "OutOfSync" | "Drifted" | "Unknown";
export type StatusFilter = Health | "OutOfSync" | "Drifted" | "Suspended";
export type EnvironmentKind = "long-lived" | "preview";
export type ObjectHealth = "Healthy" | "Suspended" | "Progressing" | "Missing" | "Degraded" | "Unknown";

export interface WhoAmI {
  name: string;
  role: Role;
}

export interface MatrixCell {
  health: Health;
  sync: Sync;
  ready: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  /** Failed and being tried again at the same revision (health and reason are the failure's). */
  retrying: boolean;
  revision: string | null;
  lastAppliedRevision: string | null;
  suspended: boolean;
  updatedAt: string;
}

export interface MatrixEnvironment {
  name: string;
  branch: string | null;
  rule: string | null;
  target: string;
  protected: boolean;
  createdAt: string;
  expiresAt: string | null;
  state: "active" | "destroying" | "destroyed";
  kind: EnvironmentKind;
  health: Health;
}

export interface MatrixRow {
  env: MatrixEnvironment;
  cells: Record<string, MatrixCell>;
}

export interface MatrixCounts {
  environments: number;
  previews: number;
  cells: number;
  health: Record<Health, number>;
  sync: Record<Sync, number>;
  suspended: number;
}

export interface MatrixAnswer {
  total: number;
  offset: number;
  limit: number;
  units: string[];
  counts: MatrixCounts;
  rows: MatrixRow[];
}

export interface UnitStatus {
  env: string;
  unit: string;
  ready: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  revision: string | null;
  lastAppliedRevision: string | null;
  lastAppliedAt: string | null;
  drift: boolean;
  suspended: boolean;
  updatedAt: string;
}

export interface RunStage {
  name: string;
  result: "succeeded" | "failed" | "skipped";
  ms: number;
  message?: string;
}

export interface RunRecord {
  id: number;
  env: string;
  unit: string;
  revision: string | null;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  result: "running" | "succeeded" | "failed" | "interrupted";
  reason: string | null;
  message: string | null;
  stages: RunStage[];
  summary: Record<string, number>;
}

export interface ChangeEntry {
  subject: string;
  action: string;
  reason?: string;
  diff?: string;
}

export interface DetailUnit {
  name: string;
  dependsOn: string[];
  status: UnitStatus | null;
  health: Health;
  retrying: boolean;
  sync: Sync;
  objects: {
    subject: string;
    kind: string;
    namespace: string | null;
    name: string;
    health: ObjectHealth | null;
    message: string;
  }[];
  objectHealthFrom: "target" | "last-run" | "status" | "none";
  inventoryRevision: string | null;
  lastRun: RunRecord | null;
  lastChange: {
    runId: number | null;
    at: string;
    revision: string | null;
    entries: ChangeEntry[];
    unchanged: number;
  } | null;
  smoke: {
    runId: number;
    revision: string | null;
    at: string;
    result: RunStage["result"];
    ms: number;
    message: string | null;
  } | null;
  urls: { name: string; url: string }[];
}

export interface EnvironmentDetail {
  environment: MatrixEnvironment & { ttlSeconds: number | null; revision: string | null };
  units: DetailUnit[];
  runs: RunRecord[];
}

export interface EventRecord {
  id: number;
  at: string;
  env: string | null;
  unit: string | null;
  severity: "info" | "warning" | "error";
  reason: string;
  message: string;
}

/**
 * `GET /api/v1/images` (src/reconcile/images.ts ImageStatus): every ImageRepository with its last
 * scan, every ImagePolicy with its latest image, every ImageUpdateAutomation with its last commit.
 * Names are `namespace/name`.
 */
export interface ImagesAnswer {
  repositories: {
    name: string;
    image: string;
    ok: boolean;
    message: string;
    count: number;
    latestTags: string[];
    scannedAt: string | null;
  }[];
  policies: {
    name: string;
    repository: string;
    ok: boolean;
    message: string;
    latestImage: string | null;
    previousImage: string | null;
  }[];
  automations: {
    name: string;
    source: string;
    ok: boolean;
    message: string;
    lastRunAt: string | null;
    lastCommit: string | null;
    lastPushed: string | null;
  }[];
}

/** An event of `/api/v1/stream` (src/reconcile/types.ts AgentEvent, plus any newer type). */
export type LiveEvent =
  | { type: "unit"; env: string; unit: string; ready: string; reason: string; message: string }
  | { type: "environment"; env: string; state: string; branch: string | null }
  | { type: "source"; source: string; ok: boolean; message: string }
  | { type: "run"; env: string; unit: string; runId: number; result: string }
  | { type: "event"; env?: string | null }
  | { type: "resync" };
