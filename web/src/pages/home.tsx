/**
 * Home: the environment × unit matrix. Filtering and paging happen on the server
 * (`/api/v1/matrix`); the table renders only the rows in view (plus a margin) between two spacer
 * rows, and fetches the pages of 50 rows those need. Live events refetch what is on screen.
 */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { envPath, session } from "../api";
import { HealthBadge, SyncLabel, Tag } from "../components";
import { age, HEALTH_ICON, nf, relTime, SYNC_LABEL, shortRev } from "../format";
import { debounced, live } from "../live";
import { setCounts, setPageTitle } from "../summary";
import type { Health, MatrixAnswer, MatrixCell, MatrixCounts, MatrixRow } from "../types";

const ROW_H = 68;
const ENV_W = 250;
const CELL_W = 150;
const PAGE = 50;
const OVERSCAN = 6;

const STATUS_OPTIONS: { value: string; label: string }[] = [
  { value: "", label: "Any status" },
  { value: "Healthy", label: "Healthy" },
  { value: "Progressing", label: "Progressing" },
  { value: "Degraded", label: "Degraded" },
  { value: "Failed", label: "Failed" },
  { value: "Unknown", label: "Unknown" },
  { value: "OutOfSync", label: "Out of sync" },
  { value: "Drifted", label: "Drifted" },
  { value: "Suspended", label: "Suspended" },
];
const HEALTH_ORDER: Health[] = ["Healthy", "Progressing", "Degraded", "Failed", "Unknown"];

interface Filters {
  q: string;
  status: string;
  kind: string;
}

function filtersFromUrl(): Filters {
  const p = new URLSearchParams(window.location.search);
  return { q: p.get("q") ?? "", status: p.get("status") ?? "", kind: p.get("kind") ?? "" };
}

function queryString(f: Filters): string {
  const p = new URLSearchParams();
  if (f.q) p.set("q", f.q);
  if (f.status) p.set("status", f.status);
  if (f.kind) p.set("kind", f.kind);
  return p.toString();
}

interface Data {
  key: string;
  total: number;
  units: string[];
  pages: Map<number, MatrixRow[]>;
  loaded: boolean;
}

let firstPaint = true;

