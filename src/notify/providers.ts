/**
 * One delivery of one event to one provider. Formats:
 *
 * - generic: POST the event as JSON (Flux's shape), with `Gotk-Component: <controller>`;
 * - generic-hmac: the same plus `X-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the
 *   secret's token>` (Flux's format: `<hash-function>=<hex>`);
 * - slack: an incoming-webhook message `{text, attachments: [{color, author_name, text, fields}]}`
 *   (plus channel/username when set; a bot token, if any, as a bearer token for chat.postMessage);
 * - github/gitlab: a commit status on the event's revision through the forge clients (success for
 *   info, failure for error; progressing events are not sent).
 *
 * A failure says whether retrying can help (network, timeout, 408, 429, 5xx) or not.
 */
import { createHmac } from "node:crypto";
import { createForge, type Forge } from "../forges/index.js";
import type { ResolvedProvider } from "./alerts.js";
import { ENV_KEY, type NotificationEvent, REVISION_KEY } from "./types.js";

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = "DeliveryError";
  }
}

export interface DeliveryContext {
  fetch: typeof fetch;
  signal: AbortSignal;
  /** A forge for a github/gitlab provider (cached by the notifier). */
  forge: (p: ResolvedProvider) => Forge;
}

export function signature(token: string, body: string | Buffer): string {
  return `sha256=${createHmac("sha256", token).update(body).digest("hex")}`;
}

/** `host` of an address: what failures may name (the path can hold a webhook secret). */
export function hostOf(address: string): string {
  try {
    return new URL(address).host;
  } catch {
    return "(invalid address)";
  }
}

async function post(
  p: ResolvedProvider,
  ctx: DeliveryContext,
  body: string,
  headers: Record<string, string>,
): Promise<string> {
  let res: Response;
  try {
    res = await ctx.fetch(p.address, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "user-agent": "sluice", ...p.headers, ...headers },
      signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(p.timeoutMs)]),
      redirect: "error",
    });
  } catch (e) {
    const why =
      (e as Error).name === "TimeoutError" ? `timed out after ${p.timeoutMs} ms` : "connection failed";
    throw new DeliveryError(`POST to ${hostOf(p.address)}: ${why}`, true);
  }
  const text = (await res.text().catch(() => "")).slice(0, 2048);
  if (!res.ok)
    throw new DeliveryError(
      `POST to ${hostOf(p.address)}: HTTP ${res.status}`,
      res.status === 408 || res.status === 429 || res.status >= 500,
      res.status,
    );
  return text;
}

function slackMessage(p: ResolvedProvider, ev: NotificationEvent) {
  const o = ev.involvedObject;
  const who = `${o.kind.toLowerCase()}/${o.name}.${o.namespace}`;
  const fields = Object.entries(ev.metadata ?? {}).map(([title, value]) => ({ title, value, short: false }));
  return {
    ...(p.channel ? { channel: p.channel } : {}),
    username: p.username ?? ev.reportingController,
    text: `${ev.severity === "error" ? "Error" : "Info"}: ${who}: ${ev.reason}`,
    attachments: [
      {
        color: ev.severity === "error" ? "danger" : "good",
        author_name: who,
        title: ev.reason,
        text: ev.message,
        mrkdwn_in: ["text"],
        fields,
      },
    ],
  };
}

/** The commit of a revision: `main@sha1:<sha>`, `main/<sha>` (Flux v1beta1) or a bare sha. */
export function commitOf(revision: string | undefined): string | undefined {
  const m = /(?:^|@sha1:|\/|@)([0-9a-f]{40})$/.exec(revision ?? "");
  return m?.[1];
}

export async function deliver(
  p: ResolvedProvider,
  ev: NotificationEvent,
  ctx: DeliveryContext,
): Promise<void> {
  switch (p.type) {
    case "generic":
    case "generic-hmac": {
      const body = JSON.stringify(ev);
      const headers: Record<string, string> = { "gotk-component": ev.reportingController };
      if (p.type === "generic-hmac") headers["x-signature"] = signature(p.token ?? "", body);
      await post(p, ctx, body, headers);
      return;
    }
    case "slack": {
      const text = await post(p, ctx, JSON.stringify(slackMessage(p, ev)), {
        ...(p.token ? { authorization: `Bearer ${p.token}` } : {}),
      });
      // chat.postMessage answers 200 with {"ok": false, "error": …} on failure.
      if (text.startsWith("{")) {
        let parsed: { ok?: unknown; error?: unknown } = {};
        try {
          parsed = JSON.parse(text) as typeof parsed;
        } catch {
          // not JSON: an incoming webhook's "ok"
        }
        if (parsed.ok === false)
          throw new DeliveryError(
            `slack ${hostOf(p.address)}: ${String(parsed.error ?? "error").slice(0, 100)}`,
            false,
          );
      }
      return;
    }
    case "github":
    case "gitlab": {
      if (ev.reason === "Progressing") return;
      const sha = commitOf(ev.metadata?.[REVISION_KEY]);
      if (!sha) throw new DeliveryError(`${p.type} commit status: the event has no revision`, false);
      const o = ev.involvedObject;
      const env = ev.metadata?.[ENV_KEY];
      const context = `${o.kind.toLowerCase()}/${o.name}${env ? `/${env}` : ""}`;
      try {
        await ctx
          .forge(p)
          .setStatus(
            sha,
            context,
            ev.severity === "error" ? "failure" : "success",
            `${ev.reason}: ${ev.message}`,
          );
      } catch (e) {
        const status = (e as { detail?: { status?: number } }).detail?.status;
        throw new DeliveryError(
          (e as Error).message,
          status === undefined || status === 408 || status === 429 || status >= 500,
          status,
        );
      }
      return;
    }
  }
}

export function forgeFor(p: ResolvedProvider): Forge {
  return createForge({
    type: p.type as "github" | "gitlab",
    address: p.address,
    token: p.token ?? "",
    timeoutMs: p.timeoutMs,
  });
}
