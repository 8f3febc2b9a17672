// The peer side's substitution step: Flux-style `${VAR}` substitution over a YAML stream, as a
// script a kustomize user would put in a pipeline (`kubectl kustomize DIR | node envsubst.mjs
// K=V ...`). Supports `${V}`, `${V:=d}`, `${V=d}`, `${V:-d}`, `${V-d}` and the `$$` escape; an
// undefined variable without a default is an error (exit 1), like `sluice render`'s strict mode.
import { readFileSync } from "node:fs";

const vars = new Map();
for (const kv of process.argv.slice(2)) {
  const i = kv.indexOf("=");
  if (i <= 0) {
    process.stderr.write(`envsubst.mjs: expected NAME=value, got ${kv}\n`);
    process.exit(2);
  }
  vars.set(kv.slice(0, i), kv.slice(i + 1).replace(/\r?\n/g, ""));
}
const text = readFileSync(0, "utf8");
const missing = new Set();
const out = text.replace(/\$\$|\$\{([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[=-])([^}]*))?\}/g, (m, name, op, dflt) => {
  if (m === "$$") return "$";
  const v = vars.get(name);
  if (op === undefined) {
    if (v === undefined) missing.add(name);
    return v ?? "";
  }
  if (v === undefined || (op.startsWith(":") && v === "")) return dflt;
  return v;
});
if (missing.size > 0) {
  process.stderr.write(`envsubst.mjs: undefined variables: ${[...missing].join(", ")}\n`);
  process.exit(1);
}
process.stdout.write(out);
