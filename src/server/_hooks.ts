/**
 * Webhook receivers: Flux `Receiver` objects served at `POST /hook/<digest>`, where the digest is
 * `receiverPath(namespace, name, token)` and the token is the `token` key of the Receiver's
 * `secretRef` Secret. What happens to a delivery, in order:
 *
 * 1. Unknown path → 404 (nothing logged: the path is a credential). A Receiver whose Secret or
 *    `token` key is missing is not served (a warning names the Receiver, never the token).
 * 2. Not POST → 405; suspended Receiver → 503; body over 1 MiB → 413.
 * 3. `verifyWebhook` (github: `X-Hub-Signature-256` HMAC; gitlab: `X-Gitlab-Token`; generic-hmac:
 *    `X-Signature` HMAC; generic: knowing the path) fails → 401, and a warning with the Receiver,
 *    the reason and the peer address — never the payload, the token or the path.
 * 4. Replays → **409 Conflict** (code `Conflict`), nothing triggered. A delivery is a replay when
 *    its delivery id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) was seen by this Receiver in the
 *    last 24 h, or — for github, whose delivery id is not covered by the signature — when the
 *    same signed body was. 409 rather than a quiet 200 so that a replay is visible as refused;
 *    GitHub and GitLab deliver each event once, so a legitimate sender only meets it on a manual
 *    "redeliver" of something already acted on. (generic-hmac signatures carry no nonce, so a
 *    captured generic-hmac request can be replayed; it can only re-trigger an idempotent fetch.)
 * 5. GitHub `ping` → 200 `{"ping": true}`. An event not in `spec.events` (when given, compared
 *    case-insensitively) → 200 `{"ignored": "…"}`, so senders do not mark the hook as failing.
 * 6. A pull-request event (GitHub `pull_request`, GitLab `Merge Request Hook`) → 202: the
 *    request's preview environment is created/updated/destroyed and its plan posted on the forge
 *    (`_pullrequests.ts`); actions with nothing to do (labels, edits) → 200 `{"ignored"}`.
 * 7. Anything else is a push: the Receiver's `GitRepository` resources (by name in its namespace,
 *    or `name: "*"` with `matchLabels`) are refreshed through `agent.notifyPush({ sources })` with
 *    their `namespace/name` keys, and its `Kustomization` resources are reconciled in every
 *    environment that has them. The answer, 200 `{"refreshed": [...], "reconciled": [...]}`, is
 *    sent once that work is started, not finished.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { byKind, type Config, type ConfigObject } from "../config/index.js";
import { errorMessage } from "../core/index.js";
import { pullRequestEventName, pullRequestFromDelivery } from "../forges/index.js";
import { type ReceiverKind, ReplayGuard, receiverPath, verifyWebhook } from "../receivers/index.js";
import { HttpError, methodNotAllowed, readBody, sendJson } from "./_http.js";
import { PullRequests } from "./_pullrequests.js";
import type { ApiAgent } from "./_types.js";

interface Receiver {
  id: string;
  kind: ReceiverKind;
  token: string;
  obj: ConfigObject<"Receiver">;
  /** `namespace/name` of the GitRepositories it refreshes. */
  sources: string[];
  /** Kustomization (unit) names it reconciles. */
  units: string[];
}

export class Receivers {
  private index: { config: Config; byPath: Map<string, Receiver> } | undefined;
  private readonly guard = new ReplayGuard();
  /** Pull-request deliveries: preview environments and plans posted to the forge. */
  readonly prs: PullRequests;

  constructor(private readonly opts: { agent: ApiAgent; log: Logger }) {
    this.prs = new PullRequests(opts);
  }

