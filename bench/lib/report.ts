/** The printed table, the JSON results, and docs/benchmarks.md. */
import type { Machine, PeerStats, Report, ScenarioResult, Stats } from "./types.js";

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms).toLocaleString("en-US")} ms`;
  return `${ms.toFixed(1)} ms`;
}

function fmtRss(st: Stats | undefined): string {
  if (!st?.peakRssKb) return "–";
  return `${Math.round(st.peakRssKb / 1024)} MiB${st.rssSource === "in-process:maxRSS" ? "†" : ""}`;
}

function fmtRate(st: Stats | undefined): string {
  if (!st?.objectsPerSec) return "–";
  return `${Math.round(st.objectsPerSec).toLocaleString("en-US")}/s`;
}

function fmtRatio(p: PeerStats | undefined): string {
  return p ? `${p.ratioMedian.toFixed(2)}×` : "–";
}

export function goalCell(r: ScenarioResult, md = false): string {
  if (!r.goal) return "–";
  const b = (s: string) => (md ? `**${s}**` : s);
  if (r.status !== "ok") return `${r.status}: ${r.goal.text}`;
  if (r.goal.met === null) return `not evaluated (quick): ${r.goal.text}`;
  return `${r.goal.met ? b("met") : b("NOT MET")}: ${r.goal.text}`;
}

const HEAD = [
  "scenario",
  "Sluice median",
  "p95",
  "peer",
  "peer median",
  "Sluice/peer",
  "RSS Sluice",
  "RSS peer",
  "Sluice objects/s",
  "goal",
];

function rows(results: ScenarioResult[], md: boolean): string[][] {
  const out: string[][] = [];
  for (const r of results) {
    if (r.status !== "ok" || !r.sluice) {
      out.push([
        r.name,
        `${r.status}: ${(r.reason ?? "").split("\n")[0]}`,
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        goalCell(r, md),
      ]);
      continue;
    }
    const s = r.sluice;
    const peers: (PeerStats | undefined)[] = r.peers.length > 0 ? r.peers : [undefined];
    peers.forEach((p, i) => {
      out.push([
        i === 0 ? r.name : md ? "″" : '  "',
        i === 0 ? fmtMs(s.medianMs) : "",
        i === 0 ? fmtMs(s.p95Ms) : "",
        p ? (md ? `\`${p.label}\`` : p.label) : "none",
        fmtMs(p?.medianMs),
        fmtRatio(p),
        i === 0 ? fmtRss(s) : "",
        fmtRss(p),
        i === 0 ? fmtRate(s) : "",
        i === 0 ? goalCell(r, md) : "",
      ]);
    });
  }
  return out;
}

/** A fixed-width table for the terminal. */
export function textTable(results: ScenarioResult[]): string {
  const all = [HEAD, ...rows(results, false)];
  const widths = HEAD.map((_, c) => Math.min(60, Math.max(...all.map((r) => (r[c] ?? "").length))));
  const line = (r: string[]) =>
    r
      .map((cell, c) => (c === r.length - 1 ? cell : cell.slice(0, widths[c]).padEnd(widths[c]!)))
      .join("  ")
      .trimEnd();
  return [line(HEAD), widths.map((w) => "-".repeat(w)).join("  "), ...all.slice(1).map(line)].join("\n");
}

function mdTable(head: string[], body: string[][]): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    `| ${head.map(esc).join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...body.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

export function machineLine(m: Machine): string {
  return [
    `${m.cpu}, ${m.cores} cores`,
    `${m.memoryGiB} GiB RAM`,
    `${m.os} (Linux ${m.kernel})`,
    `node ${m.node}`,
    `kubectl ${m.kubectl ?? "not installed"}`,
    `kustomize ${m.kustomize ?? "not installed"}`,
  ].join("; ");
}

function sideLine(st: Stats): string {
  const rss = st.peakRssKb
    ? `, peak RSS ${Math.round(st.peakRssKb / 1024)} MiB (${st.rssSource === "child:/usr/bin/time" ? "`/usr/bin/time -f %M`, largest process of the tree" : st.rssSource === "proc:VmRSS" ? "VmRSS of the measured process, from /proc" : "`process.resourceUsage().maxRSS` of the benchmark process: an upper bound"})`
    : "";
  const p95 = st.p95Ms !== undefined ? `, p95 ${fmtMs(st.p95Ms)}` : "";
  return `\`${st.label}\`: median ${fmtMs(st.medianMs)}${p95}, min ${fmtMs(st.minMs)}, max ${fmtMs(st.maxMs)} over ${st.n} runs${rss}${st.objectsPerSec ? `; ${st.objects} objects, ${fmtRate(st)}` : ""}`;
}

