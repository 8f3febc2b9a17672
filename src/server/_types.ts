import type { Agent, AgentEvent } from "../reconcile/index.js";

/**
 * What the server needs of the agent. The real {@link Agent} satisfies it; tests pass a small
 * fake. `started` is optional: when the agent exposes it, `/readyz` reports it.
 */
export type ApiAgent = Pick<
  Agent,
  | "listEnvironments"
  | "listUnits"
  | "listSources"
  | "requestReconcile"
  | "setSuspended"
  | "notifyPush"
  | "configuration"
  | "metrics"
> &
  Partial<Pick<Agent, "createEnvironment" | "requestDestroy" | "extendEnvironment" | "gc">> & {
    readonly started?: boolean;
    on(event: "change", listener: (e: AgentEvent) => void): unknown;
    off(event: "change", listener: (e: AgentEvent) => void): unknown;
  };
