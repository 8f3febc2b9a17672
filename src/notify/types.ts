/** The notification event: Flux's `Event` (fluxcd/pkg apis/event), what generic webhooks receive. */

export interface InvolvedObject {
  apiVersion?: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

export interface NotificationEvent {
  involvedObject: InvolvedObject;
  /** Flux's severities: `info` or `error` (Sluice warnings are sent as info). */
  severity: "info" | "error";
  /** RFC 3339. */
  timestamp: string;
  message: string;
  /** A CamelCase reason (`ReconciliationFailed`, `BuildFailed`, …). */
  reason: string;
  /** Revision (`kustomize.toolkit.fluxcd.io/revision`), the Alert's `summary`, Sluice's environment, … */
  metadata?: Record<string, string>;
  reportingController: string;
  reportingInstance?: string;
}

/** What callers hand to `Notifier.notify`: an event plus the involved object's labels (for `matchLabels`). */
export interface NotifyInput extends Omit<NotificationEvent, "timestamp" | "reportingController"> {
  timestamp?: string;
  reportingController?: string;
  /** Labels of the involved object; matched by eventSources' `matchLabels`, never sent. */
  objectLabels?: Record<string, string>;
}

/** Flux's revision metadata key (commit statuses read the commit from it). */
export const REVISION_KEY = "kustomize.toolkit.fluxcd.io/revision";
/** The Sluice environment an event belongs to. */
export const ENV_KEY = "sluice.dev/env";