export function HomePage() {
  const [filters, setFilters] = useState<Filters>(filtersFromUrl);
  const key = queryString(filters);
  const data = useRef<Data>({ key, total: 0, units: [], pages: new Map(), loaded: false });
  const inflight = useRef(new Map<number, AbortController>());
  const [, setTick] = useState(0);
  const [counts, setLocalCounts] = useState<MatrixCounts | null>(null);
  const [error, setError] = useState<string | null>(null);
  const scroller = useRef<HTMLElement>(null);
  const [view, setView] = useState({ top: 0, height: 800 });
  const rerender = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => setPageTitle("Environments"), []);

  const fetchPage = useCallback(
    async (k: string, page: number, refresh = false) => {
      if (inflight.current.has(page) && !refresh) return;
      inflight.current.get(page)?.abort();
      const ac = new AbortController();
      inflight.current.set(page, ac);
      try {
        const qs = `${k ? `${k}&` : ""}offset=${page * PAGE}&limit=${PAGE}`;
        const a = await session.get<MatrixAnswer>(`/matrix?${qs}`, ac.signal);
        if (data.current.key !== k) return;
        const d = data.current;
        d.total = a.total;
        d.units = a.units;
        d.pages.set(page, a.rows);
        d.loaded = true;
        setError(null);
        setLocalCounts(a.counts);
        setCounts(a.counts);
        rerender();
      } catch (e) {
        if ((e as Error).name !== "AbortError" && data.current.key === k) setError((e as Error).message);
      } finally {
        if (inflight.current.get(page) === ac) inflight.current.delete(page);
      }
    },
    [rerender],
  );

  // A new filter: forget the pages, go back to the top, fetch the first page.
  useEffect(() => {
    for (const ac of inflight.current.values()) ac.abort();
    inflight.current.clear();
    const prev = data.current;
    data.current = { key, total: prev.total, units: prev.units, pages: new Map(), loaded: false };
    if (scroller.current) scroller.current.scrollTop = 0;
    setView((v) => ({ ...v, top: 0 }));
    const url = `${window.location.pathname}${key ? `?${key}` : ""}`;
    if (url !== `${window.location.pathname}${window.location.search}`) history.replaceState(null, "", url);
    void fetchPage(key, 0);
  }, [key, fetchPage]);

  // The viewport's size.
  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setView({ top: el.scrollTop, height: el.clientHeight });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const d = data.current;
  const first = Math.max(0, Math.floor(view.top / ROW_H) - OVERSCAN);
  const last = Math.min(d.total, Math.ceil((view.top + view.height) / ROW_H) + OVERSCAN);

  // Pages the visible rows need.
  useEffect(() => {
    if (!d.loaded) return;
    for (let p = Math.floor(first / PAGE); p <= Math.floor(Math.max(first, last - 1) / PAGE); p++)
      if (!d.pages.has(p)) void fetchPage(d.key, p);
  }, [first, last, d.loaded, d.key, d.pages, fetchPage]);

  // Live: refetch the pages on screen after changes; others are dropped and fetched on scroll.
  const visible = useRef({ first, last });
  visible.current = { first, last };
  useEffect(() => {
    const refresh = debounced(() => {
      const cur = data.current;
      const { first: f, last: l } = visible.current;
      const want = new Set<number>([0]);
      for (let p = Math.floor(f / PAGE); p <= Math.floor(Math.max(f, l - 1) / PAGE); p++) want.add(p);
      for (const p of [...cur.pages.keys()]) if (!want.has(p)) cur.pages.delete(p);
      for (const p of want) void fetchPage(cur.key, p, true);
    }, 300);
    const off = live.subscribe((e) => {
      if (e.type === "unit" || e.type === "environment" || e.type === "run" || e.type === "resync") refresh();
    });
    return () => {
      off();
      refresh.cancel();
    };
  }, [fetchPage]);

  // Time to interactive: the first rows are on screen and respond.
  useEffect(() => {
    if (d.loaded && firstPaint) {
      firstPaint = false;
      performance.mark("sluice:interactive");
      document.documentElement.dataset.interactive = "1";
    }
  });

  const onScroll = (e: Event) => {
    const el = e.currentTarget as HTMLElement;
    setView({ top: el.scrollTop, height: el.clientHeight });
  };

  const set = (patch: Partial<Filters>) => setFilters((f) => ({ ...f, ...patch }));

  const rows: { i: number; row: MatrixRow | undefined }[] = [];
  for (let i = first; i < last; i++) rows.push({ i, row: d.pages.get(Math.floor(i / PAGE))?.[i % PAGE] });

  const units = d.units;
  return (
    <main id="main" class="home">
      <h1 class="visually-hidden">Environments</h1>
      <Counts counts={counts} status={filters.status} onStatus={(s) => set({ status: s })} />
      <search>
        <form class="filters" onSubmit={(e) => e.preventDefault()}>
          <label>
            Environments
            <select value={filters.kind} onChange={(e) => set({ kind: e.currentTarget.value })}>
              <option value="">All</option>
              <option value="long-lived">Long-lived</option>
              <option value="preview">Previews</option>
            </select>
          </label>
          <label>
            Status
            <select value={filters.status} onChange={(e) => set({ status: e.currentTarget.value })}>
              {STATUS_OPTIONS.map((o) => (
                <option key={o.value} value={o.value}>
                  {o.label}
                </option>
              ))}
            </select>
          </label>
          <label class="grow">
            Search
            <input
              type="search"
              name="q"
              placeholder="environment, branch or revision"
              value={filters.q}
              onInput={(e) => set({ q: e.currentTarget.value })}
              autocomplete="off"
              spellcheck={false}
            />
          </label>
          <p class="muted showing" aria-live="polite">
            {d.loaded
              ? `${nf.format(d.total)} of ${nf.format(counts?.environments ?? d.total)} environments`
              : "Loading…"}
          </p>
        </form>
      </search>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <section
        class="matrix-scroll"
        ref={scroller}
        onScroll={onScroll}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable by keyboard
        tabIndex={0}
        aria-label="Environment matrix"
      >
        <table
          class="matrix"
          aria-rowcount={d.total + 1}
          aria-colcount={units.length + 1}
          data-loaded-query={d.loaded ? d.key : undefined}
          data-total={d.loaded ? d.total : undefined}
          style={{ width: `${ENV_W + units.length * CELL_W}px` }}
        >
          <thead>
            <tr aria-rowindex={1}>
              <th scope="col" class="envcol">
                Environment
              </th>
              {units.map((u) => (
                <th scope="col" key={u}>
                  {u}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {first > 0 && (
              <tr class="spacer" style={{ height: `${first * ROW_H}px` }}>
                <td colSpan={units.length + 1} />
              </tr>
            )}
            {rows.map(({ i, row }) =>
              row ? (
                <Row key={row.env.name} index={i} row={row} units={units} />
              ) : (
                <tr key={`p${i}`} class="row placeholder" aria-rowindex={i + 2}>
                  <th scope="row" class="envcol">
                    <span class="muted">…</span>
                  </th>
                  {units.map((u) => (
                    <td key={u} />
                  ))}
                </tr>
              ),
            )}
            {last < d.total && (
              <tr class="spacer" style={{ height: `${(d.total - last) * ROW_H}px` }}>
                <td colSpan={units.length + 1} />
              </tr>
            )}
          </tbody>
        </table>
        {d.loaded && d.total === 0 && (
          <p class="empty">
            {counts?.environments ? "No environment matches these filters." : "No environments yet."}
          </p>
        )}
      </section>
    </main>
  );
}

function Counts(props: { counts: MatrixCounts | null; status: string; onStatus: (s: string) => void }) {
  const c = props.counts;
  return (
    <section class="counts" aria-label="Counts">
      <div class="count-total">
        <strong>{c ? nf.format(c.environments) : "—"}</strong> environments
        {c && c.previews > 0 && <span class="muted"> ({nf.format(c.previews)} previews)</span>}
        <span class="muted"> · {c ? nf.format(c.cells) : "—"} units</span>
      </div>
      <div class="count-buttons">
        {HEALTH_ORDER.map((h) => (
          <button
            type="button"
            key={h}
            class={`count h-${h}`}
            aria-pressed={props.status === h}
            onClick={() => props.onStatus(props.status === h ? "" : h)}
            title={`Show environments with a ${h} unit`}
          >
            <span aria-hidden="true">{HEALTH_ICON[h]}</span> {h}{" "}
            <strong>{c ? nf.format(c.health[h]) : "—"}</strong>
          </button>
        ))}
        {(["OutOfSync", "Drifted"] as const).map((s) => (
          <button
            type="button"
            key={s}
            class="count"
            aria-pressed={props.status === s}
            onClick={() => props.onStatus(props.status === s ? "" : s)}
          >
            {SYNC_LABEL[s]} <strong>{c ? nf.format(c.sync[s]) : "—"}</strong>
          </button>
        ))}
      </div>
    </section>
  );
}

function Row(props: { index: number; row: MatrixRow; units: string[] }) {
  const { env, cells } = props.row;
  const now = Date.now();
  return (
    <tr class="row" aria-rowindex={props.index + 2} data-env={env.name}>
      <th scope="row" class="envcol">
        <a href={envPath(env.name)} class="env-name">
          {env.name}
        </a>
        <div class="meta">
          {env.kind === "preview" ? (
            <Tag kind="preview">preview</Tag>
          ) : env.protected ? (
            <Tag kind="protected" title="never destroyed by Sluice">
              protected
            </Tag>
          ) : null}
          {env.branch && <span title="branch">⎇ {env.branch}</span>}
          <span title={`created ${env.createdAt}`}>{age(env.createdAt, now)}</span>
          {env.expiresAt && (
            <span class="expiry" title={`expires ${env.expiresAt}`}>
              expires {relTime(env.expiresAt, now)}
            </span>
          )}
          {env.state === "destroying" && <Tag kind="warn">destroying</Tag>}
        </div>
      </th>
      {props.units.map((u) => (
        <Cell key={u} env={env.name} unit={u} cell={cells[u]} />
      ))}
    </tr>
  );
}

function Cell(props: { env: string; unit: string; cell: MatrixCell | undefined }) {
  const c = props.cell;
  if (!c)
    return (
      <td class="cell none">
        <span class="visually-hidden">no {props.unit} here</span>
      </td>
    );
  const problem = c.health !== "Healthy";
  return (
    <td
      class={`cell h-${c.health}`}
      data-unit={props.unit}
      data-health={c.health}
      data-sync={c.sync}
      data-reason={c.reason}
    >
      <a href={`${envPath(props.env)}#unit-${encodeURIComponent(props.unit)}`} title={c.message || c.reason}>
        <HealthBadge health={c.health} small />
        {c.suspended && <span class="tag tag-warn">suspended</span>}
        <span class="cell-line">
          <SyncLabel sync={c.sync} /> · <code>{shortRev(c.revision)}</code>
        </span>
        {problem && (
          <span class="cell-line reason">
            {c.reason}
            {c.retrying && <span class="muted"> · retrying</span>}
          </span>
        )}
      </a>
    </td>
  );
}
