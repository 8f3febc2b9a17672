/**
 * Branch (or pull request) → environment. An `Environments` object holds ordered rules; for each
 * branch of its source the first branch rule whose pattern matches decides the environment's name
 * (a template such as `preview-{{branch.slug}}`), target, variables, protection and TTL; each open
 * pull request whose base matches a `pullRequest` rule gets one too (`pr-{{pr.number}}`).
 *
 * Names are stable and collision-free: an environment keeps the name it was given (the registry
 * passes them in as `assigned`), and when two new branches would get the same name — `feature/A`
 * and `feature-a` slug alike — one keeps the plain name (the branch whose slug is itself, else the
 * first in order) and the other gets an 8-hex-digit suffix from its own key. Same inputs, same
 * names, whatever the listing order.
 */
import { createHash } from "node:crypto";
import type { EnvironmentRule, EnvironmentsSpec } from "../config/index.js";
import { parseDuration, SluiceError } from "../core/index.js";
import { slugifyBranch } from "../source/index.js";

export interface Environment {
  name: string;
  /** What identifies it across listings: `branch:<name>` or `pr:<number>`. */
  key: string;
  /** The branch it follows (null for a local override without a branch). */
  branch: string | null;
  /** The pull/merge request it previews. */
  prNumber: number | null;
  /** The rule that produced it: its branch pattern, or `pullRequest`. */
  rule: string;
  /** `local`, or `kubernetes:<context>`. */
  target: string;
  protected: boolean;
  ttlMs: number | null;
  /** Kubernetes isolation: the namespace every namespaced object goes to, if the rule asks. */
  namespace: string | null;
  /** The rule's `url`, expanded. */
  url: string | null;
  /** The rule's variables plus ENV, BRANCH, BRANCH_SLUG (and PR_NUMBER, SHA_SHORT when known). */
  vars: Record<string, string>;
}

/** An open pull/merge request as the forge reported it. */
export interface PullRequestRef {
  number: number;
  headRef: string;
  baseRef: string;
}

export interface ResolveOptions {
  /** Names given earlier (environment key → name): they are kept. */
  assigned?: ReadonlyMap<string, string>;
  /** Open pull requests, for `pullRequest` rules. */
  pullRequests?: Iterable<PullRequestRef>;
  /** Branch → commit, for `{{sha.short}}`. */
  commits?: ReadonlyMap<string, string>;
}

export interface Resolution {
  environments: Environment[];
  /** Branches that matched a rule but could not be given an environment, with why. */
  conflicts: string[];
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_NAME = 63;
const SUFFIX = 8;

/** Glob match for branch patterns: `*` within one path segment, `**` across segments, `?` one char. */
export function matchBranch(pattern: string, branch: string): boolean {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`${re}$`).test(branch);
}

/** What `{{…}}` can refer to. Values that are unknown where the template is used are absent. */
export interface TemplateContext {
  branch?: string;
  prNumber?: number;
  sha?: string;
  envName?: string;
  envUrl?: string;
}

const NAME_FIELDS = new Set(["branch", "branch.slug", "pr.number"]);

/**
 * Expands `{{branch}}`, `{{branch.slug}}`, `{{pr.number}}`, `{{sha.short}}`, `{{env.name}}` and
 * `{{env.url}}`. `allowed` limits the fields (names cannot use the commit: it changes each push).
 * @throws SluiceError ConfigInvalid for an unknown or unavailable field, naming `where`.
 */
