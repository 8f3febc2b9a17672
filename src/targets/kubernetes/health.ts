import type { HealthStatus } from "../types.js";

/** Health of one live object by kstatus-like rules, with a human sentence. */

type Dict = Record<string, unknown>;
interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

const num = (v: unknown, d = 0): number => (typeof v === "number" ? v : d);

function conditions(o: Dict): Condition[] {
  const c = (o.status as Dict | undefined)?.conditions;
  return Array.isArray(c) ? (c as Condition[]) : [];
}

function cond(o: Dict, type: string): Condition | undefined {
  return conditions(o).find((c) => c.type === type);
}

function why(c: Condition): string {
  return [c.reason, c.message].filter(Boolean).join(": ");
}

export interface Assessment {
  status: HealthStatus;
  message: string;
}

function workload(kind: string, o: Dict, spec: Dict, st: Dict): Assessment {
  const want = num(spec.replicas, 1);
  if (kind === "Deployment") {
    const progressing = cond(o, "Progressing");
    if (progressing?.status === "False" && progressing.reason === "ProgressDeadlineExceeded") {
      return { status: "Degraded", message: `Rollout failed: ${why(progressing)}` };
    }
    if (spec.paused === true) return { status: "Suspended", message: "Deployment is paused" };
  }
  if (kind === "DaemonSet") {
    const desired = num(st.desiredNumberScheduled);
    const updated = num(st.updatedNumberScheduled);
    const available = num(st.numberAvailable);
    if (updated < desired) {
      return {
        status: "Progressing",
        message: `Waiting for rollout to finish: ${updated} of ${desired} updated`,
      };
    }
    if (available < desired) {
      return {
        status: "Progressing",
        message: `Waiting for rollout to finish: ${available} of ${desired} available`,
      };
    }
    return { status: "Healthy", message: `DaemonSet is available: ${available} pods` };
  }
  const updated = num(st.updatedReplicas);
  const current = num(st.replicas);
  const ready = num(st.readyReplicas);
  const available = kind === "StatefulSet" ? ready : num(st.availableReplicas);
  if (updated < want) {
    return {
      status: "Progressing",
      message: `Waiting for rollout to finish: ${updated} of ${want} replicas updated`,
    };
  }
  if (current > updated) {
    return {
      status: "Progressing",
      message: `Waiting for rollout to finish: ${current - updated} old replicas pending termination`,
    };
  }
  if (available < want) {
    return {
      status: "Progressing",
      message: `Waiting for rollout to finish: ${available} of ${want} replicas available`,
    };
  }
  return { status: "Healthy", message: `${kind} is available: ${available} of ${want} replicas` };
}

export function assess(o: Dict | undefined): Assessment {
  if (!o) return { status: "Missing", message: "Object does not exist" };
  const kind = String(o.kind);
  const md = (o.metadata ?? {}) as Dict;
  const spec = (o.spec ?? {}) as Dict;
  const st = (o.status ?? {}) as Dict;
  if (md.deletionTimestamp) return { status: "Progressing", message: `${kind} is being deleted` };

  const controllerKinds = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"];
  const gen = num(md.generation, 0);
  if (controllerKinds.includes(kind) && st.observedGeneration === undefined) {
    return { status: "Progressing", message: `Waiting for the controller to observe the ${kind}` };
  }
  if (st.observedGeneration !== undefined && num(st.observedGeneration) < gen) {
    return {
      status: "Progressing",
      message: `Waiting for the controller to observe generation ${gen} (observed ${num(st.observedGeneration)})`,
    };
  }

  switch (kind) {
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
      return workload(kind, o, spec, st);
    case "Job": {
      const complete = cond(o, "Complete");
      const failed = cond(o, "Failed");
      if (complete?.status === "True") return { status: "Healthy", message: "Job completed" };
      if (failed?.status === "True") return { status: "Degraded", message: `Job failed: ${why(failed)}` };
      if (spec.suspend === true) return { status: "Suspended", message: "Job is suspended" };
      return {
        status: "Progressing",
        message: `Job is running: ${num(st.succeeded)} succeeded, ${num(st.active)} active`,
      };
    }
    case "Pod": {
      if (st.phase === "Succeeded") return { status: "Healthy", message: "Pod succeeded" };
      if (st.phase === "Failed")
        return { status: "Degraded", message: `Pod failed: ${String(st.reason ?? "")}` };
      const ready = cond(o, "Ready");
      if (ready?.status === "True") return { status: "Healthy", message: "Pod is ready" };
      return {
        status: "Progressing",
        message: `Pod is not ready yet (phase ${String(st.phase ?? "Pending")})`,
      };
    }
    case "CustomResourceDefinition": {
      const est = cond(o, "Established");
      if (est?.status === "True") return { status: "Healthy", message: "CRD is established" };
      return { status: "Progressing", message: "Waiting for the CRD to be established" };
    }
    case "Namespace":
      if (st.phase === "Terminating") return { status: "Progressing", message: "Namespace is terminating" };
      return { status: "Healthy", message: "Namespace is active" };
    case "PersistentVolumeClaim":
      if (st.phase === "Bound") return { status: "Healthy", message: "PersistentVolumeClaim is bound" };
      return { status: "Progressing", message: `PersistentVolumeClaim is ${String(st.phase ?? "Pending")}` };
    case "ConfigMap":
    case "Secret":
    case "Service":
    case "ServiceAccount":
      return { status: "Healthy", message: `${kind} exists` };
    default:
      break;
  }
  const stalled = cond(o, "Stalled");
  if (stalled?.status === "True") return { status: "Degraded", message: `Stalled: ${why(stalled)}` };
  const ready = cond(o, "Ready");
  if (ready?.status === "True") return { status: "Healthy", message: `${kind} is ready` };
  if (ready?.status === "False")
    return { status: "Progressing", message: `Not ready: ${why(ready) || "no reason given"}` };
  if (ready)
    return { status: "Progressing", message: `Readiness unknown: ${why(ready) || "no reason given"}` };
  const reconciling = cond(o, "Reconciling");
  if (reconciling?.status === "True")
    return { status: "Progressing", message: `Reconciling: ${why(reconciling)}` };
  return { status: "Healthy", message: `${kind} exists` };
}
