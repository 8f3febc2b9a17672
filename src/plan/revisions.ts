/**
 * Plans between two revisions: what merging a pull request would change in every environment.
 *
 * Each side (base, head) is a directory holding one commit's files. The configuration (Flux and
 * Sluice kinds) is read from each side (or given once, for a server whose configuration lives
 * outside the repository), its environments resolved as the agent resolves them, and every unit
 * (environment × Kustomization) rendered exactly as the agent renders it: `spec.path` with the
 * environment's variables, the environment → substituteFrom → postBuild.substitute layers,
 * `targetNamespace`, and `sluice.dev` objects taken out (they never reach a target). The two
 * object sets of each unit are compared by identity; see objectdiff.ts for the masked diffs.
 *
 * Which environments: every rule whose branch is a literal name, plus the branches the two
 * revisions name (so `feature/*` previews appear when the head is such a branch), plus any given
 * explicitly. An environment present on one side only is all creations (or all deletions).
 *
 * Failures are part of the plan, not exceptions: a unit whose head does not render is an error
 * (exit 1); a unit whose base does not render (a pull request that fixes a broken build) is
 * compared against nothing and carries the base's error as a note.
 */
import { existsSync } from "node:fs";
import {
  byKind,
  type Config,
  type ConfigObject,
  type EnvironmentsSpec,
  type KustomizationSpec,
  loadConfig,
} from "../config/index.js";
import { errorMessage, type KubeObject, SluiceError, secureResolve } from "../core/index.js";
import {
  defaultEnvironment,
  type Environment,
  type PullRequestRef,
  resolveEnvironments,
} from "../envs/index.js";
import {
  readUnitOutputs,
  runStack,
  stackFromConfig,
  stackOutputsAsVariables,
  type TofuOptions,
} from "../infra/index.js";
import { envsubst, render, type VariableLayer } from "../render/index.js";
import type { AgeIdentities } from "../sops/index.js";
import { diffObjectSets, type ObjectPlan } from "./objectdiff.js";
import { checkoutRevision, resolveRevision } from "./refs.js";
import type { ChangeSet } from "./types.js";

/** One side of a plan: a directory holding a commit's files. */
export interface PlanSide {
  dir: string;
  /** What to call it in output (`main`, `pull/12/head`). */
  label: string;
  commit?: string;
  /** The branch it is, if any (drives which environments are planned). */
  branch?: string;
}

/** What the live target would do with the head's objects of one unit (Target.plan). */
export type LivePlanner = (env: Environment, unit: string, objects: KubeObject[]) => Promise<ChangeSet>;

export interface PlanOptions {
  base: PlanSide;
  head: PlanSide;
  /** The configuration path inside each side's directory (default `sluice`). */
  configPath?: string;
  /** A fixed configuration for both sides instead (the server's, when it lives outside the repository). */
  config?: Config;
  /** Only units of this GitRepository (`namespace/name`): the repository the pull request belongs to. */
  source?: string;
  /** Only these environments (default: all). */
  environments?: string[];
  /** Further branch names to resolve environments for (e.g. every `feature/*` preview). */
  branches?: string[];
  /** The pull request being planned: its `pullRequest`-rule environment is planned too. */
  pullRequest?: PullRequestRef;
  ageIdentities?: AgeIdentities;
  /** `--var`: variables above every layer, for both sides (e.g. what the engine sets, like IMAGE_URL). */
  vars?: Record<string, string>;
  /** Called with the environment names once they are known, before anything renders. */
  onEnvironments?: (names: string[]) => void | Promise<void>;
  /** `--live`: also ask the target what applying the head would change. */
  live?: LivePlanner;
  /**
   * Infrastructure: `tofu plan` every `Stack` of the head's configuration in every planned
   * environment, against the state in `stateDir` (`sluice stack`'s), and add the summaries.
   */
  stacks?: { stateDir: string; tofu?: TofuOptions; parallelism?: number };
}

/** One stack unit's OpenTofu plan in one environment. */
export interface StackPlanEntry {
  env: string;
  stack: string;
  unit: string;
  status: "changes" | "unchanged" | "failed" | "skipped";
  adds: number;
  changes: number;
  destroys: number;
  /** Dependencies whose mockOutputs were used (no state yet). */
  mocked?: string[];
  message?: string;
}

