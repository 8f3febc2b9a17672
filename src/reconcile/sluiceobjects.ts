/**
 * Sluice's own objects travel with the application in Git and are rendered with it (so their
 * `${VAR}`s take each environment's values), but they are never sent to a target: the agent
 * takes them out of the rendered set and acts on them itself: `SmokeTest` and `Rollout`.
 */
import { type SmokeTestSpec, smokeTestSpec } from "../config/index.js";
import { type KubeObject, SluiceError, subject } from "../core/index.js";
import { isRollout, parseRollout, type RolloutObject } from "../rollouts/index.js";

export interface SmokeTestObject {
  name: string;
  namespace: string | undefined;
  spec: SmokeTestSpec;
}

export function splitSluiceObjects(objects: readonly KubeObject[]): {
  workloads: KubeObject[];
  smokeTests: SmokeTestObject[];
  rollouts: RolloutObject[];
} {
  const workloads: KubeObject[] = [];
  const smokeTests: SmokeTestObject[] = [];
  const rollouts: RolloutObject[] = [];
  for (const o of objects) {
    if (!o.apiVersion.startsWith("sluice.dev/")) {
      workloads.push(o);
      continue;
    }
    if (isRollout(o)) {
      rollouts.push(parseRollout(o));
      continue;
    }
    if (o.apiVersion !== "sluice.dev/v1alpha1" || o.kind !== "SmokeTest") {
      throw new SluiceError(
        "BuildFailed",
        `${subject(o)}: ${o.apiVersion} ${o.kind} is not supported in rendered manifests`,
        {
          hint: "only SmokeTest and Rollout (sluice.dev/v1alpha1) may be rendered with an application",
        },
      );
    }
    const parsed = smokeTestSpec.safeParse(o.spec);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = ["spec", ...issue.path.map(String)].join(".");
      throw new SluiceError(
        "BuildFailed",
        `${subject(o)}: ${field}: ${issue.code === "unrecognized_keys" ? "unknown field" : issue.message}`,
      );
    }
    smokeTests.push({ name: o.metadata.name, namespace: o.metadata.namespace, spec: parsed.data });
  }
  return { workloads, smokeTests, rollouts };
}
