/**
 * Flux `Receiver` webhooks: the token-derived path, signature/token verification in constant time
 * for github, gitlab, generic and generic-hmac, push details for targeted fetches, and replay
 * protection by delivery id. Pure functions; the HTTP server (server/) wires them to routes.
 */
export {
  type PushInfo,
  type ReceiverKind,
  ReplayGuard,
  receiverPath,
  signBody,
  verifyWebhook,
  type WebhookRequest,
  type WebhookVerdict,
} from "./verify.js";