export interface UnitCounts {
  create: number;
  update: number;
  delete: number;
  unchanged: number;
}

export interface UnitPlan {
  unit: string;
  status: "changed" | "unchanged" | "error";
  counts: UnitCounts;
  /** Only the objects that change, each with its masked diff. */
  objects: ObjectPlan[];
  /** The head does not render (the plan fails). */
  error?: string;
  /** The base did not render: the head is compared against nothing. */
  baseError?: string;
  /** With `live`: what the target would do with the head's objects. */
  live?: { changeSet: ChangeSet } | { error: string };
}

export interface EnvironmentPlan {
  name: string;
  branch: string | null;
  target: string;
  /** `added`/`removed`: the environment exists at one side only. */
  presence: "both" | "added" | "removed";
  status: "changed" | "unchanged" | "error";
  units: UnitPlan[];
}

export interface RevisionPlan {
  base: { label: string; commit?: string };
  head: { label: string; commit?: string };
  environments: EnvironmentPlan[];
  summary: {
    changed: number;
    unchanged: number;
    errors: number;
    create: number;
    update: number;
    delete: number;
    /** With live: objects the target would create, configure or delete. */
    live?: number;
  };
  /** Notes that are not errors (a side without configuration, name conflicts, …). */
  notes: string[];
  /** With `stacks`: the OpenTofu plan of every stack unit, per environment. */
  stacks?: StackPlanEntry[];
  /** `terraform plan -detailed-exitcode`: 0 nothing changes, 2 something does, 1 error. */
  exitCode: 0 | 1 | 2;
}

interface PlannedEnv {
  env: Environment;
  source: string;
  units: ConfigObject<"Kustomization">[];
}

interface Side {
  config: Config;
  envs: Map<string, PlannedEnv>;
}

const DEFAULT_ENV = "default";
export const DEFAULT_CONFIG_PATH = "sluice";

/** Plans between two directories (the core of `sluice plan` and of pull-request plans). */
export async function planTrees(opts: PlanOptions): Promise<RevisionPlan> {
  const notes: string[] = [];
  const extraBranches = [opts.base.branch, opts.head.branch, ...(opts.branches ?? [])].filter(
    (b): b is string => !!b,
  );
  const base = readSide(opts, opts.base, extraBranches, notes);
  const head = readSide(opts, opts.head, extraBranches, notes);
  if (!base && !head) {
    const p = opts.configPath ?? DEFAULT_CONFIG_PATH;
    throw new SluiceError(
      "NotFound",
      `neither ${opts.base.label} nor ${opts.head.label} has a configuration at ${p}`,
      {
        hint: "pass --config with the path of the Sluice/Flux configuration inside the repository",
      },
    );
  }
  const empty: Side = { config: { objects: [], supporting: [] }, envs: new Map() };
  const b = base ?? empty;
  const h = head ?? empty;
  let names = [...new Set([...b.envs.keys(), ...h.envs.keys()])].sort();
  if (opts.environments?.length) {
    const unknown = opts.environments.filter((e) => !names.includes(e));
    if (unknown.length)
      throw new SluiceError("NotFound", `no environment ${unknown.join(", ")} at either revision`, {
        hint: names.length
          ? `environments: ${names.join(", ")}`
          : "the configuration defines no environments",
      });
    names = names.filter((n) => opts.environments!.includes(n));
  }
  if (opts.onEnvironments) await opts.onEnvironments(names);
  const environments: EnvironmentPlan[] = [];
  for (const name of names) {
    const be = b.envs.get(name);
    const he = h.envs.get(name);
    const env = (he ?? be)!.env;
    const unitNames = [
      ...new Set([...(be?.units ?? []), ...(he?.units ?? [])].map((k) => k.metadata.name)),
    ].sort();
    const units: UnitPlan[] = [];
    for (const unit of unitNames) {
      const bk = be?.units.find((k) => k.metadata.name === unit);
      const hk = he?.units.find((k) => k.metadata.name === unit);
      units.push(await planUnit(opts, unit, be && bk ? [b, be, bk] : null, he && hk ? [h, he, hk] : null));
    }
    const status = units.some((u) => u.status === "error")
      ? "error"
      : units.some((u) => u.status === "changed") || (be === undefined) !== (he === undefined)
        ? "changed"
        : "unchanged";
    environments.push({
      name,
      branch: env.branch,
      target: env.target,
      presence: be && he ? "both" : he ? "added" : "removed",
      status,
      units,
    });
  }
  const summary: RevisionPlan["summary"] = {
    changed: environments.filter((e) => e.status === "changed").length,
    unchanged: environments.filter((e) => e.status === "unchanged").length,
    errors: environments.filter((e) => e.status === "error").length,
    create: 0,
    update: 0,
    delete: 0,
  };
  let live = 0;
  for (const e of environments)
    for (const u of e.units) {
      summary.create += u.counts.create;
      summary.update += u.counts.update;
      summary.delete += u.counts.delete;
      if (u.live && "changeSet" in u.live)
        live += u.live.changeSet.entries.filter((x) =>
          ["created", "configured", "deleted"].includes(x.action),
        ).length;
      if (u.live && "error" in u.live) summary.errors++;
    }
  if (opts.live) summary.live = live;
  const stacks = opts.stacks
    ? await planStacks(
        opts,
        environments.map((e) => e.name),
      )
    : undefined;
  const stackErrors = stacks?.some((x) => x.status === "failed") ?? false;
  const stackChanges = stacks?.some((x) => x.status === "changes") ?? false;
  const exitCode: 0 | 1 | 2 =
    summary.errors > 0 || stackErrors ? 1 : summary.changed > 0 || live > 0 || stackChanges ? 2 : 0;
  return {
    base: { label: opts.base.label, ...(opts.base.commit ? { commit: opts.base.commit } : {}) },
    head: { label: opts.head.label, ...(opts.head.commit ? { commit: opts.head.commit } : {}) },
    environments,
    summary,
    notes,
    ...(stacks ? { stacks } : {}),
    exitCode,
  };
}

