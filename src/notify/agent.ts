/**
 * The agent's change events (`agent.on("change", …)`) as notification events, in Flux's terms:
 * a unit is its `Kustomization` (namespace and labels from the configuration), a source its
 * `GitRepository`. A unit that becomes Ready=False is an error (its reason: BuildFailed,
 * HealthCheckFailed, …), Ready=True an info event; progress is not notified.
 */
import { byKind, type Config } from "../config/index.js";
import { ENV_KEY, type NotifyInput, REVISION_KEY } from "./types.js";

/** The shapes of the agent's `change` events this reads (reconcile/'s AgentEvent). */
export type AgentChange =
  | {
      type: "unit";
      env: string;
      unit: string;
      ready: string;
      reason: string;
      message: string;
      revision: string | null;
    }
  | { type: "source"; source: string; ok: boolean; message: string }
  | { type: "environment"; env: string; state: string; branch: string | null }
  | { type: string };

const DEFAULT_NAMESPACE = "flux-system";

export function eventFromAgent(e: AgentChange, opts: { config?: Config } = {}): NotifyInput | null {
  if (e.type === "unit") {
    const u = e as Extract<AgentChange, { type: "unit"; unit: string }>;
    // A run starting says Progressing with the prior readiness: not news.
    if ((u.ready !== "True" && u.ready !== "False") || u.reason === "Progressing") return null;
    const k = opts.config
      ? byKind(opts.config, "Kustomization").find((x) => x.metadata.name === u.unit)
      : undefined;
    return {
      involvedObject: {
        apiVersion: "kustomize.toolkit.fluxcd.io/v1",
        kind: "Kustomization",
        name: u.unit,
        namespace: k?.metadata.namespace ?? DEFAULT_NAMESPACE,
      },
      severity: u.ready === "False" ? "error" : "info",
      reason: u.reason,
      message: u.message,
      metadata: { [ENV_KEY]: u.env, ...(u.revision ? { [REVISION_KEY]: u.revision } : {}) },
      reportingController: "sluice",
      ...(k?.metadata.labels ? { objectLabels: k.metadata.labels } : {}),
    };
  }
  if (e.type === "source") {
    const s = e as Extract<AgentChange, { type: "source"; ok: boolean }>;
    const [namespace, name] = s.source.includes("/") ? s.source.split("/", 2) : [DEFAULT_NAMESPACE, s.source];
    const repo = opts.config
      ? byKind(opts.config, "GitRepository").find(
          (x) => x.metadata.name === name && x.metadata.namespace === namespace,
        )
      : undefined;
    return {
      involvedObject: {
        apiVersion: "source.toolkit.fluxcd.io/v1",
        kind: "GitRepository",
        name: name!,
        namespace: namespace!,
      },
      severity: s.ok ? "info" : "error",
      reason: s.ok ? "Succeeded" : "GitOperationFailed",
      message: s.message,
      reportingController: "sluice",
      ...(repo?.metadata.labels ? { objectLabels: repo.metadata.labels } : {}),
    };
  }
  if (e.type === "environment") {
    const v = e as Extract<AgentChange, { type: "environment"; state: string }>;
    return {
      involvedObject: {
        apiVersion: "sluice.dev/v1alpha1",
        kind: "Environment",
        name: v.env,
        namespace: DEFAULT_NAMESPACE,
      },
      severity: "info",
      reason: `Environment${v.state.charAt(0).toUpperCase()}${v.state.slice(1)}`,
      message: `environment ${v.env} is ${v.state}${v.branch ? ` (branch ${v.branch})` : ""}`,
      metadata: { [ENV_KEY]: v.env },
      reportingController: "sluice",
    };
  }
  return null;
}
