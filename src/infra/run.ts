/**
 * Running a stack: plan, apply, destroy or output over the unit graph.
 *
 * - Order: a unit starts when every unit it depends on (among those selected) has finished well;
 *   destroy walks the graph backwards (dependents first). Independent units run in parallel, at
 *   most `parallelism` at once.
 * - A failure stops only what depends on it (destroy: what it depends on); unrelated branches
 *   finish. The result lists every unit: ok, changes (plan), failed, skipped, and why.
 * - Dependency outputs are read once per run and cached; a unit applied in this run is re-read
 *   once, right after its apply. mockOutputs stand in only for `plan`, only while the dependency
 *   has no state; apply and destroy with a dependency lacking state fail, naming it.
 * - Each unit holds its lock file for the whole of its turn, so runs of a unit never overlap.
 * - Every message, event and output leaving here goes through the run's Masker.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { SluiceError, secureResolve } from "../core/index.js";
import { hooksFor, runHook } from "./hooks.js";
import { resolveInputs } from "./inputs.js";
import { acquireLock } from "./lock.js";
import { Masker } from "./mask.js";
import {
  maskOutputs,
  normalize,
  type Outputs,
  readLocalState,
  removeOutputsRecord,
  writeOutputsRecord,
} from "./outputs.js";
import { checkStack, depsOf } from "./stack.js";
import { failureText, resolveTofu, runTofu, type TofuResult } from "./tofu.js";
import type {
  ResolvedTofu,
  StackAction,
  StackRunOptions,
  StackRunResult,
  StackUnitSpec,
  UnitResult,
} from "./types.js";
import {
  checkEnvName,
  declaresBackend,
  type PreparedUnit,
  prepareWorkDir,
  recordInit,
  type UnitPaths,
  unitPaths,
  writeInputs,
} from "./workdir.js";

const NEEDS_INIT =
  /(tofu|terraform) init|Inconsistent dependency lock file|Module not installed|Backend initialization required|required plugins are not installed|Missing required provider|Failed to load plugin schemas/i;

export async function runStack(o: StackRunOptions): Promise<StackRunResult> {
  const started = Date.now();
  checkEnvName(o.env);
  const order = checkStack(o.stack);
  const byName = new Map(o.stack.spec.units.map((u) => [u.name, u]));
  const selected = o.units?.length ? o.units : order;
  for (const u of selected)
    if (!byName.has(u))
      throw new SluiceError("NotFound", `Stack ${o.stack.name} has no unit ${u}`, {
        hint: `its units: ${order.join(", ")}`,
      });
  const chosen = new Set(selected);
  const units = order.filter((u) => chosen.has(u));
  const parallelism = Math.max(1, o.parallelism ?? o.stack.spec.parallelism ?? availableParallelism());
  const run = new StackRun(o, byName);

  // What each unit waits for: its dependencies, or for destroy its dependents.
  const waitsFor = new Map<string, string[]>();
  for (const u of units) waitsFor.set(u, []);
  for (const u of units) {
    for (const d of depsOf(byName.get(u)!)) {
      if (!chosen.has(d) || o.action === "output") continue; // reading outputs needs no order
      if (o.action === "destroy") waitsFor.get(d)!.push(u);
      else waitsFor.get(u)!.push(d);
    }
  }
  const sequence = o.action === "destroy" ? [...units].reverse() : units;
  const results = new Map<string, UnitResult>();
  const running = new Map<string, Promise<void>>();
  const pending = new Set(sequence);
  const skip = (u: string, message: string) => {
    const now = Date.now();
    const r: UnitResult = {
      unit: u,
      action: o.action,
      status: "skipped",
      adds: 0,
      changes: 0,
      destroys: 0,
      startedAt: now,
      endedAt: now,
      durationMs: 0,
      message,
    };
    results.set(u, r);
    o.onEvent?.({ type: "done", unit: u, action: o.action, result: r, at: now });
  };
  while (pending.size || running.size) {
    for (const u of [...pending]) {
      if (o.signal?.aborted) {
        pending.delete(u);
        skip(u, "cancelled");
        continue;
      }
      const waits = waitsFor.get(u)!;
      const bad = waits.find((w) => {
        const s = results.get(w)?.status;
        return s === "failed" || (s === "skipped" && results.get(w)?.message !== "nothing to destroy");
      });
      if (bad) {
        pending.delete(u);
        const how = results.get(bad)!.status === "failed" ? "failed" : "was skipped";
        skip(u, o.action === "destroy" ? `dependent ${bad} ${how}` : `dependency ${bad} ${how}`);
        continue;
      }
      if (running.size >= parallelism) break;
      if (waits.every((w) => results.has(w))) {
        pending.delete(u);
        running.set(
          u,
          run.unit(u).then((r) => {
            results.set(u, r);
            running.delete(u);
          }),
        );
      }
    }
    if (running.size) await Promise.race(running.values());
    else if (pending.size) {
      // Nothing can start and nothing runs: cannot happen with an acyclic graph; never spin.
      for (const u of pending) skip(u, "not runnable");
      pending.clear();
    }
  }
  const list = sequence.map((u) => results.get(u)!);
  return {
    stack: o.stack.name,
    env: o.env,
    action: o.action,
    ok: list.every((r) => r.status !== "failed"),
    changes: list.some((r) => r.status === "changes"),
    units: list,
    durationMs: Date.now() - started,
  };
}

/** The state shared by the units of one run: tofu, the masker, the outputs cache. */
class StackRun {
  readonly masker = new Masker();
  private tofuResolved: ResolvedTofu | undefined;
  private readonly outputs = new Map<string, Promise<Outputs | undefined>>();
  private readonly backends = new Map<string, boolean>();

