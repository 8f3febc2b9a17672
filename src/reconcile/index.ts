/**
 * The reconciler: the agent that keeps every environment equal to its branch (agent.ts explains
 * the loop), its dependency graph, work queue and metrics.
 */

export { analyzeGraph, type GraphAnalysis, type GraphNode } from "../core/index.js";
export { Agent, type AgentOptions, type PullRequestChange, type TargetAccess } from "./agent.js";
export type { AutomationStatus, ImageStatus, PolicyStatus, RepositoryStatus } from "./images.js";
export { AgentMetrics } from "./metrics.js";
export { type QueueOptions, WorkQueue } from "./queue.js";
export { type SmokeTestObject, splitSluiceObjects } from "./sluiceobjects.js";
export {
  type AgentEvent,
  type CheckRecord,
  type PostApplyHook,
  parseUnitKey,
  type Reason,
  type UnitKey,
  unitKey,
} from "./types.js";