export function expandTemplate(
  template: string,
  ctx: TemplateContext,
  where: string,
  allowed?: ReadonlySet<string>,
): string {
  return template.replace(/\{\{\s*([a-z.]+)\s*\}\}/g, (_m, field: string) => {
    if (allowed && !allowed.has(field)) {
      throw new SluiceError("ConfigInvalid", `${where}: {{${field}}} cannot be used here`, {
        hint: `use one of ${[...allowed].map((f) => `{{${f}}}`).join(", ")}`,
      });
    }
    let v: string | undefined;
    switch (field) {
      case "branch":
      case "branch.slug":
        // Names must be DNS labels, so {{branch}} is the slug in names; elsewhere the raw branch.
        v =
          ctx.branch === undefined
            ? undefined
            : field === "branch" && !allowed
              ? ctx.branch
              : slugifyBranch(ctx.branch);
        break;
      case "pr.number":
        v = ctx.prNumber === undefined ? undefined : String(ctx.prNumber);
        break;
      case "sha.short":
        v = ctx.sha?.slice(0, 10);
        break;
      case "env.name":
        v = ctx.envName;
        break;
      case "env.url":
        v = ctx.envUrl;
        break;
      default:
        throw new SluiceError("ConfigInvalid", `${where}: unknown template field {{${field}}}`, {
          hint: "known fields: branch, branch.slug, pr.number, sha.short, env.name, env.url",
        });
    }
    if (v === undefined)
      throw new SluiceError("ConfigInvalid", `${where}: {{${field}}} has no value for this environment`, {
        hint:
          field === "pr.number"
            ? "{{pr.number}} exists only for pullRequest rules"
            : "check which fields the rule provides",
      });
    return v;
  });
}

/** Expands a name template for a branch (`{{branch}}` is slugified, so the result is a valid name). */
export function expandName(template: string, branch: string): string {
  return expandTemplate(template, { branch }, "environment name", NAME_FIELDS);
}

function ruleLabel(rule: EnvironmentRule): string {
  return rule.branch ?? "pullRequest";
}

function shortHash(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex").slice(0, SUFFIX);
}

function suffixed(name: string, key: string): string {
  return `${name.slice(0, MAX_NAME - SUFFIX - 1).replace(/-+$/, "")}-${shortHash(key)}`;
}

/**
 * The environment a rule gives a branch (or pull request), named `name` — see
 * {@link resolveEnvironments} for how names are chosen.
 */
export function environmentFor(
  rule: EnvironmentRule,
  branch: string,
  opts: { name?: string; pr?: PullRequestRef; commit?: string } = {},
): Environment {
  const where = `Environments rule ${ruleLabel(rule)}`;
  const name = opts.name ?? baseName(rule, branch, opts.pr);
  const ttl = rule.ttl ? (parseDuration(rule.ttl) ?? null) : null;
  const ctx: TemplateContext = {
    branch,
    envName: name,
    ...(opts.pr ? { prNumber: opts.pr.number } : {}),
    ...(opts.commit ? { sha: opts.commit } : {}),
  };
  const url = rule.url ? expandTemplate(rule.url, ctx, `${where}: url`) : null;
  if (url !== null) ctx.envUrl = url;
  const namespace = rule.namespace ? expandTemplate(rule.namespace, ctx, `${where}: namespace`) : null;
  if (namespace !== null && (!NAME.test(namespace) || namespace.length > MAX_NAME))
    throw new SluiceError(
      "ConfigInvalid",
      `${where}: namespace ${JSON.stringify(namespace)} (for ${name}) is not a valid namespace name`,
      { hint: "lowercase letters, digits and '-', at most 63 characters" },
    );
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(rule.vars ?? {}))
    vars[k] = expandTemplate(v, ctx, `${where}: vars.${k}`);
  Object.assign(vars, { ENV: name, BRANCH: branch, BRANCH_SLUG: slugifyBranch(branch) });
  if (opts.pr) vars.PR_NUMBER = String(opts.pr.number);
  if (opts.commit) vars.SHA_SHORT = opts.commit.slice(0, 10);
  if (url !== null) vars.ENV_URL = url;
  return {
    name,
    key: opts.pr ? `pr:${opts.pr.number}` : `branch:${branch}`,
    branch,
    prNumber: opts.pr?.number ?? null,
    rule: ruleLabel(rule),
    target: rule.target ?? "local",
    protected: rule.protected ?? false,
    ttlMs: ttl,
    namespace,
    url,
    vars,
  };
}

