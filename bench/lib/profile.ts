/** Summarises a V8 CPU profile (`node --cpu-prof`): self time by function and by area. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  top: { fn: string; where: string; selfMs: number; pct: number }[];
  areas: { area: string; selfMs: number; pct: number }[];
}

/** Reads the single .cpuprofile in dir. */
export function summariseProfileDir(dir: string, repo: string, topN = 12): ProfileSummary {
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
  return summariseProfile(JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile, repo, topN);
}

export function summariseProfile(p: CpuProfile, repo: string, topN = 12): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i + 1] ?? 0));
  }
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === "(idle)") continue;
    total += us;
    const where = shortUrl(cf.url, repo, cf.lineNumber);
    const key = `${cf.functionName}@${where}`;
    const e = fns.get(key) ?? { fn: cf.functionName || "(anonymous)", where, us: 0 };
    e.us += us;
    fns.set(key, e);
    const area = areaOf(cf.url, cf.functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / total) * 1000) / 10;
  return {
    totalMs: total / 1000,
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, selfMs: Math.round(e.us / 100) / 10, pct: pct(e.us) })),
    areas: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfMs: Math.round(us / 100) / 10, pct: pct(us) })),
  };
}

function shortUrl(url: string, repo: string, line: number): string {
  if (!url) return "(native)";
  let u = url.replace(/^file:\/\//, "");
  if (u.startsWith(`${repo}/`)) u = u.slice(repo.length + 1);
  return `${u}:${line + 1}`;
}

function areaOf(url: string, fn: string): string {
  if (fn === "(garbage collector)") return "garbage collection";
  if (fn === "(program)" || fn === "(root)") return "V8 / native (program)";
  if (url.includes("node_modules/yaml/")) return "yaml library (node_modules/yaml)";
  const m = /\/src\/([^/]+)\//.exec(url);
  if (m && !url.includes("node_modules")) return `sluice src/${m[1]}`;
  if (url.includes("node_modules/tsx") || url.includes("esbuild")) return "tsx loader (benchmark only)";
  if (url.startsWith("node:") || !url) return "node internals / builtins";
  if (url.includes("node_modules/")) return `node_modules/${url.split("node_modules/")[1]?.split("/")[0]}`;
  return "other";
}
