/**
 * Images: image repositories with their last scan, policies with their latest image, automations
 * with their last commit (like `flux get image all`), from `GET /api/v1/images`. Operators can ask
 * for a scan now (`POST /api/v1/images/scan`). Nothing configured (or a server without the route)
 * says so.
 */
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError, session } from "../api";
import { describeFailure, ErrorMessage, Loading, type Notice, NoticeBar } from "../components";
import { relTime } from "../format";
import { debounced, live } from "../live";
import { setPageTitle } from "../summary";
import type { ImagesAnswer } from "../types";

export function ImagesPage() {
  const [data, setData] = useState<ImagesAnswer | null>(null);
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [scanning, setScanning] = useState(false);

  const load = useCallback(async () => {
    try {
      setData(await session.get<ImagesAnswer>("/images"));
      setMissing(false);
      setError(null);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setMissing(true);
      else setError(e);
    }
  }, []);

  useEffect(() => {
    setPageTitle("Images");
    void load();
    const later = debounced(() => void load(), 1000);
    const off = live.subscribe(() => later());
    return () => {
      off();
      later.cancel();
    };
  }, [load]);

  const scan = async () => {
    setScanning(true);
    try {
      const a = await session.post<{ scanned: unknown }>("/images/scan");
      const n = Array.isArray(a.scanned) ? a.scanned.length : undefined;
      setNotice({
        kind: "ok",
        text: n === undefined ? "Scan done." : `Scanned ${n} repositor${n === 1 ? "y" : "ies"}.`,
      });
      void load();
    } catch (e) {
      setNotice({ kind: "error", text: describeFailure("Scan", e) });
    } finally {
      setScanning(false);
    }
  };

  const repos = data?.repositories ?? [];
  const policies = data?.policies ?? [];
  const automations = data?.automations ?? [];
  const empty = missing || (data && !repos.length && !policies.length && !automations.length);
  return (
    <main id="main" class="images">
      <h1>Images</h1>
      {error ? <ErrorMessage error={error} /> : null}
      {!data && !missing && !error && <Loading what="image automation" />}
      {empty && (
        <p class="empty" data-empty="images">
          No image automation configured. Add <code>ImageRepository</code>, <code>ImagePolicy</code> and{" "}
          <code>ImageUpdateAutomation</code> objects to the configuration to see them here.
        </p>
      )}
      {!empty && data && session.isOperator && (
        <div class="actions">
          <button type="button" onClick={scan} disabled={scanning}>
            {scanning ? "Scanning…" : "Scan registries now"}
          </button>
        </div>
      )}
      <NoticeBar notice={notice} onClose={() => setNotice(null)} />
      {repos.length > 0 && (
        <section aria-labelledby="repos-h">
          <h2 id="repos-h">Repositories</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Image</th>
                <th scope="col">Tags</th>
                <th scope="col">Latest tags</th>
                <th scope="col">Last scan</th>
                <th scope="col">Ready</th>
              </tr>
            </thead>
            <tbody>
              {repos.map((r) => (
                <tr key={r.name}>
                  <td>{r.name}</td>
                  <td>
                    <code>{r.image}</code>
                  </td>
                  <td>{r.count}</td>
                  <td>
                    <code>{(r.latestTags ?? []).slice(0, 3).join(", ") || "—"}</code>
                  </td>
                  <td title={r.scannedAt ?? undefined}>{relTime(r.scannedAt)}</td>
                  <td>
                    <Ready ok={r.ok} message={r.message} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      {policies.length > 0 && (
        <section aria-labelledby="policies-h">
          <h2 id="policies-h">Policies</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Repository</th>
                <th scope="col">Latest image</th>
                <th scope="col">Previous</th>
                <th scope="col">Ready</th>
              </tr>
            </thead>
            <tbody>
              {policies.map((p) => (
                <tr key={p.name}>
                  <td>{p.name}</td>
                  <td>{p.repository}</td>
                  <td>
                    <code>{p.latestImage ?? "—"}</code>
                  </td>
                  <td>
                    <code class="muted">{p.previousImage ?? "—"}</code>
                  </td>
                  <td>
                    <Ready ok={p.ok} message={p.message} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      {automations.length > 0 && (
        <section aria-labelledby="auto-h">
          <h2 id="auto-h">Automations</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Source</th>
                <th scope="col">Last commit</th>
                <th scope="col">Last push</th>
                <th scope="col">Last run</th>
                <th scope="col">Ready</th>
              </tr>
            </thead>
            <tbody>
              {automations.map((a) => (
                <tr key={a.name}>
                  <td>{a.name}</td>
                  <td>{a.source}</td>
                  <td>
                    <code>{a.lastCommit ? a.lastCommit.slice(0, 10) : "—"}</code>
                  </td>
                  <td title={a.lastPushed ?? undefined}>{relTime(a.lastPushed)}</td>
                  <td title={a.lastRunAt ?? undefined}>{relTime(a.lastRunAt)}</td>
                  <td>
                    <Ready ok={a.ok} message={a.message} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </main>
  );
}

function Ready(props: { ok: boolean; message: string }) {
  return (
    <span>
      <span class={`badge small ${props.ok ? "h-Healthy" : "h-Failed"}`}>{props.ok ? "True" : "False"}</span>{" "}
      <span class="muted">{props.message}</span>
    </span>
  );
}
