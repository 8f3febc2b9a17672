/**
 * Events: the store's event log, newest first, filterable by environment (on the server), severity
 * and text (here). Live: every stream event fetches what was added since the newest one shown.
 */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { envPath, session } from "../api";
import { ErrorMessage, Loading } from "../components";
import { clock, relTime } from "../format";
import { debounced, live } from "../live";
import { setPageTitle } from "../summary";
import type { EventRecord } from "../types";

const KEEP = 1000;

export function EventsPage() {
  const params = new URLSearchParams(window.location.search);
  const [env, setEnv] = useState(params.get("env") ?? "");
  const [severity, setSeverity] = useState(params.get("severity") ?? "");
  const [text, setText] = useState(params.get("q") ?? "");
  const [paused, setPaused] = useState(false);
  const [events, setEvents] = useState<EventRecord[] | null>(null);
  const [fresh, setFresh] = useState<Set<number>>(new Set());
  const [error, setError] = useState<unknown>(null);
  const newest = useRef(0);
  /** Live additions wait for the first full load (they need its newest id). */
  const loaded = useRef(false);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  useEffect(() => setPageTitle("Events"), []);

  const envQuery = env.trim() ? `&env=${encodeURIComponent(env.trim())}` : "";

  const loadAll = useCallback(async () => {
    try {
      const a = await session.get<{ events: EventRecord[] }>(`/events?limit=500${envQuery}`);
      const list = a.events.slice().reverse();
      newest.current = list[0]?.id ?? 0;
      loaded.current = true;
      setEvents(list);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [envQuery]);

  const loadNew = useCallback(async () => {
    if (pausedRef.current || !loaded.current) return;
    try {
      const a = await session.get<{ events: EventRecord[] }>(
        `/events?sinceId=${newest.current}&limit=500${envQuery}`,
      );
      if (!a.events.length) return;
      const added = a.events.slice().reverse();
      newest.current = Math.max(newest.current, added[0]!.id);
      setEvents((cur) => {
        const have = new Set((cur ?? []).map((e) => e.id));
        return [...added.filter((e) => !have.has(e.id)), ...(cur ?? [])].slice(0, KEEP);
      });
      setFresh(new Set(added.map((e) => e.id)));
    } catch {
      // the next event tries again
    }
  }, [envQuery]);

  useEffect(() => {
    loaded.current = false;
    void loadAll();
    const later = debounced(() => void loadNew(), 250);
    const off = live.subscribe(() => later());
    return () => {
      off();
      later.cancel();
    };
  }, [loadAll, loadNew]);

  useEffect(() => {
    if (!paused) void loadNew();
  }, [paused, loadNew]);

  useEffect(() => {
    const p = new URLSearchParams();
    if (env) p.set("env", env);
    if (severity) p.set("severity", severity);
    if (text) p.set("q", text);
    const qs = p.toString();
    history.replaceState(null, "", `/events${qs ? `?${qs}` : ""}`);
  }, [env, severity, text]);

  const t = text.trim().toLowerCase();
  const shown = (events ?? []).filter(
    (e) =>
      (!severity || e.severity === severity) &&
      (!t || `${e.reason} ${e.message} ${e.env ?? ""} ${e.unit ?? ""}`.toLowerCase().includes(t)),
  );
  const now = Date.now();

  return (
    <main id="main" class="events">
      <h1>Events</h1>
      <search>
        <form class="filters" onSubmit={(e) => e.preventDefault()}>
          <label>
            Environment
            <input
              type="search"
              value={env}
              onChange={(e) => setEnv(e.currentTarget.value)}
              placeholder="all"
              autocomplete="off"
            />
          </label>
          <label>
            Severity
            <select value={severity} onChange={(e) => setSeverity(e.currentTarget.value)}>
              <option value="">Any</option>
              <option value="info">Info</option>
              <option value="warning">Warning</option>
              <option value="error">Error</option>
            </select>
          </label>
          <label class="grow">
            Text
            <input
              type="search"
              value={text}
              onInput={(e) => setText(e.currentTarget.value)}
              placeholder="reason or message"
              autocomplete="off"
            />
          </label>
          <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
            {paused ? "Resume live updates" : "Pause live updates"}
          </button>
        </form>
      </search>
      {error ? <ErrorMessage error={error} /> : null}
      {events === null ? (
        <Loading what="events" />
      ) : (
        <>
          <p class="muted" aria-live="polite">
            {shown.length} of {events.length} events{paused ? " (paused)" : ""}
          </p>
          <table class="eventlist">
            <caption class="visually-hidden">Events, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Severity</th>
                <th scope="col">Environment</th>
                <th scope="col">Unit</th>
                <th scope="col">Reason</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              {shown.slice(0, 500).map((e) => (
                <tr
                  key={e.id}
                  class={`sev-${e.severity}${fresh.has(e.id) ? " fresh" : ""}`}
                  data-event-id={e.id}
                >
                  <td title={clock(e.at)}>{relTime(e.at, now)}</td>
                  <td>
                    <span class={`sev sev-${e.severity}`}>{e.severity}</span>
                  </td>
                  <td>{e.env ? <a href={envPath(e.env)}>{e.env}</a> : <span class="muted">—</span>}</td>
                  <td>{e.unit ?? <span class="muted">—</span>}</td>
                  <td>
                    <strong>{e.reason}</strong>
                  </td>
                  <td class="msg">{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </main>
  );
}