/** `tofu plan` of each Stack of the head, per environment (units in parallel as the graph allows). */
async function planStacks(opts: PlanOptions, envs: string[]): Promise<StackPlanEntry[]> {
  const o = opts.stacks!;
  let config: Config;
  try {
    config =
      opts.config ??
      loadConfig(opts.head.dir, secureResolve(opts.head.dir, opts.configPath ?? DEFAULT_CONFIG_PATH));
  } catch {
    return [];
  }
  const out: StackPlanEntry[] = [];
  for (const obj of byKind(config, "Stack")) {
    for (const env of envs) {
      try {
        const r = await runStack({
          root: opts.head.dir,
          stack: stackFromConfig(obj),
          action: "plan",
          env,
          stateDir: o.stateDir,
          ...(o.tofu ? { tofu: o.tofu } : {}),
          ...(o.parallelism ? { parallelism: o.parallelism } : {}),
        });
        for (const u of r.units)
          out.push({
            env,
            stack: obj.metadata.name,
            unit: u.unit,
            status: u.status === "ok" ? "unchanged" : u.status,
            adds: u.adds,
            changes: u.changes,
            destroys: u.destroys,
            ...(u.mocked?.length ? { mocked: u.mocked } : {}),
            ...(u.message ? { message: u.message } : {}),
          });
      } catch (e) {
        out.push({
          env,
          stack: obj.metadata.name,
          unit: "*",
          status: "failed",
          adds: 0,
          changes: 0,
          destroys: 0,
          message: errorMessage(e),
        });
      }
    }
  }
  return out;
}

export interface RevisionPlanOptions extends Omit<PlanOptions, "base" | "head"> {
  /** A Git working copy or bare repository holding both revisions. */
  repo: string;
  base: string;
  head: string;
}

/** Plans between two revisions of a local repository (checked out privately, removed after). */
export async function planRevisions(opts: RevisionPlanOptions): Promise<RevisionPlan> {
  const baseRev = await resolveRevision(opts.repo, opts.base, "--base");
  const headRev = await resolveRevision(opts.repo, opts.head, "--head");
  const base = await checkoutRevision(opts.repo, baseRev);
  try {
    const head = await checkoutRevision(opts.repo, headRev);
    try {
      return await planTrees({
        ...opts,
        base: {
          dir: base.dir,
          label: opts.base,
          commit: base.commit,
          ...(base.branch ? { branch: base.branch } : {}),
        },
        head: {
          dir: head.dir,
          label: opts.head,
          commit: head.commit,
          ...(head.branch ? { branch: head.branch } : {}),
        },
      });
    } finally {
      head.remove();
    }
  } finally {
    base.remove();
  }
}

