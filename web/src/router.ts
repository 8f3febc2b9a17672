/** A tiny history router: real paths (the server answers index.html for each page). */
import { useLayoutEffect, useState } from "preact/hooks";

export interface Location {
  path: string;
  query: URLSearchParams;
  hash: string;
}

function current(): Location {
  return {
    path: window.location.pathname,
    query: new URLSearchParams(window.location.search),
    hash: window.location.hash.slice(1),
  };
}

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => {
  for (const l of listeners) l();
});

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  if (to === `${window.location.pathname}${window.location.search}${window.location.hash}`) return;
  if (opts.replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  for (const l of listeners) l();
  if (!opts.replace && !to.includes("#")) window.scrollTo(0, 0);
}

export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useLayoutEffect(() => {
    const l = () => setLoc(current());
    listeners.add(l);
    // A navigation between the first render and this subscription is not lost.
    l();
    return () => {
      listeners.delete(l);
    };
  }, []);
  return loc;
}

/** Same-origin link clicks (without modifier keys) become history navigation. */
export function installLinkInterceptor(): void {
  document.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.("a");
    if (!a || a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
    const href = a.getAttribute("href");
    if (!href?.startsWith("/") || href.startsWith("//") || href.startsWith("/api/")) return;
    e.preventDefault();
    navigate(href);
    const hash = href.split("#")[1];
    if (hash) requestAnimationFrame(() => document.getElementById(hash)?.scrollIntoView());
  });
}
