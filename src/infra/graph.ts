/**
 * The units' dependency graph: Tarjan's strongly connected components name every cycle, then a
 * Kahn order (ties by declaration order). src/reconcile has the same algorithm for Kustomizations
 * (`analyzeGraph`), but importing it would pull the whole agent into the CLI and make reconcile →
 * infra → reconcile a cycle once the agent reads stack outputs; this one is 40 lines.
 */
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
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const missing: UnitGraph["missing"] = [];
  for (const n of nodes)
    for (const d of n.deps) if (!byName.has(d)) missing.push({ unit: n.name, dependency: d });

  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of byName.get(v)?.deps ?? []) {
      if (!byName.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const comp: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      comp.push(w);
    } while (w !== v);
    if (comp.length > 1 || byName.get(v)!.deps.includes(v)) cycles.push(comp.reverse());
  };
  for (const n of nodes) if (!index.has(n.name)) visit(n.name);

  const order: string[] = [];
  if (cycles.length === 0) {
    const done = new Set<string>();
    while (order.length < nodes.length) {
      const ready = nodes.filter(
        (n) => !done.has(n.name) && n.deps.every((d) => done.has(d) || !byName.has(d)),
      );
      for (const n of ready) {
        done.add(n.name);
        order.push(n.name);
      }
    }
  }
  return { order, cycles, missing };
}