  constructor(
    private readonly o: StackRunOptions,
    private readonly byName: Map<string, StackUnitSpec>,
  ) {}

  get tofu(): ResolvedTofu {
    this.tofuResolved ??= resolveTofu(this.o.tofu);
    return this.tofuResolved;
  }

  paths(u: string): UnitPaths {
    return unitPaths(this.o.stateDir, this.o.env, this.o.stack.name, u, this.byName.get(u)!.path);
  }

  customBackend(u: string): boolean {
    let b = this.backends.get(u);
    if (b === undefined) {
      b = declaresBackend(secureResolve(this.o.root, this.byName.get(u)!.path));
      this.backends.set(u, b);
    }
    return b;
  }

  private event(unit: string, step: string) {
    this.o.onEvent?.({ type: "step", unit, action: this.o.action, step, at: Date.now() });
  }

  private tofuEnv(p: UnitPaths): Record<string, string> {
    return { TF_DATA_DIR: p.data };
  }

  private async init(unit: string, prep: PreparedUnit, force = false): Promise<void> {
    if (!prep.needsInit && !force) return;
    this.event(unit, "init");
    const r = await runTofu(this.tofu, ["init", "-input=false", "-no-color", "-reconfigure"], {
      cwd: prep.paths.config,
      env: this.tofuEnv(prep.paths),
      ...(this.o.signal ? { signal: this.o.signal } : {}),
    });
    if (r.code !== 0)
      throw new SluiceError("ReconciliationFailed", `unit ${unit}: tofu init failed: ${failureText(r)}`, {
        detail: { unit },
      });
    recordInit(prep.paths, prep.initKey);
    prep.needsInit = false;
  }

  /** A unit's outputs, read once per run (state file, or `tofu output -json`); undefined: no state. */
  readOutputs(u: string): Promise<Outputs | undefined> {
    let p = this.outputs.get(u);
    if (!p) {
      p = this.fetchOutputs(u);
      this.outputs.set(u, p);
      p.catch(() => this.outputs.delete(u));
    }
    return p;
  }

  private async fetchOutputs(u: string): Promise<Outputs | undefined> {
    const paths = this.paths(u);
    if (!this.customBackend(u)) {
      const st = readLocalState(paths.state);
      if (st.readable) return st.present ? st.outputs : undefined;
    }
    // A backend of the unit's own (or an encrypted state): ask OpenTofu, once, in its working copy.
    this.event(u, "output");
    const lock = await acquireLock(paths.lock, `unit ${u}`, this.o.lockTimeoutMs ?? 300_000, this.o.signal);
    try {
      const prep = prepareWorkDir(this.o.root, this.byName.get(u)!, paths, this.tofu);
      await this.init(u, prep);
      return await this.tofuOutput(u, paths);
    } finally {
      lock.release();
    }
  }

