/**
 * Dependency graphs (Kustomization `dependsOn`, Stack units): cycles are found up front (Tarjan's
 * strongly connected components) so that nothing in a cycle ever runs, and each cycle is named in
 * full; the rest in an order where every dependency comes first.
 */
export interface GraphNode {
  id: string;
  dependsOn: string[];
}

export interface GraphAnalysis {
  /** Units in an order where every dependency comes first (cyclic units excluded). */
  order: string[];
  /** Each cycle as the list of its members, e.g. [a, b, c] for a → b → c → a. */
  cycles: string[][];
  /** Units that depend on an id that does not exist. */
  missing: { id: string; dependency: string }[];
  /** Units that are in a cycle or depend (transitively) on one. */
  blocked: Set<string>;
}

export function analyzeGraph(
  nodes: readonly GraphNode[],
  opts: { ties?: "id" | "input" } = {},
): GraphAnalysis {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const missing: GraphAnalysis["missing"] = [];
  for (const n of nodes)
    for (const d of n.dependsOn) if (!byId.has(d)) missing.push({ id: n.id, dependency: d });

  // Tarjan's SCC, iterative enough for realistic sizes (recursion depth = longest chain).
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const strong = (v: string) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of byId.get(v)?.dependsOn ?? []) {
      if (!byId.has(w)) continue;
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      const selfLoop = comp.length === 1 && (byId.get(v)?.dependsOn ?? []).includes(v);
      if (comp.length > 1 || selfLoop) cycles.push(comp.reverse());
    }
  };
  for (const n of nodes) if (!idx.has(n.id)) strong(n.id);

  const inCycle = new Set(cycles.flat());
  const blocked = new Set<string>(inCycle);
  // Anything depending on a blocked unit is blocked too (fixed point).
  let grew = true;
  while (grew) {
    grew = false;
    for (const n of nodes) {
      if (!blocked.has(n.id) && n.dependsOn.some((d) => blocked.has(d))) {
        blocked.add(n.id);
        grew = true;
      }
    }
  }
  // Topological order of the rest (Kahn), ties by id (or by input order) for determinism.
  const order: string[] = [];
  const done = new Set<string>();
  const rest = nodes.filter((n) => !blocked.has(n.id)).map((n) => n.id);
  if (opts.ties !== "input") rest.sort();
  while (order.length < rest.length) {
    const next = rest.find(
      (id) => !done.has(id) && byId.get(id)!.dependsOn.every((d) => done.has(d) || !byId.has(d)),
    );
    if (!next) break;
    done.add(next);
    order.push(next);
  }
  return { order, cycles, missing, blocked };
}
