/** The dashboard's shell: session, live stream, header with the fleet's state, and the pages. */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { session } from "./api";
import { HealthBadge } from "./components";
import { nf } from "./format";
import { type LiveState, live } from "./live";
import { EnvironmentPage } from "./pages/environment";
import { EventsPage } from "./pages/events";
import { HomePage } from "./pages/home";
import { ImagesPage } from "./pages/images";
import { LoginPage } from "./pages/login";
import { installLinkInterceptor, navigate, useLocation } from "./router";
import { onCounts, overall, startSummary } from "./summary";
import type { MatrixCounts } from "./types";
import "./style.css";

function useSession(): number {
  const [v, setV] = useState(0);
  useEffect(() => session.onChange(() => setV((x) => x + 1)), []);
  return v;
}

function App() {
  const loc = useLocation();
  useSession();
  const [checked, setChecked] = useState(!session.hasToken);
  const [bootError, setBootError] = useState<string | null>(null);

  useEffect(() => {
    if (!session.hasToken) return;
    session
      .resume()
      .then(() => setChecked(true))
      .catch((e: Error) => {
        setBootError(e.message);
        setChecked(true);
      });
  }, []);

  useEffect(() => {
    if (session.signedIn) {
      live.start();
      startSummary();
    } else live.stop();
  }, [session.signedIn]);

  if (!checked) return <p class="boot muted">Loading…</p>;
  if (!session.signedIn) {
    if (bootError)
      return (
        <p class="boot error" role="alert">
          {bootError}
        </p>
      );
    if (loc.path !== "/login")
      return <Redirect to={`/login?next=${encodeURIComponent(`${loc.path}${window.location.search}`)}`} />;
    return <LoginPage next={loc.query.get("next") ?? "/"} />;
  }
  if (loc.path === "/login") return <Redirect to={loc.query.get("next") ?? "/"} />;

  const envMatch = /^\/environments\/([^/]+)\/?$/.exec(loc.path);
  let page = <NotFound />;
  if (loc.path === "/" || loc.path === "/index.html") page = <HomePage />;
  else if (envMatch) page = <EnvironmentPage key={envMatch[1]} name={decodeURIComponent(envMatch[1]!)} />;
  else if (loc.path === "/events") page = <EventsPage />;
  else if (loc.path === "/images") page = <ImagesPage />;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <Header path={loc.path} />
      {page}
    </>
  );
}

function Header(props: { path: string }) {
  const [counts, setCounts] = useState<MatrixCounts | null>(null);
  const [state, setState] = useState<LiveState>(live.state);
  useEffect(() => onCounts(setCounts), []);
  useEffect(() => live.onState(setState), []);
  const o = overall(counts);
  const link = (href: string, label: string) => (
    <a
      href={href}
      aria-current={
        props.path === href || (href === "/" && props.path.startsWith("/environments/")) ? "page" : undefined
      }
    >
      {label}
    </a>
  );
  return (
    <header class="top">
      <a href="/" class="brand" aria-label="Sluice home">
        <img src="/favicon.svg" alt="" width="22" height="22" /> Sluice
      </a>
      <nav aria-label="Main">
        {link("/", "Environments")}
        {link("/events", "Events")}
        {link("/images", "Images")}
      </nav>
      <div class="fleet" aria-live="polite">
        {o && <HealthBadge health={o} small />}
        {counts && (
          <span class="muted small">
            {nf.format(counts.environments)} env · {nf.format(counts.cells)} units
          </span>
        )}
      </div>
      <span class={`live live-${state}`} title="Live updates">
        <span aria-hidden="true">●</span>{" "}
        {state === "live" ? "live" : state === "off" ? "offline" : "reconnecting…"}
      </span>
      <span class="who">
        {session.who?.name} <span class="tag">{session.who?.role}</span>
      </span>
      <button
        type="button"
        class="link"
        onClick={() => {
          session.signOut();
          navigate("/login");
        }}
      >
        Sign out
      </button>
    </header>
  );
}

function Redirect(props: { to: string }) {
  useEffect(() => {
    const to = props.to.startsWith("/") && !props.to.startsWith("//") ? props.to : "/";
    navigate(to, { replace: true });
  }, [props.to]);
  return null;
}

function NotFound() {
  return (
    <main id="main">
      <h1>Not found</h1>
      <p>
        <a href="/">Back to all environments</a>
      </p>
    </main>
  );
}

installLinkInterceptor();
render(<App />, document.getElementById("app")!);
