/**
 * When preview environments go: TTLs and the purge schedule, as pure decisions over the registry
 * and a clock, so the agent's timer and the tests (with an injected clock) share one truth.
 *
 * - A TTL runs from the last push: each push (and `sluice env extend`) moves `expiresAt` forward,
 *   never back.
 * - Without `purge.schedule`, an expired environment goes at the next check after it expires.
 * - With a schedule (cron, five fields, in `timeZone`), environments go only at the scheduled
 *   times: the expired ones (`scope: expired`), or every unprotected one (`scope: unprotected` —
 *   the seed's "after working hours"). A time missed while the agent was down is caught up at the
 *   next check, once.
 * - `protected` environments are never purged, whatever else is configured.
 */
import { Cron } from "croner";
import type { EnvironmentsSpec } from "../config/index.js";
import { SluiceError } from "../core/index.js";

export interface PurgePolicy {
  schedule: Cron | null;
  scope: "expired" | "unprotected";
  /** For messages. */
  describe: string;
}

/** What the purge needs to know of an environment. */
export interface PurgeCandidate {
  name: string;
  protected: boolean;
  expiresAt: string | null;
}

export interface PurgeDecision {
  name: string;
  why: string;
}

/** Parses `purge` of an `Environments` spec. @throws SluiceError ConfigInvalid for a bad schedule or zone. */
export function purgePolicy(spec: EnvironmentsSpec, where: string): PurgePolicy {
  const p = spec.purge;
  if (!p) return { schedule: null, scope: "expired", describe: "when they expire" };
  const fields = p.schedule.trim().split(/\s+/);
  if (fields.length !== 5)
    throw new SluiceError(
      "ConfigInvalid",
      `${where}: purge.schedule ${JSON.stringify(p.schedule)} has ${fields.length} fields; a cron schedule has five`,
      { hint: "minute hour day-of-month month day-of-week, e.g. '0 20 * * 1-5'" },
    );
  const timezone = p.timeZone ?? "UTC";
  try {
    new Intl.DateTimeFormat("en", { timeZone: timezone });
  } catch {
    throw new SluiceError(
      "ConfigInvalid",
      `${where}: purge.timeZone ${JSON.stringify(timezone)} is not a time zone`,
      {
        hint: "an IANA zone such as Europe/Berlin or UTC",
      },
    );
  }
  let schedule: Cron;
  try {
    schedule = new Cron(p.schedule, { timezone, paused: true });
  } catch (e) {
    throw new SluiceError(
      "ConfigInvalid",
      `${where}: purge.schedule ${JSON.stringify(p.schedule)} is not a valid cron schedule: ${(e as Error).message}`,
    );
  }
  return {
    schedule,
    scope: p.scope ?? "expired",
    describe: `at '${p.schedule}' (${timezone})`,
  };
}

/**
 * Whether a scheduled purge time lies in (`lastCheck`, `now`]. Without a schedule: always (expired
 * environments go at every check).
 */
export function purgeDue(policy: PurgePolicy, lastCheck: Date, now: Date): boolean {
  if (!policy.schedule) return true;
  const next = policy.schedule.nextRun(lastCheck);
  return next !== null && next.getTime() <= now.getTime();
}

/** The environments a due purge destroys now. */
export function purgeVictims(policy: PurgePolicy, envs: PurgeCandidate[], now: Date): PurgeDecision[] {
  const out: PurgeDecision[] = [];
  for (const e of envs) {
    if (e.protected) continue;
    const expired = e.expiresAt !== null && Date.parse(e.expiresAt) <= now.getTime();
    if (expired) out.push({ name: e.name, why: `it expired at ${e.expiresAt}` });
    else if (policy.scope === "unprotected" && policy.schedule)
      out.push({
        name: e.name,
        why: `the purge schedule ${policy.describe} removes unprotected environments`,
      });
  }
  return out;
}

/** The expiry after a push or an extension: later of the current one and `from + ms`. */
export function extendedExpiry(current: string | null, from: Date, ms: number): string {
  const candidate = from.getTime() + ms;
  const cur = current === null ? 0 : Date.parse(current);
  return new Date(Math.max(cur, candidate)).toISOString();
}

/** `sluice env extend NAME 4h`: four more hours from the current expiry (or from now, if past or none). */
export function addToExpiry(current: string | null, now: Date, ms: number): string {
  const base = Math.max(now.getTime(), current === null ? 0 : Date.parse(current));
  return new Date(base + ms).toISOString();
}