function scenarioSection(r: ScenarioResult): string {
  const out = [`### ${r.name}`, "", r.description, ""];
  if (r.status !== "ok") {
    out.push(`**${r.status}**: ${r.reason ?? ""}`, "");
    return out.join("\n");
  }
  if (r.goal) out.push(`Goal: ${goalCell(r, true)}.`, "");
  if (r.sluice) out.push(`- ${sideLine(r.sluice)}`);
  for (const p of r.peers) {
    out.push(`- ${sideLine(p)}`);
    out.push(
      `  - Sluice/peer per pair: ${p.ratios.map((x) => x.toFixed(2)).join(", ")} → median **${p.ratioMedian.toFixed(2)}×** (${p.ratioMedian >= 1 ? `${((p.ratioMedian - 1) * 100).toFixed(0)}% slower` : `${((1 - p.ratioMedian) * 100).toFixed(0)}% faster`} than the peer)`,
    );
  }
  out.push(
    `- ${r.pairs} alternating ${r.peers.length > 0 ? "rounds (Sluice, then each peer)" : "runs"} after a warm-up; load average ${r.load?.before.toFixed(1)} → ${r.load?.after.toFixed(1)}; scenario took ${fmtMs(r.durationMs)} in all; run ${r.date}.`,
    "",
  );
  const b = r.breakdown;
  if (b) {
    const label =
      r.goal && r.goal.met === false ? "Where the time goes (goal not met)" : "Where the time goes";
    out.push(`**${label}** — ${b.method}:`, "");
    const counted = b.phases.filter((p) => p.group !== "extra");
    const total = counted.reduce((a, p) => a + Math.max(0, p.ms), 0);
    out.push(
      mdTable(
        ["step", "time", "share"],
        b.phases.map((p) => [
          p.note ? `${p.name} — ${p.note}` : p.name,
          fmtMs(p.ms),
          total > 0 && p.ms >= 0 && p.group !== "extra" ? `${((p.ms / total) * 100).toFixed(0)}%` : "",
        ]),
      ),
      "",
    );
    if (b.profileAreas) {
      out.push(
        `CPU profile, self time by area: ${b.profileAreas.map((a) => `${a.area} ${a.pct}%`).join("; ")}.`,
        "",
      );
    }
    if (b.profile) {
      out.push(
        "Hottest functions (self time):",
        "",
        mdTable(
          ["function", "where", "self", "share"],
          b.profile.map((f) => [`\`${f.fn}\``, `\`${f.where}\``, fmtMs(f.selfMs), `${f.pct}%`]),
        ),
        "",
      );
    }
    for (const n of b.notes ?? []) out.push(`- ${n}`);
    if (b.notes?.length) out.push("");
  }
  if (r.analysis) out.push(r.analysis, "");
  for (const n of r.notes) out.push(`- Note: ${n}`);
  if (r.notes.length) out.push("");
  return out.join("\n");
}

export function markdown(rep: Report): string {
  const groups = new Map<string, ScenarioResult[]>();
  for (const r of rep.results)
    groups.set(`${r.command}\u0000${r.date.slice(0, 10)}`, [
      ...(groups.get(`${r.command}\u0000${r.date.slice(0, 10)}`) ?? []),
      r,
    ]);
  const out = [
    "# Benchmarks",
    "",
    "<!-- Generated by bench/main.ts (`npm run bench`); do not edit by hand. Raw data: docs/benchmarks.json. -->",
    "",
    `Latest run: ${rep.date} with \`${rep.command}\`.`,
    "",
    `Machine: ${machineLine(rep.machine)}.`,
    "",
  ];
  if (groups.size > 1) {
    out.push("The results come from more than one run:", "");
    for (const rs of groups.values())
      out.push(`- ${rs.map((r) => r.name).join(", ")}: \`${rs[0]!.command}\` on ${rs[0]!.date}`);
    out.push("");
  }
  const noisy = rep.results.filter((r) => r.notes.some((n) => n.startsWith("load average")));
  if (noisy.length > 0) {
    out.push(
      `> **Noise:** other work was running on this ${rep.machine.cores}-core machine during ${noisy.map((r) => r.name).join(", ")} (load averages in each section). Absolute times are inflated; the Sluice/peer ratios, taken pair by pair from alternating runs, are the more robust numbers.`,
      "",
    );
  }
  out.push(
    "## Results",
    "",
    mdTable(HEAD, rows(rep.results, true)),
    "",
    "Medians over the timed runs; p95 only where there are at least 10 runs; Sluice/peer is the median of the per-pair ratios. RSS is the peak resident set size: of the process tree via `/usr/bin/time -f %M` for commands, or (†) `process.resourceUsage().maxRSS` of the benchmark process for in-process work (an upper bound).",
    "",
    "## Scenarios",
    "",
    ...rep.results.map(scenarioSection),
    "## Method",
    "",
    "- Inputs are generated by the suite from fixed seeds (bench/lib/gen.ts) into a temporary directory, never downloaded, and removed afterwards.",
    "- Each scenario checks its outputs once before timing (object counts, no `${…}` left, Sluice's objects equal to the peer pipeline's), then runs a warm-up, then alternates Sluice and the peer(s) (A B A B …).",
    "- Command-line sides run as child processes with stdout to /dev/null; the time is wall-clock from spawn to exit.",
    "- Run it: `npm run bench` (all scenarios), `npm run bench -- render-overlay --json out.json`, `npm run bench -- --quick` (smoke check, part of `npm test`).",
    "",
  );
  return out.join("\n");
}
