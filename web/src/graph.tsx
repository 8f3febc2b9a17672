/**
 * The units of an environment as their dependsOn graph: a layered drawing (a unit sits one column
 * right of its furthest dependency), edges from dependency to dependent. Each node links to the
 * unit's section; the same facts are listed in text for screen readers.
 */
import { HEALTH_ICON } from "./format";
import type { DetailUnit } from "./types";

const W = 168;
const H = 46;
const GX = 56;
const GY = 14;
const PAD = 8;

export function layers(units: { name: string; dependsOn: string[] }[]): Map<string, number> {
  const by = new Map(units.map((u) => [u.name, u]));
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (n: string): number => {
    const known = layer.get(n);
    if (known !== undefined) return known;
    if (visiting.has(n)) return 0; // a cycle: the agent reports it; draw it flat
    visiting.add(n);
    let l = 0;
    for (const d of by.get(n)?.dependsOn ?? []) if (by.has(d)) l = Math.max(l, visit(d) + 1);
    visiting.delete(n);
    layer.set(n, l);
    return l;
  };
  for (const u of units) visit(u.name);
  return layer;
}

export function DependencyGraph(props: { units: DetailUnit[] }) {
  const units = props.units;
  if (!units.length) return null;
  const layer = layers(units);
  const cols: DetailUnit[][] = [];
  for (const u of units) {
    const l = layer.get(u.name) ?? 0;
    const col = cols[l] ?? [];
    col.push(u);
    cols[l] = col;
  }
  const pos = new Map<string, { x: number; y: number }>();
  cols.forEach((col, c) => {
    col.forEach((u, r) => {
      pos.set(u.name, { x: PAD + c * (W + GX), y: PAD + r * (H + GY) });
    });
  });
  const width = PAD * 2 + cols.length * W + (cols.length - 1) * GX;
  const height = PAD * 2 + Math.max(...cols.map((c) => c.length)) * (H + GY) - GY;
  const edges: { from: string; to: string; d: string }[] = [];
  for (const u of units) {
    const b = pos.get(u.name)!;
    for (const dep of u.dependsOn) {
      const a = pos.get(dep);
      if (!a) continue;
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x;
      const y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      edges.push({ from: dep, to: u.name, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2}` });
    }
  }
  return (
    <figure class="graph">
      {/* biome-ignore lint/a11y/useSemanticElements: an SVG drawing of links; a fieldset cannot hold it */}
      <svg
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        role="group"
        aria-label="Units and their dependencies"
      >
        <defs>
          <marker
            id="arrow"
            viewBox="0 0 10 10"
            refX="4"
            refY="5"
            markerWidth="7"
            markerHeight="7"
            orient="auto"
          >
            <path d="M0,0 L10,5 L0,10 z" class="edge-head" />
          </marker>
        </defs>
        {edges.map((e) => (
          <path key={`${e.from}>${e.to}`} d={e.d} class="edge" marker-end="url(#arrow)" />
        ))}
        {units.map((u) => {
          const p = pos.get(u.name)!;
          return (
            <a
              key={u.name}
              href={`#unit-${encodeURIComponent(u.name)}`}
              class={`node h-${u.health}`}
              aria-label={`${u.name}: ${u.health}${u.dependsOn.length ? `, depends on ${u.dependsOn.join(", ")}` : ""}`}
            >
              <rect x={p.x} y={p.y} width={W} height={H} rx={6} />
              <text x={p.x + 10} y={p.y + 19} class="node-name">
                {u.name.length > 20 ? `${u.name.slice(0, 19)}…` : u.name}
              </text>
              <text x={p.x + 10} y={p.y + 36} class="node-health">
                {HEALTH_ICON[u.health]} {u.health}
              </text>
            </a>
          );
        })}
      </svg>
      <figcaption class="visually-hidden">
        {units
          .map(
            (u) =>
              `${u.name} (${u.health})${u.dependsOn.length ? ` depends on ${u.dependsOn.join(", ")}` : ""}`,
          )
          .join("; ")}
      </figcaption>
    </figure>
  );
}