// --- one side -------------------------------------------------------------------------------

function readSide(opts: PlanOptions, side: PlanSide, branches: string[], notes: string[]): Side | undefined {
  let config: Config;
  if (opts.config) config = opts.config;
  else {
    const p = opts.configPath ?? DEFAULT_CONFIG_PATH;
    let abs: string;
    try {
      abs = secureResolve(side.dir, p);
    } catch (e) {
      if (existsSync(side.dir)) {
        notes.push(`${side.label}: no configuration at ${p} (${errorMessage(e)})`);
        return undefined;
      }
      throw e;
    }
    if (!existsSync(abs)) {
      notes.push(`${side.label}: no configuration at ${p}; treated as empty`);
      return undefined;
    }
    try {
      config = loadConfig(side.dir, p);
    } catch (e) {
      throw new SluiceError(
        "ConfigInvalid",
        `${side.label}: the configuration does not load: ${errorMessage(e)}`,
        { cause: e },
      );
    }
  }
  return { config, envs: environmentsOf(config, opts, branches, side.label, notes) };
}

function isLiteralBranch(pattern: string | undefined): pattern is string {
  return pattern !== undefined && !/[*?]/.test(pattern);
}

/** The environments a configuration defines, as the agent would resolve them for these branches. */
function environmentsOf(
  config: Config,
  opts: PlanOptions,
  extraBranches: string[],
  label: string,
  notes: string[],
): Map<string, PlannedEnv> {
  const repos = byKind(config, "GitRepository");
  const envObjs = byKind(config, "Environments");
  const out = new Map<string, PlannedEnv>();
  for (const repo of repos) {
    const key = `${repo.metadata.namespace}/${repo.metadata.name}`;
    if (opts.source && key !== opts.source) continue;
    const units = byKind(config, "Kustomization").filter(
      (k) => `${k.spec.sourceRef.namespace ?? k.metadata.namespace}/${k.spec.sourceRef.name}` === key,
    );
    const environments = envObjs.find(
      (e) => e.spec.sourceRef.name === repo.metadata.name && e.metadata.namespace === repo.metadata.namespace,
    );
    const wanted: Environment[] = [];
    if (environments) {
      const spec = environments.spec as EnvironmentsSpec;
      const branches = new Set(extraBranches);
      for (const r of spec.rules) if (isLiteralBranch(r.branch)) branches.add(r.branch);
      // Both sides see the head's commit for `{{sha.short}}`, so that alone never shows as a change.
      const commit = opts.head.commit;
      const res = resolveEnvironments(spec, branches, {
        ...(opts.pullRequest ? { pullRequests: [opts.pullRequest] } : {}),
        ...(commit
          ? { commits: new Map([...branches, opts.pullRequest?.headRef ?? ""].map((b) => [b, commit])) }
          : {}),
      });
      for (const c of res.conflicts) notes.push(`${label}: ${c}`);
      wanted.push(...res.environments);
    } else {
      const branch = repo.spec.ref?.branch ?? "main";
      const name =
        repo.metadata.name === DEFAULT_ENV || repos.length === 1 ? DEFAULT_ENV : repo.metadata.name;
      wanted.push(defaultEnvironment(name, branch));
    }
    for (const env of wanted) {
      if (out.has(env.name)) {
        notes.push(`${label}: two sources define environment ${env.name}; the first is planned`);
        continue;
      }
      out.set(env.name, { env, source: key, units });
    }
  }
  return out;
}

// --- one unit -------------------------------------------------------------------------------

type UnitSide = [Side, PlannedEnv, ConfigObject<"Kustomization">] | null;

