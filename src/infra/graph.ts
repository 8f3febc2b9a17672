/**
 * The units' dependency graph: core's `analyzeGraph` (Tarjan's SCC names every cycle, then a Kahn
 * order), ties in declaration order.
 */
import { analyzeGraph } from "../core/index.js";

export interface UnitNode {
  name: string;
  /** Units that must run first (dependsOn ∪ dependencies). */
  deps: string[];
}

export interface UnitGraph {
  /** Every unit after its dependencies (only when there is no cycle). */
  order: string[];
  cycles: string[][];
  missing: { unit: string; dependency: string }[];
}

export function unitGraph(nodes: readonly UnitNode[]): UnitGraph {
  const g = analyzeGraph(
    nodes.map((n) => ({ id: n.name, dependsOn: n.deps })),
    { ties: "input" },
  );
  return {
    order: g.cycles.length ? [] : g.order,
    cycles: g.cycles,
    missing: g.missing.map((m) => ({ unit: m.id, dependency: m.dependency })),
  };
}