  /** `tofu output -json` in a prepared, initialised working copy (the caller holds the lock). */
  private async tofuOutput(u: string, paths: UnitPaths): Promise<Outputs | undefined> {
    const r = await runTofu(this.tofu, ["output", "-json", "-no-color"], {
      cwd: paths.config,
      env: this.tofuEnv(paths),
    });
    if (r.code !== 0)
      throw new SluiceError("ReconciliationFailed", `unit ${u}: tofu output failed: ${failureText(r)}`);
    let raw: unknown;
    try {
      raw = JSON.parse(r.stdout || "{}");
    } catch {
      throw new SluiceError("ReconciliationFailed", `unit ${u}: tofu output -json printed no JSON`);
    }
    const outs = normalize(raw);
    return Object.keys(outs).length ? outs : undefined;
  }

  /** Outputs right after this run applied the unit (lock held), cached for its dependents. */
  private async outputsAfterApply(u: string, paths: UnitPaths): Promise<Outputs> {
    let outs: Outputs | undefined;
    const st = this.customBackend(u) ? undefined : readLocalState(paths.state);
    if (st?.readable) outs = st.outputs;
    else outs = await this.tofuOutput(u, paths);
    this.outputs.set(u, Promise.resolve(st && !st.present ? undefined : (outs ?? {})));
    return outs ?? {};
  }

  async unit(name: string): Promise<UnitResult> {
    const action = this.o.action;
    const startedAt = Date.now();
    this.o.onEvent?.({ type: "start", unit: name, action, at: startedAt });
    const result: UnitResult = {
      unit: name,
      action,
      status: "ok",
      adds: 0,
      changes: 0,
      destroys: 0,
      startedAt,
      endedAt: startedAt,
      durationMs: 0,
    };
    try {
      await this.work(name, result);
    } catch (e) {
      result.status = "failed";
      result.message = this.masker.text((e as Error).message);
    }
    result.endedAt = Date.now();
    result.durationMs = result.endedAt - startedAt;
    if (result.message) result.message = this.masker.text(result.message);
    this.o.onEvent?.({ type: "done", unit: name, action, result, at: result.endedAt });
    return result;
  }