async function planUnit(opts: PlanOptions, unit: string, base: UnitSide, head: UnitSide): Promise<UnitPlan> {
  let baseObjects: KubeObject[] = [];
  let baseError: string | undefined;
  if (base) {
    try {
      baseObjects = await renderUnit(opts, opts.base, base);
    } catch (e) {
      baseError = errorMessage(e);
    }
  }
  let headObjects: KubeObject[] = [];
  if (head) {
    try {
      headObjects = await renderUnit(opts, opts.head, head);
    } catch (e) {
      return {
        unit,
        status: "error",
        counts: { create: 0, update: 0, delete: 0, unchanged: 0 },
        objects: [],
        error: errorMessage(e),
        ...(baseError ? { baseError } : {}),
      };
    }
  }
  const d = diffObjectSets(baseObjects, headObjects);
  const changed = d.counts.create + d.counts.update + d.counts.delete > 0 || (!!baseError && !!head);
  const plan: UnitPlan = {
    unit,
    status: changed ? "changed" : "unchanged",
    counts: d.counts,
    objects: d.objects,
    ...(baseError ? { baseError } : {}),
  };
  if (opts.live && head) {
    try {
      plan.live = { changeSet: await opts.live(head[1].env, unit, headObjects) };
    } catch (e) {
      plan.live = { error: errorMessage(e) };
    }
  }
  return plan;
}

function supportingData(
  config: Config,
  kind: "ConfigMap" | "Secret",
  namespace: string,
  name: string,
  origin: string,
  optional: boolean,
): Record<string, string> {
  const o = config.supporting.find(
    (s) => s.kind === kind && s.metadata.namespace === namespace && s.metadata.name === name,
  );
  if (!o) {
    if (optional) return {};
    throw new SluiceError(
      "ConfigInvalid",
      `${origin}: ${kind} ${namespace}/${name} is referenced but not defined in the configuration`,
    );
  }
  return o.data;
}

async function renderUnit(
  opts: PlanOptions,
  side: PlanSide,
  [s, pe, kust]: [Side, PlannedEnv, ConfigObject<"Kustomization">],
): Promise<KubeObject[]> {
  const spec = kust.spec as KustomizationSpec;
  const sub = envsubst(spec.path ?? "./", new Map(Object.entries(pe.env.vars)), { strict: true });
  if (sub.missing.length)
    throw new SluiceError(
      "BuildFailed",
      `Kustomization ${kust.metadata.name}: spec.path uses undefined variables ${sub.missing.join(", ")}`,
    );
  const unitVars: VariableLayer[] = [];
  for (const ref of spec.postBuild?.substituteFrom ?? []) {
    if (ref.kind === "StackOutputs") {
      // Infrastructure outputs as applied in this environment on this machine (`sluice stack apply`).
      const dir = process.env.SLUICE_STATE_DIR ?? ".sluice/state";
      if (!readUnitOutputs(dir, pe.env.name, ref.name, ref.unit)) {
        if (ref.optional) continue;
        throw new SluiceError(
          "DependencyNotReady",
          `Kustomization ${kust.metadata.name}: stack unit ${ref.name}/${ref.unit} has no outputs in ${dir} for environment ${pe.env.name}`,
          { hint: "run `sluice stack apply` first, or set SLUICE_STATE_DIR" },
        );
      }
      const o = stackOutputsAsVariables(dir, pe.env.name, ref.name, ref.unit);
      unitVars.push({ source: o.source, vars: o.vars });
      continue;
    }
    unitVars.push({
      source: `${ref.kind} ${ref.name}`,
      vars: supportingData(
        s.config,
        ref.kind,
        kust.metadata.namespace,
        ref.name,
        kust.origin,
        ref.optional ?? false,
      ),
    });
  }
  if (spec.postBuild?.substitute)
    unitVars.push({ source: "postBuild.substitute", vars: spec.postBuild.substitute });
  const result = await render({
    root: side.dir,
    path: sub.output,
    environmentVars: pe.env.vars,
    unitVars,
    allowUndefined: spec.postBuild?.allowUndefined ?? false,
    ...(opts.vars ? { vars: opts.vars } : {}),
    ...(opts.ageIdentities ? { ageIdentities: opts.ageIdentities } : {}),
  });
  let objects = result.objects.filter((o) => !o.apiVersion.startsWith("sluice.dev/"));
  if (spec.targetNamespace)
    objects = objects.map((o) => ({
      ...o,
      metadata: { ...o.metadata, namespace: o.metadata.namespace ?? spec.targetNamespace },
    }));
  return objects;
}
