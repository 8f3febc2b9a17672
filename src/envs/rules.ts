/**
 * Branch → environment. An `Environments` object holds ordered rules; for each branch of its
 * source the first rule whose pattern matches decides the environment's name (a template such as
 * `preview-{{branch.slug}}`), target, variables, protection and TTL. A branch that matches no
 * rule has no environment. Two branches that would produce the same environment name are a
 * conflict: the first (in branch-name order) wins and the others are reported, never merged.
 */
import type { EnvironmentRule, EnvironmentsSpec } from "../config/index.js";
import { parseDuration, SluiceError } from "../core/index.js";
import { slugifyBranch } from "../source/index.js";

export interface Environment {
  name: string;
  /** The branch it follows (null for a local override without a branch). */
  branch: string | null;
  /** The rule's branch pattern. */
  rule: string;
  /** `local`, or `kubernetes:<context>`. */
  target: string;
  protected: boolean;
  ttlMs: number | null;
  /** The rule's variables plus ENV, BRANCH and BRANCH_SLUG. */
  vars: Record<string, string>;
}

export interface Resolution {
  environments: Environment[];
  /** Branches that matched a rule but lost a name clash, with why. */
  conflicts: string[];
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

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

/** Expands `{{branch}}` (slugified too, so the result is a valid name) and `{{branch.slug}}`. */
export function expandName(template: string, branch: string): string {
  return template.replace(/\{\{\s*branch(\.slug)?\s*\}\}/g, () => slugifyBranch(branch));
}

export function environmentFor(rule: EnvironmentRule, branch: string): Environment {
  const name = expandName(rule.name, branch);
  if (!NAME.test(name) || name.length > 63) {
    throw new SluiceError(
      "ConfigInvalid",
      `Environments rule ${rule.branch}: name ${JSON.stringify(name)} (for branch ${branch}) is not a valid environment name`,
      {
        hint: "environment names are lowercase letters, digits and '-', at most 63 characters; use {{branch.slug}}",
      },
    );
  }
  const ttl = rule.ttl ? (parseDuration(rule.ttl) ?? null) : null;
  return {
    name,
    branch,
    rule: rule.branch,
    target: rule.target ?? "local",
    protected: rule.protected ?? false,
    ttlMs: ttl,
    vars: { ...rule.vars, ENV: name, BRANCH: branch, BRANCH_SLUG: slugifyBranch(branch) },
  };
}

/** Maps the branches of a source to environments, first matching rule wins. */
export function resolveEnvironments(spec: EnvironmentsSpec, branches: Iterable<string>): Resolution {
  const byName = new Map<string, Environment>();
  const conflicts: string[] = [];
  for (const branch of [...branches].sort()) {
    const rule = spec.rules.find((r) => matchBranch(r.branch, branch));
    if (!rule) continue;
    let env: Environment;
    try {
      env = environmentFor(rule, branch);
    } catch (e) {
      conflicts.push((e as Error).message);
      continue;
    }
    const prior = byName.get(env.name);
    if (prior) {
      conflicts.push(
        `branches ${prior.branch} and ${branch} both map to environment ${env.name}; ${branch} is ignored`,
      );
      continue;
    }
    byName.set(env.name, env);
  }
  return { environments: [...byName.values()], conflicts };
}
