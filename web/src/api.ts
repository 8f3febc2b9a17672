/**
 * The API client. The token lives in this tab only (sessionStorage) and is sent as an
 * `Authorization` header, never as a cookie: a cross-site page cannot make the browser send it,
 * so no request needs a CSRF defence. The event stream, which EventSource cannot give a header,
 * opens with a one-time ticket bought with the token (see live.ts).
 */
import type { WhoAmI } from "./types";

const KEY = "sluice.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Listener = () => void;

class Session {
  private token: string | null = null;
  who: WhoAmI | null = null;
  private readonly listeners = new Set<Listener>();

  constructor() {
    try {
      this.token = sessionStorage.getItem(KEY);
    } catch {
      this.token = null;
    }
  }

  get signedIn(): boolean {
    return this.token !== null && this.who !== null;
  }

  get hasToken(): boolean {
    return this.token !== null;
  }

  get isOperator(): boolean {
    return this.who?.role === "operator";
  }

  onChange(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Checks the token with the server and keeps it for this tab. */
  async signIn(token: string): Promise<WhoAmI> {
    const t = token.trim();
    if (!/^[A-Za-z0-9._~+/=-]{1,512}$/.test(t)) throw new ApiError(400, "BadRequest", "that is not a token");
    const who = await this.request<WhoAmI>("GET", "/whoami", undefined, undefined, t);
    this.token = t;
    this.who = who;
    try {
      sessionStorage.setItem(KEY, t);
    } catch {
      // private mode: the token lives until the tab reloads
    }
    this.changed();
    return who;
  }

  /** Restores the tab's session; false when there is none or the token no longer works. */
  async resume(): Promise<boolean> {
    if (!this.token) return false;
    try {
      this.who = await this.get<WhoAmI>("/whoami");
      this.changed();
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return false;
      throw e;
    }
  }

  signOut(): void {
    this.token = null;
    this.who = null;
    try {
      sessionStorage.removeItem(KEY);
    } catch {
      // nothing kept
    }
    this.changed();
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>("GET", path, undefined, signal);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", path, body ?? {});
  }

  del<T>(path: string): Promise<T> {
    return this.request<T>("DELETE", path);
  }

  private async request<T>(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    token = this.token,
  ): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(`/api/v1${path}`, {
        method,
        headers,
        credentials: "omit",
        cache: "no-store",
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      throw new ApiError(0, "Unreachable", "the Sluice server cannot be reached");
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      const e = new ApiError(res.status, err?.code ?? `HTTP${res.status}`, err?.message ?? res.statusText);
      // A token that stopped working (revoked) ends the session; a wrong token at sign-in does not.
      if (res.status === 401 && token === this.token && this.token !== null) this.signOut();
      throw e;
    }
    return json as T;
  }
}

export const session = new Session();

export function envPath(env: string): string {
  return `/environments/${encodeURIComponent(env)}`;
}
