/** Prometheus metrics of the agent (served at /metrics). One registry per agent, so tests stay isolated. */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export class AgentMetrics {
  readonly registry = new Registry();
  readonly reconcileDuration = new Histogram({
    name: "sluice_reconcile_duration_seconds",
    help: "Duration of unit reconciles, by environment, unit and result",
    labelNames: ["env", "unit", "result"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: "sluice_queue_depth",
    help: "Units waiting to be reconciled",
    registers: [this.registry],
  });
  readonly queueActive = new Gauge({
    name: "sluice_queue_active",
    help: "Units being reconciled now",
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: "sluice_unit_ready",
    help: "1 when the unit is Ready, 0 when not, -1 when unknown",
    labelNames: ["env", "unit"] as const,
    registers: [this.registry],
  });
  readonly gitFetchDuration = new Histogram({
    name: "sluice_git_fetch_duration_seconds",
    help: "Duration of git fetches and branch listings, by source",
    labelNames: ["source"] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [this.registry],
  });
  readonly gitFetchErrors = new Counter({
    name: "sluice_git_fetch_errors_total",
    help: "Failed git fetches, by source",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly environments = new Gauge({
    name: "sluice_environments",
    help: "Active environments",
    registers: [this.registry],
  });
}