  async handle(req: IncomingMessage, res: ServerResponse, digest: string): Promise<void> {
    const r = this.lookup(`/hook/${digest}`);
    if (!r) throw new HttpError(404, "NotFound", "no receiver at this path");
    if (req.method !== "POST") throw methodNotAllowed(["POST"]);
    if (r.obj.spec.suspend)
      throw new HttpError(503, "Suspended", `receiver ${r.id} is suspended`, { "Retry-After": "60" });
    const body = await readBody(req, res);
    const log = this.opts.log;
    const verdict = verifyWebhook(r.kind, r.token, { headers: req.headers, body });
    if (!verdict.ok) {
      log.warn(
        { receiver: r.id, type: r.kind, reason: verdict.reason, peer: req.socket.remoteAddress },
        "webhook rejected",
      );
      throw new HttpError(401, "Unauthorized", `webhook verification failed: ${verdict.reason}`);
    }

    // Both keys are recorded (no short-circuit): a replay may reuse either.
    const byId = verdict.deliveryId ? this.guard.isReplay(`${r.id}|id|${verdict.deliveryId}`) : false;
    const byBody =
      r.kind === "github"
        ? this.guard.isReplay(`${r.id}|body|${createHash("sha256").update(body).digest("hex")}`)
        : false;
    if (byId || byBody) {
      log.warn(
        { receiver: r.id, type: r.kind, event: verdict.event, peer: req.socket.remoteAddress },
        "webhook replay refused",
      );
      throw new HttpError(
        409,
        "Conflict",
        verdict.deliveryId && byId
          ? `delivery ${verdict.deliveryId.slice(0, 100)} was already received`
          : "this delivery was already received",
      );
    }

    const event = verdict.event;
    if (r.kind === "github" && event === "ping") {
      log.info({ receiver: r.id }, "webhook ping");
      return sendJson(res, 200, { ping: true });
    }
    const allowed = r.obj.spec.events;
    if (allowed?.length && !allowed.some((e) => e.toLowerCase() === (event ?? "").toLowerCase())) {
      log.info({ receiver: r.id, event }, "webhook event ignored");
      return sendJson(res, 200, {
        ignored: `event ${JSON.stringify((event ?? "").slice(0, 100))} is not one of the receiver's events`,
      });
    }

    const forge = r.kind === "github" || r.kind === "gitlab" ? r.kind : undefined;
    if (forge && event === pullRequestEventName(forge)) {
      const pr = pullRequestFromDelivery(forge, event, { headers: req.headers, body });
      if (pr === undefined) throw new HttpError(400, "BadRequest", "the pull request payload is not JSON");
      if (typeof pr === "string") {
        log.info({ receiver: r.id, event }, "pull request delivery ignored");
        return sendJson(res, 200, { ignored: pr.slice(0, 200) });
      }
      this.prs.accept(pr);
      log.info({ receiver: r.id, event, pr: pr.number, action: pr.action }, "pull request webhook accepted");
      return sendJson(res, 202, { pullRequest: { number: pr.number, action: pr.action } });
    }

    const agent = this.opts.agent;
    const known = new Set(agent.listSources().map((s) => s.name));
    const refreshed = r.sources.filter((s) => known.has(s));
    const reconciled: string[] = [];
    if (refreshed.length) {
      agent
        .notifyPush({ sources: refreshed })
        .catch((e) => log.error({ receiver: r.id, err: errorMessage(e) }, "webhook refresh failed"));
    }
    if (r.units.length) {
      for (const u of agent.listUnits()) {
        if (!r.units.includes(u.unit)) continue;
        reconciled.push(`${u.env}/${u.unit}`);
        agent
          .requestReconcile(u.env, u.unit)
          .catch((e) =>
            log.error(
              { receiver: r.id, env: u.env, unit: u.unit, err: errorMessage(e) },
              "webhook reconcile failed",
            ),
          );
      }
    }
    log.info({ receiver: r.id, event, ref: verdict.push?.ref, refreshed, reconciled }, "webhook accepted");
    return sendJson(res, 200, { refreshed, reconciled });
  }

  /** The receiver at `path`, from an index rebuilt whenever the agent's configuration changes. */
  private lookup(path: string): Receiver | undefined {
    const config = this.opts.agent.configuration;
    if (this.index?.config !== config) this.index = { config, byPath: this.build(config) };
    return this.index.byPath.get(path);
  }

  private build(config: Config): Map<string, Receiver> {
    const out = new Map<string, Receiver>();
    const repos = byKind(config, "GitRepository");
    for (const obj of byKind(config, "Receiver")) {
      const ns = obj.metadata.namespace;
      const id = `${ns}/${obj.metadata.name}`;
      const secretName = obj.spec.secretRef.name;
      const secret = config.supporting.find(
        (s) => s.kind === "Secret" && s.metadata.namespace === ns && s.metadata.name === secretName,
      );
      // Used as is (no trimming), like Flux, so the path matches the one Flux would compute.
      const token = secret?.data.token;
      if (!token?.trim()) {
        this.opts.log.warn(
          { receiver: id, secret: `${ns}/${secretName}` },
          secret
            ? "receiver disabled: its Secret has no 'token' key"
            : "receiver disabled: its Secret is not in the configuration",
        );
        continue;
      }
      const sources = new Set<string>();
      const units = new Set<string>();
      for (const ref of obj.spec.resources) {
        const rns = ref.namespace ?? ns;
        if (ref.kind === "GitRepository") {
          for (const repo of repos) {
            if (repo.metadata.namespace !== rns) continue;
            const match =
              ref.name === "*"
                ? Object.entries(ref.matchLabels ?? {}).every(([k, v]) => repo.metadata.labels?.[k] === v)
                : repo.metadata.name === ref.name;
            if (match) sources.add(`${rns}/${repo.metadata.name}`);
          }
        } else if (ref.kind === "Kustomization" && ref.name !== "*") {
          units.add(ref.name);
        }
      }
      out.set(receiverPath(ns, obj.metadata.name, token), {
        id,
        kind: obj.spec.type,
        token,
        obj,
        sources: [...sources],
        units: [...units],
      });
    }
    return out;
  }
}
