/**
 * Notifications: Flux `Provider`/`Alert` (generic, generic-hmac, slack, github/gitlab commit
 * status), Flux's alert matching, and the `Notifier` that delivers in the background with bounded
 * retries, never blocking or failing the reconciler that calls it.
 */
export { type AgentChange, eventFromAgent } from "./agent.js";
export {
  alertRejects,
  type EventSource,
  type ProviderType,
  parseHeaders,
  providerForRepository,
  type ResolvedAlert,
  type ResolvedProvider,
  resolveAlert,
  resolveNotifications,
  resolveProvider,
  sourceMatches,
} from "./alerts.js";
export {
  Notifier,
  type NotifierCounters,
  type NotifierLog,
  type NotifierOptions,
  type ProviderStats,
} from "./notifier.js";
export { commitOf, DeliveryError, forgeFor, signature } from "./providers.js";
export {
  ENV_KEY,
  type InvolvedObject,
  type NotificationEvent,
  type NotifyInput,
  REVISION_KEY,
} from "./types.js";
