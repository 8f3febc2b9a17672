import type { KubeObject, ObjectRef } from "../core/index.js";
import type { ChangeSet, Inventory } from "../plan/index.js";
import type { ApplyOptions, ApplyResult, HealthReport, Orphan, Target, UnitId } from "./types.js";

/**
 * A target connected on first use, and again after a failed connection: an agent can start while
 * a cluster is unreachable, and the units on it fail with the connection error until it answers.
 */
export class LazyTarget implements Target {
  private current: Promise<Target> | undefined;

  constructor(
    readonly kind: Target["kind"],
    private readonly connect: () => Promise<Target>,
  ) {}

  private get(): Promise<Target> {
    if (!this.current) {
      this.current = this.connect();
      this.current.catch(() => {
        this.current = undefined;
      });
    }
    return this.current;
  }

  async plan(unit: UnitId, desired: KubeObject[]): Promise<ChangeSet> {
    return (await this.get()).plan(unit, desired);
  }
  async apply(unit: UnitId, desired: KubeObject[], opts: ApplyOptions): Promise<ApplyResult> {
    return (await this.get()).apply(unit, desired, opts);
  }
  async health(unit: UnitId, refs: ObjectRef[]): Promise<HealthReport> {
    return (await this.get()).health(unit, refs);
  }
  async inventory(unit: UnitId): Promise<Inventory | undefined> {
    return (await this.get()).inventory(unit);
  }
  async destroy(unit: UnitId): Promise<ChangeSet> {
    return (await this.get()).destroy(unit);
  }
  async sweep(live: ReadonlySet<string>, opts: { dryRun: boolean }): Promise<Orphan[]> {
    const t = await this.get();
    return t.sweep ? t.sweep(live, opts) : [];
  }
  async close(): Promise<void> {
    if (this.current) await (await this.current.catch(() => undefined))?.close();
  }
}