function baseName(rule: EnvironmentRule, branch: string, pr?: PullRequestRef): string {
  const where = `Environments rule ${ruleLabel(rule)}: name`;
  const name = expandTemplate(
    rule.name,
    { branch, ...(pr ? { prNumber: pr.number } : {}) },
    where,
    NAME_FIELDS,
  );
  // A prefix plus a long slug: cut and suffix with a hash of the branch, as the slug itself is.
  if (name.length > MAX_NAME && NAME.test(name)) return suffixed(name, pr ? `pr:${pr.number}` : branch);
  if (!NAME.test(name) || name.length > MAX_NAME) {
    throw new SluiceError(
      "ConfigInvalid",
      `${where}: ${JSON.stringify(name)} (for ${pr ? `pull request ${pr.number}` : `branch ${branch}`}) is not a valid environment name`,
      {
        hint: "environment names are lowercase letters, digits and '-', at most 63 characters; use {{branch.slug}}",
      },
    );
  }
  return name;
}

interface Candidate {
  key: string;
  rule: EnvironmentRule;
  branch: string;
  pr?: PullRequestRef;
  base: string;
  /** The branch is its own slug: it has the best claim to the plain name. */
  exact: boolean;
}

/** Maps the branches (and open pull requests) of a source to environments. */
export function resolveEnvironments(
  spec: EnvironmentsSpec,
  branches: Iterable<string>,
  opts: ResolveOptions = {},
): Resolution {
  const conflicts: string[] = [];
  const candidates: Candidate[] = [];
  const add = (rule: EnvironmentRule, branch: string, pr?: PullRequestRef) => {
    try {
      const base = baseName(rule, branch, pr);
      candidates.push({
        key: pr ? `pr:${pr.number}` : `branch:${branch}`,
        rule,
        branch,
        ...(pr ? { pr } : {}),
        base,
        exact: !pr && slugifyBranch(branch) === branch,
      });
    } catch (e) {
      conflicts.push((e as Error).message);
    }
  };
  for (const branch of [...new Set(branches)].sort()) {
    const rule = spec.rules.find((r) => r.branch !== undefined && matchBranch(r.branch, branch));
    if (rule) add(rule, branch);
  }
  const prRule = spec.rules.find((r) => r.pullRequest !== undefined);
  if (prRule) {
    const base = typeof prRule.pullRequest === "object" ? prRule.pullRequest.base : undefined;
    for (const pr of [...(opts.pullRequests ?? [])].sort((a, b) => a.number - b.number)) {
      if (base === undefined || matchBranch(base, pr.baseRef)) add(prRule, pr.headRef, pr);
    }
  }

  // Names already given stay; then the best claim to each plain name; the rest get a suffix.
  const taken = new Map<string, string>(); // name → key
  const named = new Map<string, string>(); // key → name
  for (const c of candidates) {
    const prior = opts.assigned?.get(c.key);
    if (prior && (prior === c.base || prior === suffixed(c.base, c.key)) && !taken.has(prior)) {
      taken.set(prior, c.key);
      named.set(c.key, prior);
    }
  }
  const rest = candidates
    .filter((c) => !named.has(c.key))
    .sort((a, b) => Number(b.exact) - Number(a.exact) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const c of rest) {
    const name = taken.has(c.base) ? suffixed(c.base, c.key) : c.base;
    if (taken.has(name)) {
      conflicts.push(`${c.key} and ${taken.get(name)} both map to environment ${name}; ${c.key} is ignored`);
      continue;
    }
    taken.set(name, c.key);
    named.set(c.key, name);
  }
  const environments: Environment[] = [];
  for (const c of candidates) {
    const name = named.get(c.key);
    if (!name) continue;
    try {
      const commit = opts.commits?.get(c.branch);
      environments.push(
        environmentFor(c.rule, c.branch, {
          name,
          ...(c.pr ? { pr: c.pr } : {}),
          ...(commit ? { commit } : {}),
        }),
      );
    } catch (e) {
      conflicts.push((e as Error).message);
    }
  }
  return { environments, conflicts };
}

/** The one environment of a source without an `Environments` object: protected, no TTL. */
export function defaultEnvironment(name: string, branch: string): Environment {
  return {
    name,
    key: `branch:${branch}`,
    branch,
    prNumber: null,
    rule: branch,
    target: "local",
    protected: true,
    ttlMs: null,
    namespace: null,
    url: null,
    vars: { ENV: name, BRANCH: branch },
  };
}
