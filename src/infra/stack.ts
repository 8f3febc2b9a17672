/** Reading Stacks from the repository and checking their graphs. */
import { byKind, type ConfigObject, loadConfig } from "../config/index.js";
import { SluiceError } from "../core/index.js";
import { unitGraph } from "./graph.js";
import type { StackDefinition, StackUnitSpec } from "./types.js";

/** Every Stack in the YAML files under `path` (a file or directory inside `root`). */
export function loadStacks(root: string, path: string): StackDefinition[] {
  return byKind(loadConfig(root, path), "Stack").map(stackFromConfig);
}

export function stackFromConfig(o: ConfigObject<"Stack">): StackDefinition {
  return { name: o.metadata.name, namespace: o.metadata.namespace, origin: o.origin, spec: o.spec };
}

/** The one Stack named `name` (or the only one) among `stacks`. */
export function pickStack(stacks: readonly StackDefinition[], name: string | undefined, where: string) {
  if (stacks.length === 0)
    throw new SluiceError("NotFound", `no Stack (sluice.dev/v1alpha1) in ${where}`, {
      hint: "point --dir at the directory or file holding the Stack",
    });
  if (name === undefined) {
    if (stacks.length > 1)
      throw new SluiceError(
        "ConfigInvalid",
        `${where} holds ${stacks.length} Stacks (${stacks.map((s) => s.name).join(", ")}); name one`,
        { hint: "use --stack NAME" },
      );
    return stacks[0]!;
  }
  const s = stacks.find((x) => x.name === name);
  if (!s)
    throw new SluiceError("NotFound", `no Stack named ${name} in ${where}`, {
      hint: `Stacks there: ${stacks.map((x) => x.name).join(", ")}`,
    });
  return s;
}

/** Units that must run before `u`: dependsOn ∪ dependencies. */
export function depsOf(u: StackUnitSpec): string[] {
  return [...new Set([...(u.dependsOn ?? []), ...(u.dependencies ?? []).map((d) => d.name)])];
}

/**
 * Checks names and the graph; returns the units in dependency order. A cycle refuses the whole
 * stack up front (naming it), so nothing in or after it is ever applied.
 */
export function checkStack(stack: StackDefinition): string[] {
  const where = `${stack.origin}: Stack ${stack.name}`;
  const seen = new Set<string>();
  for (const u of stack.spec.units) {
    if (seen.has(u.name))
      throw new SluiceError("ConfigInvalid", `${where}: unit ${u.name} is defined twice`, {
        detail: { stack: stack.name, unit: u.name },
      });
    seen.add(u.name);
    const deps = new Set<string>();
    for (const d of u.dependencies ?? []) {
      if (deps.has(d.name))
        throw new SluiceError("ConfigInvalid", `${where}: unit ${u.name} lists dependency ${d.name} twice`);
      deps.add(d.name);
    }
    if (u.inputsFile !== undefined && !u.inputsFile.endsWith(".json"))
      throw new SluiceError(
        "ConfigInvalid",
        `${where}: unit ${u.name}: inputsFile ${u.inputsFile} must be a JSON file (inputs.tfvars.json)`,
      );
  }
  const g = unitGraph(stack.spec.units.map((u) => ({ name: u.name, deps: depsOf(u) })));
  const m = g.missing[0];
  if (m)
    throw new SluiceError(
      "ConfigInvalid",
      `${where}: unit ${m.unit} depends on ${m.dependency}, which is not a unit of this stack`,
      { detail: { stack: stack.name, unit: m.unit, dependency: m.dependency } },
    );
  const c = g.cycles[0];
  if (c)
    throw new SluiceError(
      "DependencyCycle",
      `${where}: dependency cycle ${[...c, c[0]].join(" → ")}; nothing in the stack is run`,
      { detail: { stack: stack.name, cycle: c }, hint: "remove one of the dependsOn/dependencies edges" },
    );
  return g.order;
}