  private async work(name: string, result: UnitResult): Promise<void> {
    const o = this.o;
    const action = o.action;
    const unit = this.byName.get(name)!;
    if (action === "output") {
      await this.hooks(unit, "before", false);
      const outs = await this.readOutputs(name);
      this.remember(outs);
      if (!outs) {
        result.status = "skipped";
        result.message = `no state in environment ${o.env} (not applied)`;
      } else result.outputs = maskOutputs(outs);
      await this.hooks(unit, "after", false);
      return;
    }
    const paths = this.paths(name);
    const lock = await acquireLock(paths.lock, `unit ${name}`, o.lockTimeoutMs ?? 300_000, o.signal);
    try {
      if (action === "destroy" && !this.customBackend(name)) {
        const st = readLocalState(paths.state);
        if (st.readable && !st.present) {
          result.status = "skipped";
          result.message = "nothing to destroy";
          removeOutputsRecord(paths.outputs);
          return;
        }
      }
      // Dependency outputs: real when the dependency has state; mocks only for plan.
      const depOutputs = new Map<string, Outputs>();
      const mocked: string[] = [];
      for (const d of unit.dependencies ?? []) {
        const real = await this.readOutputs(d.name);
        if (real) {
          this.remember(real);
          depOutputs.set(d.name, real);
        } else if (action === "plan" && d.mockOutputs) {
          depOutputs.set(
            d.name,
            Object.fromEntries(
              Object.entries(d.mockOutputs).map(([k, v]) => [k, { value: v, sensitive: false }]),
            ),
          );
          mocked.push(d.name);
        } else {
          throw new SluiceError(
            "DependencyNotReady",
            action === "plan"
              ? `unit ${name}: dependency ${d.name} has no state in environment ${o.env} and no mockOutputs to plan with`
              : `unit ${name}: dependency ${d.name} has no state in environment ${o.env}; ${action} never uses mockOutputs`,
            {
              detail: { unit: name, dependency: d.name, env: o.env },
              hint:
                action === "plan"
                  ? `add mockOutputs to the dependency ${d.name} of unit ${name}, or apply ${d.name} first`
                  : `apply ${d.name} first (\`sluice stack apply --env ${o.env} ${d.name}\`, or the whole stack)`,
            },
          );
        }
      }
      if (mocked.length) result.mocked = mocked;
      const prep = prepareWorkDir(o.root, unit, paths, this.tofu);
      const inputs = await resolveInputs({
        root: o.root,
        stack: o.stack,
        unit,
        unitDir: secureResolve(o.root, unit.path),
        ...(o.environmentVars ? { environmentVars: o.environmentVars } : {}),
        ...(o.varsFiles ? { varsFiles: o.varsFiles } : {}),
        ...(o.vars ? { vars: o.vars } : {}),
        depOutputs,
        masker: this.masker,
      });
      writeInputs(paths, inputs);
      await this.hooks(unit, "before", false, paths.config);
      await this.init(name, prep);
      let r = await this.tofuAction(name, paths);
      if (r.code === 1 && NEEDS_INIT.test(failureText(r))) {
        await this.init(name, prep, true);
        r = await this.tofuAction(name, paths);
      }
      const s = r.messages.summary;
      if (s) {
        result.adds = s.add;
        result.changes = s.change;
        result.destroys = s.remove;
      }
      const ok = r.code === 0 || (action === "plan" && r.code === 2);
      if (!ok) {
        if (action !== "plan") this.outputs.delete(name);
        throw new SluiceError(
          "ReconciliationFailed",
          `unit ${name}: tofu ${action} failed: ${failureText(r)}`,
          {
            detail: { unit: name, action },
          },
        );
      }
      if (action === "plan") result.status = r.code === 2 ? "changes" : "ok";
      if (action === "apply") {
        const outs = await this.outputsAfterApply(name, paths);
        this.remember(outs);
        writeOutputsRecord(paths.outputs, outs);
        result.outputs = maskOutputs(outs);
      } else if (action === "destroy") {
        this.outputs.delete(name);
        removeOutputsRecord(paths.outputs);
      }
      await this.hooks(unit, "after", false, paths.config);
    } catch (e) {
      if (result.status !== "failed") {
        result.status = "failed";
        result.message = this.masker.text((e as Error).message);
        const cwd = existsSync(paths.config) ? paths.config : undefined;
        await this.hooks(unit, "after", true, cwd).catch(() => {});
      }
      throw e;
    } finally {
      lock.release();
    }
  }

  private tofuAction(name: string, paths: UnitPaths): Promise<TofuResult> {
    const action = this.o.action as Exclude<StackAction, "output">;
    this.event(name, action);
    const args =
      action === "plan"
        ? ["plan", "-json", "-input=false", "-detailed-exitcode", "-lock-timeout=60s"]
        : [action, "-json", "-input=false", "-auto-approve", "-lock-timeout=60s"];
    return runTofu(this.tofu, args, {
      cwd: paths.config,
      env: this.tofuEnv(paths),
      json: true,
      ...(this.o.signal ? { signal: this.o.signal } : {}),
    });
  }

  private remember(outs: Outputs | undefined) {
    for (const v of Object.values(outs ?? {})) if (v.sensitive) this.masker.add(v.value);
  }

  /** Runs the unit's hooks for this action; `failed`: after a failure (only runOnError hooks). */
  private async hooks(unit: StackUnitSpec, when: "before" | "after", failed: boolean, cwd?: string) {
    for (const h of hooksFor(unit, when, this.o.action)) {
      if (failed && !h.runOnError) continue;
      this.event(unit.name, `${when}-hook`);
      await runHook(h, when, {
        stack: this.o.stack.name,
        unit: unit.name,
        env: this.o.env,
        action: this.o.action,
        unitPath: unit.path,
        cwd: cwd ?? secureResolve(this.o.root, unit.path),
        ...(this.o.signal ? { signal: this.o.signal } : {}),
      }).catch((e: Error) => {
        throw new SluiceError("ReconciliationFailed", this.masker.text(e.message));
      });
    }
  }
}
