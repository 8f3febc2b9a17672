/**
 * Rollouts (`sluice.dev/v1alpha1` kind `Rollout`): blue/green, canary and A/B delivery of a
 * Deployment, on the local target (through the service proxy's weights and request matches) and
 * on Kubernetes (Service selector switch; Gateway API HTTPRoute weights and matches).
 */
import { rolloutSpec } from "../config/index.js";
import { type KubeObject, SluiceError, subject } from "../core/index.js";
import type { RolloutObject } from "./types.js";

export { statusOf } from "./decide.js";
export {
  type AddressResolver,
  type RolloutCommandResult,
  RolloutEngine,
  type RolloutEngineOptions,
  type RolloutReconcileInput,
  type RolloutReconcileResult,
  type StateStore,
} from "./engine.js";
export {
  ANNOTATION_HASH,
  kubernetesObjects,
  LABEL_ROLLOUT,
  LABEL_SLOT,
  localTraffic,
  rolloutObjects,
  type TargetKind,
  templateHash,
  trafficObjects,
} from "./objects.js";
export type {
  Candidate,
  RolloutEvent,
  RolloutEventType,
  RolloutObject,
  RolloutPhase,
  RolloutState,
  RolloutStatus,
  Slot,
  SmokeTestRef,
  Strategy,
} from "./types.js";

export function isRollout(o: KubeObject): boolean {
  return o.apiVersion === "sluice.dev/v1alpha1" && o.kind === "Rollout";
}

/** Validates a rendered `Rollout` (strict: unknown fields are errors, with their path). */
export function parseRollout(o: KubeObject): RolloutObject {
  const parsed = rolloutSpec.safeParse(o.spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = ["spec", ...issue.path.map(String)].join(".");
    const keys =
      issue.code === "unrecognized_keys" ? ` ${(issue as { keys?: string[] }).keys?.join(", ")}` : "";
    throw new SluiceError(
      "BuildFailed",
      `${subject(o)}: ${field}: ${issue.code === "unrecognized_keys" ? `unknown field${keys}` : issue.message}`,
    );
  }
  return { name: o.metadata.name, namespace: o.metadata.namespace, spec: parsed.data };
}
