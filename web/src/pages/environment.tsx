/**
 * One environment: its units as a dependency graph, each unit's objects with health, smoke tests,
 * the last change's diff, the runs timeline with stages, URLs, and the operator's actions.
 */
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError, session } from "../api";
import {
  ConfirmDialog,
  ErrorMessage,
  HealthBadge,
  Loading,
  type Notice,
  NoticeBar,
  ObjectHealthBadge,
  SyncLabel,
  Tag,
} from "../components";
import { age, clock, ms, relTime, shortRev } from "../format";
import { DependencyGraph } from "../graph";
import { debounced, live } from "../live";
import { setPageTitle } from "../summary";
import type { DetailUnit, EnvironmentDetail, RunRecord } from "../types";

type Dialog =
  | { kind: "reconcile"; unit: string }
  | { kind: "suspend" | "resume"; unit: string }
  | { kind: "rollback" | "promote" | "extend" | "destroy" };

export function EnvironmentPage(props: { name: string }) {
  const name = props.name;
  const [detail, setDetail] = useState<EnvironmentDetail | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [dialog, setDialog] = useState<Dialog | null>(null);
  const operator = session.isOperator;

  const load = useCallback(async () => {
    try {
      setDetail(await session.get<EnvironmentDetail>(`/environments/${encodeURIComponent(name)}`));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [name]);

  useEffect(() => {
    setDetail(null);
    setError(null);
    setPageTitle(name);
    void load();
    const later = debounced(() => void load(), 400);
    const off = live.subscribe((e) => {
      if (e.type === "resync" || ("env" in e && e.env === name)) later();
    });
    return () => {
      off();
      later.cancel();
    };
  }, [name, load]);

  // Scroll to #unit-… once the units are there.
  useEffect(() => {
    const h = window.location.hash.slice(1);
    if (detail && h) document.getElementById(h)?.scrollIntoView();
  }, [detail !== null]);

  const act = async <T,>(fn: () => Promise<T>, done: string | ((answer: T) => string)) => {
    const answer = await fn();
    setNotice({ kind: "ok", text: typeof done === "string" ? done : done(answer) });
    void load();
  };

  if (error instanceof ApiError && error.status === 404)
    return (
      <main id="main">
        <h1>{name}</h1>
        <p>
          There is no environment {name}. <a href="/">Back to all environments</a>
        </p>
      </main>
    );
  if (!detail)
    return (
      <main id="main">
        <h1>{name}</h1>
        {error ? <ErrorMessage error={error} /> : <Loading what="the environment" />}
      </main>
    );
  const env = detail.environment;
  const urls = detail.units.flatMap((u) =>
    u.urls.filter((x) => /^https?:\/\//i.test(x.url)).map((x) => ({ unit: u.name, ...x })),
  );
  const unitPath = (u: string, a: string) =>
    `/environments/${encodeURIComponent(name)}/units/${encodeURIComponent(u)}/${a}`;

  return (
    <main id="main" class="envpage">
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/">Environments</a> <span aria-hidden="true">›</span> <span aria-current="page">{name}</span>
      </nav>
      <header class="env-head">
        <h1>
          {env.name} <HealthBadge health={env.health} />
        </h1>
        <dl class="facts">
          <div>
            <dt>Kind</dt>
            <dd>
              {env.kind === "preview" ? "preview" : "long-lived"}
              {env.protected && <Tag kind="protected">protected</Tag>}
            </dd>
          </div>
          <div>
            <dt>Branch</dt>
            <dd>{env.branch ?? "—"}</dd>
          </div>
          <div>
            <dt>Revision</dt>
            <dd>
              <code>{shortRev(env.revision ?? detail.units[0]?.status?.revision)}</code>
            </dd>
          </div>
          <div>
            <dt>Target</dt>
            <dd>{env.target}</dd>
          </div>
          <div>
            <dt>Age</dt>
            <dd title={env.createdAt}>{age(env.createdAt)}</dd>
          </div>
          {env.expiresAt && (
            <div>
              <dt>Expires</dt>
              <dd title={env.expiresAt}>{relTime(env.expiresAt)}</dd>
            </div>
          )}
          {env.state !== "active" && (
            <div>
              <dt>State</dt>
              <dd>{env.state}</dd>
            </div>
          )}
        </dl>
        {urls.length > 0 && (
          <ul class="urls" aria-label="URLs">
            {urls.map((u) => (
              <li key={`${u.unit}/${u.name}`}>
                <a href={u.url} target="_blank" rel="noopener noreferrer" data-external>
                  {u.url}
                </a>{" "}
                <span class="muted">
                  ({u.unit}: {u.name})
                </span>
              </li>
            ))}
          </ul>
        )}
        {operator && (
          <div class="actions" role="toolbar" aria-label="Environment actions">
            <button type="button" onClick={() => setDialog({ kind: "rollback" })}>
              Roll back
            </button>
            <button type="button" onClick={() => setDialog({ kind: "promote" })}>
              Promote…
            </button>
            {env.expiresAt && (
              <button type="button" onClick={() => setDialog({ kind: "extend" })}>
                Extend…
              </button>
            )}
            {!env.protected && (
              <button type="button" class="danger" onClick={() => setDialog({ kind: "destroy" })}>
                Destroy…
              </button>
            )}
          </div>
        )}
      </header>
      <NoticeBar notice={notice} onClose={() => setNotice(null)} />

      <section aria-labelledby="units-h">
        <h2 id="units-h">Units</h2>
        {detail.units.length ? (
          <DependencyGraph units={detail.units} />
        ) : (
          <p class="muted">No units have been reconciled in this environment yet.</p>
        )}
      </section>

      <section aria-labelledby="runs-h">
        <h2 id="runs-h">Recent runs</h2>
        <Timeline runs={detail.runs} />
      </section>

      {detail.units.map((u) => (
        <UnitSection
          key={u.name}
          unit={u}
          operator={operator}
          onAction={(kind) => setDialog({ kind, unit: u.name })}
        />
      ))}

      {dialog && (
        <ActionDialog
          dialog={dialog}
          env={name}
          onClose={() => setDialog(null)}
          run={async (form) => {
            const d = dialog;
            if (d.kind === "reconcile")
              return act(
                () =>
                  session.post(unitPath(d.unit, "reconcile"), {
                    withSource: form.get("withSource") === "on",
                  }),
                `Reconcile of ${d.unit} queued.`,
              );
            if (d.kind === "suspend" || d.kind === "resume")
              return act(
                () => session.post(unitPath(d.unit, d.kind)),
                `${d.unit} ${d.kind === "suspend" ? "suspended" : "resumed"}.`,
              );
            const base = `/environments/${encodeURIComponent(name)}`;
            if (d.kind === "rollback")
              return act(
                () => session.post<{ rolledBack?: { mode?: string; detail?: string } }>(`${base}/rollback`),
                (a) => `Rolled back ${name}${a?.rolledBack?.detail ? `: ${a.rolledBack.detail}` : "."}`,
              );
            if (d.kind === "promote") {
              const to = String(form.get("to") ?? "").trim();
              if (!to) throw new Error("choose the environment to promote to");
              return act(
                () =>
                  session.post<{ promoted?: { mode?: string; commit?: string } }>(`${base}/promote`, { to }),
                (a) =>
                  `Promoted ${name} to ${to}${a?.promoted?.commit ? ` (${a.promoted.mode ?? "commit"} ${a.promoted.commit.slice(0, 10)})` : "."}`,
              );
            }
            if (d.kind === "extend") {
              const duration = String(form.get("duration") ?? "8h");
              return act(
                () => session.post(`${base}/extend`, { duration }),
                `${name} extended by ${duration}.`,
              );
            }
            if (String(form.get("confirm") ?? "") !== name) throw new Error(`type ${name} to confirm`);
            await session.del(base);
            setNotice({ kind: "ok", text: `${name} is being destroyed.` });
            void load();
          }}
        />
      )}
    </main>
  );
}

function UnitSection(props: {
  unit: DetailUnit;
  operator: boolean;
  onAction: (kind: "reconcile" | "suspend" | "resume") => void;
}) {
  const u = props.unit;
  const s = u.status;
  const changed = u.lastChange?.entries ?? [];
  return (
    <section class="unit" id={`unit-${u.name}`} aria-labelledby={`unit-h-${u.name}`} data-unit={u.name}>
      <header class="unit-head">
        <h2 id={`unit-h-${u.name}`}>
          {u.name} <HealthBadge health={u.health} /> <SyncLabel sync={u.sync} />
          {s?.suspended && <Tag kind="warn">suspended</Tag>}
          {u.retrying && <Tag kind="warn">retrying</Tag>}
        </h2>
        {props.operator && (
          <div class="actions" role="toolbar" aria-label={`Actions for ${u.name}`}>
            <button type="button" onClick={() => props.onAction("reconcile")}>
              Reconcile now
            </button>
            {s?.suspended ? (
              <button type="button" onClick={() => props.onAction("resume")}>
                Resume
              </button>
            ) : (
              <button type="button" onClick={() => props.onAction("suspend")}>
                Suspend
              </button>
            )}
          </div>
        )}
      </header>
      {s && (
        <p class={`status-line h-${u.health}`}>
          <strong>{s.reason}</strong>: {s.message.split("\n")[0]}
          <span class="muted">
            {" "}
            · revision <code>{shortRev(s.revision)}</code>
            {s.lastAppliedRevision && s.lastAppliedRevision !== s.revision && (
              <>
                {" "}
                (applied <code>{shortRev(s.lastAppliedRevision)}</code>)
              </>
            )}
            {" · "}updated {relTime(s.updatedAt)}
          </span>
        </p>
      )}
      {u.dependsOn.length > 0 && <p class="muted">Depends on {u.dependsOn.join(", ")}.</p>}
      <div class="unit-grid">
        <div>
          <h3>Objects</h3>
          {u.objects.length ? (
            <table class="objects">
              <caption class="visually-hidden">Objects of {u.name}</caption>
              <thead>
                <tr>
                  <th scope="col">Object</th>
                  <th scope="col">Health</th>
                  <th scope="col">Reason</th>
                </tr>
              </thead>
              <tbody>
                {u.objects.map((o) => (
                  <tr key={o.subject}>
                    <td>
                      <code>{o.subject}</code>
                    </td>
                    <td>
                      <ObjectHealthBadge health={o.health} />
                    </td>
                    <td class="muted">{o.message}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p class="muted">No objects applied.</p>
          )}
          {u.objectHealthFrom === "last-run" && (
            <p class="muted small">Object health from the last run's health check.</p>
          )}
          {u.objectHealthFrom === "status" && (
            <p class="muted small">Object health from the unit's status.</p>
          )}
        </div>
        <div>
          <h3>Smoke tests</h3>
          {u.smoke ? (
            <p>
              <span class={`badge small ${u.smoke.result === "succeeded" ? "h-Healthy" : "h-Degraded"}`}>
                {u.smoke.result === "succeeded" ? "passed" : u.smoke.result}
              </span>{" "}
              in {ms(u.smoke.ms)}{" "}
              <span class="muted">
                · revision <code>{shortRev(u.smoke.revision)}</code> · {relTime(u.smoke.at)}
              </span>
              {u.smoke.message && <span class="block error-text">{u.smoke.message}</span>}
            </p>
          ) : (
            <p class="muted">No smoke-test results.</p>
          )}
        </div>
      </div>
      <h3>Last change</h3>
      {u.lastChange ? (
        changed.length ? (
          <div class="changes">
            <p class="muted">
              Revision <code>{shortRev(u.lastChange.revision)}</code>, {relTime(u.lastChange.at)}
              {u.lastChange.unchanged > 0 && `; ${u.lastChange.unchanged} unchanged`}
            </p>
            {changed.map((c) => {
              const head = (
                <>
                  <code>{c.subject}</code> <span class={`action a-${c.action}`}>{c.action}</span>
                  {c.reason && <span class="muted"> — {c.reason}</span>}
                </>
              );
              return c.diff ? (
                <details key={c.subject} open={changed.length <= 3}>
                  <summary>{head}</summary>
                  <Diff text={c.diff} />
                </details>
              ) : (
                <p key={c.subject} class="change-line">
                  {head}
                </p>
              );
            })}
          </div>
        ) : (
          <p class="muted">The last apply changed nothing.</p>
        )
      ) : u.lastRun ? (
        <p class="muted">
          Last run {u.lastRun.result}:{" "}
          {Object.entries(u.lastRun.summary)
            .map(([k, n]) => `${n} ${k}`)
            .join(", ") || "nothing changed"}
          . (Diffs are kept from the changes this server has seen.)
        </p>
      ) : (
        <p class="muted">No runs yet.</p>
      )}
    </section>
  );
}

function Diff(props: { text: string }) {
  return (
    <pre class="diff">
      {props.text.split("\n").map((l, i) => (
        <span
          key={i}
          class={
            l.startsWith("+++") || l.startsWith("---")
              ? "d-file"
              : l.startsWith("+")
                ? "d-add"
                : l.startsWith("-")
                  ? "d-del"
                  : l.startsWith("@@")
                    ? "d-hunk"
                    : undefined
          }
        >
          {l}
          {"\n"}
        </span>
      ))}
    </pre>
  );
}

function Timeline(props: { runs: RunRecord[] }) {
  if (!props.runs.length) return <p class="muted">No runs yet.</p>;
  return (
    <ol class="timeline">
      {props.runs.map((r) => {
        const total = Math.max(
          1,
          r.stages.reduce((a, s) => a + s.ms, 0),
        );
        return (
          <li key={r.id} class={`run r-${r.result}`}>
            <span class="run-time" title={r.startedAt}>
              {clock(r.startedAt)}
            </span>
            <span class="run-unit">{r.unit}</span>
            <span class={`badge small ${runClass(r.result)}`}>{r.result}</span>
            <span class="run-trigger muted">{r.trigger}</span>
            <span class="stages" role="img" aria-label={stageText(r)}>
              {r.stages.map((s, i) => (
                <span
                  key={i}
                  class={`stage st-${s.result}`}
                  style={{ flexGrow: String(Math.max(s.ms / total, 0.04)) }}
                  title={`${s.name}: ${s.result}, ${ms(s.ms)}${s.message ? ` — ${s.message}` : ""}`}
                >
                  {s.name}
                </span>
              ))}
            </span>
            <span class="run-msg muted">
              {r.result === "failed"
                ? `${r.reason ?? ""}: ${(r.message ?? "").split("\n")[0]}`
                : shortRev(r.revision)}
            </span>
          </li>
        );
      })}
    </ol>
  );
}

function runClass(r: RunRecord["result"]): string {
  return r === "succeeded"
    ? "h-Healthy"
    : r === "running"
      ? "h-Progressing"
      : r === "failed"
        ? "h-Failed"
        : "h-Unknown";
}

function stageText(r: RunRecord): string {
  return r.stages.length
    ? `Stages: ${r.stages.map((s) => `${s.name} ${s.result} in ${ms(s.ms)}`).join(", ")}`
    : "No stages recorded";
}

function ActionDialog(props: {
  dialog: Dialog;
  env: string;
  onClose: () => void;
  run: (form: FormData) => Promise<void>;
}) {
  const d = props.dialog;
  const [targets, setTargets] = useState<string[]>([]);
  useEffect(() => {
    if (d.kind !== "promote") return;
    void session
      .get<{ environments: { name: string; state: string }[] }>("/environments")
      .then((a) =>
        setTargets(
          a.environments.filter((e) => e.state === "active" && e.name !== props.env).map((e) => e.name),
        ),
      )
      .catch(() => setTargets([]));
  }, [d.kind, props.env]);
  const common = { onClose: props.onClose, onConfirm: props.run };
  switch (d.kind) {
    case "reconcile":
      return (
        <ConfirmDialog
          {...common}
          title={`Reconcile ${d.unit} in ${props.env} now?`}
          confirmLabel="Reconcile"
        >
          <label class="check">
            <input type="checkbox" name="withSource" defaultChecked /> Fetch the branch first
          </label>
        </ConfirmDialog>
      );
    case "suspend":
      return (
        <ConfirmDialog {...common} title={`Suspend ${d.unit} in ${props.env}?`} confirmLabel="Suspend">
          <p>Sluice stops reconciling this unit until it is resumed. What runs keeps running.</p>
        </ConfirmDialog>
      );
    case "resume":
      return (
        <ConfirmDialog {...common} title={`Resume ${d.unit} in ${props.env}?`} confirmLabel="Resume">
          <p>Sluice reconciles it again at once.</p>
        </ConfirmDialog>
      );
    case "rollback":
      return (
        <ConfirmDialog {...common} title={`Roll back ${props.env}?`} confirmLabel="Roll back">
          <p>
            Switches traffic back to the previous version where a rollout still runs it; otherwise reverts the
            last commit of the environment's branch.
          </p>
        </ConfirmDialog>
      );
    case "promote":
      return (
        <ConfirmDialog {...common} title={`Promote ${props.env}`} confirmLabel="Promote">
          <label>
            Promote to
            <select name="to" required>
              <option value="">Choose an environment</option>
              {targets.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </label>
        </ConfirmDialog>
      );
    case "extend":
      return (
        <ConfirmDialog {...common} title={`Extend ${props.env}`} confirmLabel="Extend">
          <label>
            Keep it for another
            <select name="duration" defaultValue="8h">
              <option value="1h">1 hour</option>
              <option value="4h">4 hours</option>
              <option value="8h">8 hours</option>
              <option value="24h">1 day</option>
              <option value="72h">3 days</option>
            </select>
          </label>
        </ConfirmDialog>
      );
    case "destroy":
      return (
        <ConfirmDialog {...common} title={`Destroy ${props.env}?`} confirmLabel="Destroy" danger>
          <p>Everything the environment runs is deleted. It comes back when its branch moves.</p>
          <label>
            Type <strong>{props.env}</strong> to confirm
            <input name="confirm" autocomplete="off" spellcheck={false} required />
          </label>
        </ConfirmDialog>
      );
  }
}
