/** Sign in with an API token (viewer or operator); it is kept for this browser tab only. */
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, session } from "../api";
import { navigate } from "../router";
import { setPageTitle } from "../summary";

export function LoginPage(props: { next: string }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    setPageTitle("Sign in");
    input.current?.focus();
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    const token = input.current?.value ?? "";
    setBusy(true);
    setError(null);
    try {
      await session.signIn(token);
      navigate(props.next.startsWith("/") && !props.next.startsWith("//") ? props.next : "/", {
        replace: true,
      });
    } catch (err) {
      setBusy(false);
      setError(
        err instanceof ApiError && err.status === 401
          ? "That token is not valid."
          : err instanceof ApiError
            ? err.message
            : "Signing in failed.",
      );
    }
  };
  return (
    <main id="main" class="login">
      <form onSubmit={submit} class="login-box" aria-labelledby="login-h">
        <h1 id="login-h">Sign in to Sluice</h1>
        <label for="token">API token</label>
        <input
          id="token"
          ref={input}
          type="password"
          name="token"
          autocomplete="off"
          spellcheck={false}
          required
          aria-describedby="token-help"
          aria-invalid={error ? true : undefined}
        />
        <p id="token-help" class="muted small">
          A viewer or operator token. <code>sluice serve</code> writes the first operator token to{" "}
          <code>operator-token</code> in its state directory. The token stays in this tab and is sent only to
          this server.
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
