/**
 * The infra module's pieces that need no OpenTofu: the Stack schema, graph checks (cycles named,
 * unknown dependencies), input resolution (typed dependency outputs, layered ${VAR}, undeclared
 * dependencies), masking and the per-unit lock.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { loadConfig } from "../src/config/index.js";
import { checkStack, loadStacks, type StackDefinition } from "../src/infra/index.js";
import { resolveInputs } from "../src/infra/inputs.js";
import { acquireLock } from "../src/infra/lock.js";
import { Masker } from "../src/infra/mask.js";

const tmp = mkdtempSync(join(tmpdir(), "sluice-infra-unit-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function repo(name: string, files: Record<string, string>): string {
  const root = join(tmp, name);
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

function stackOf(units: unknown[], extra: Record<string, unknown> = {}): StackDefinition {
  return { name: "s", namespace: "flux-system", origin: "s.yaml#0", spec: { units, ...extra } as never };
}

test("the Stack kind is strict: unknown fields are errors naming the field", () => {
  const root = repo("strict", {
    "s.yaml":
      "apiVersion: sluice.dev/v1alpha1\nkind: Stack\nmetadata: {name: s}\nspec:\n  units:\n    - name: a\n      path: a\n      dependsOnn: [b]\n",
  });
  assert.throws(() => loadConfig(root, "."), /spec\.units\.0\.dependsOnn: unknown field/);
  const ok = repo("ok", {
    "s.yaml":
      "apiVersion: sluice.dev/v1alpha1\nkind: Stack\nmetadata: {name: s}\nspec:\n  units:\n    - {name: a, path: a, hooks: {before: [{command: [echo, hi], actions: [plan]}]}}\n",
  });
  assert.equal(loadStacks(ok, ".")[0]!.spec.units[0]!.hooks!.before![0]!.command[1], "hi");
});

test("the graph: order, cycles named in full, unknown dependencies", () => {
  assert.deepEqual(
    checkStack(
      stackOf([
        { name: "d", path: "d", dependsOn: ["b", "c"] },
        { name: "b", path: "b", dependencies: [{ name: "a" }] },
        { name: "c", path: "c", dependsOn: ["a"] },
        { name: "a", path: "a" },
      ]),
    ),
    ["a", "b", "c", "d"],
  );
  assert.throws(
    () =>
      checkStack(
        stackOf([
          { name: "a", path: "a", dependsOn: ["c"] },
          { name: "b", path: "b", dependsOn: ["a"] },
          { name: "c", path: "c", dependsOn: ["b"] },
        ]),
      ),
    /dependency cycle a → c → b → a|dependency cycle (\w) → (\w) → (\w) → \1/,
  );
  assert.throws(
    () => checkStack(stackOf([{ name: "a", path: "a", dependsOn: ["zz"] }])),
    /depends on zz, which is not a unit/,
  );
  assert.throws(
    () =>
      checkStack(
        stackOf([
          { name: "a", path: "a" },
          { name: "a", path: "b" },
        ]),
      ),
    /defined twice/,
  );
});

test("inputs: typed dependency outputs, layered ${VAR}, strict, undeclared dependencies refused", async () => {
  const root = repo("inputs", {
    "replace.json": JSON.stringify({ REGION: "root-region", TIER: "gold" }),
    "infra/replace.json": JSON.stringify({ REGION: "infra-region" }),
    "infra/app/main.tf": "",
    "infra/app/inputs.tfvars.json": JSON.stringify({ from_file: "${TIER}", region: "file-${REGION}" }),
  });
  const masker = new Masker();
  const unit = {
    name: "app",
    path: "infra/app",
    inputsFile: "inputs.tfvars.json",
    dependencies: [{ name: "vpc" }],
    inputs: {
      region: "${REGION}",
      ids: "${dependency.vpc.outputs.subnets}",
      url: "https://${dependency.vpc.outputs.host}:${PORT:-443}/x",
      secret: "${dependency.vpc.outputs.password}",
      literal: "$${NOT_A_VAR}",
      n: 3,
    },
  };
  const depOutputs = new Map([
    [
      "vpc",
      {
        subnets: { value: ["s1", "s2"], sensitive: false },
        host: { value: "h.example", sensitive: false },
        password: { value: "hunter2-pw", sensitive: true },
      },
    ],
  ]);
  const stack = stackOf([unit], { substitute: { TIER: "silver" } });
  const got = await resolveInputs({
    root,
    stack,
    unit: unit as never,
    unitDir: join(root, "infra/app"),
    depOutputs,
    masker,
  });
  assert.deepEqual(got, {
    from_file: "silver",
    region: "infra-region",
    ids: ["s1", "s2"],
    url: "https://h.example:443/x",
    secret: "hunter2-pw",
    literal: "${NOT_A_VAR}",
    n: 3,
  });
  assert.equal(masker.text("the password is hunter2-pw."), "the password is ***.");
  await assert.rejects(
    resolveInputs({
      root,
      stack,
      unit: { name: "app", path: "infra/app", inputs: { x: "${MISSING_ONE}" } } as never,
      unitDir: join(root, "infra/app"),
      depOutputs,
      masker,
    }),
    /unit app: inputs: .*MISSING_ONE/,
  );
  await assert.rejects(
    resolveInputs({
      root,
      stack,
      unit: { name: "app", path: "infra/app", inputs: { x: "${dependency.db.outputs.url}" } } as never,
      unitDir: join(root, "infra/app"),
      depOutputs,
      masker,
    }),
    /inputs use dependency\.db, but db is not in the unit's dependencies/,
  );
  await assert.rejects(
    resolveInputs({
      root,
      stack,
      unit: { ...unit, inputs: { x: "${dependency.vpc.outputs.nope}" }, inputsFile: undefined } as never,
      unitDir: join(root, "infra/app"),
      depOutputs,
      masker,
    }),
    /vpc has no output nope \(its outputs: host, password, subnets\)/,
  );
  await assert.rejects(
    resolveInputs({
      root,
      stack,
      unit: { name: "app", path: "infra/app", inputsFile: "../../../etc/passwd.json" } as never,
      unitDir: join(root, "infra/app"),
      depOutputs,
      masker,
    }),
    /outside the repository/,
  );
});

test("masking: nested values and JSON forms of sensitive outputs", () => {
  const m = new Masker();
  m.add({ user: "admin-user", pass: 'p"w\\d!' });
  const out = m.text(`login admin-user with p"w\\d! or ${JSON.stringify('p"w\\d!')} / {"pass":"x"}`);
  assert.ok(!out.includes("admin-user") && !out.includes('p"w\\d!'), out);
});

test("the unit lock: exclusive, waits bounded, taken over from a dead owner", async () => {
  const path = join(tmp, "locks", "a.lock");
  const l1 = await acquireLock(path, "unit a", 1000);
  await assert.rejects(acquireLock(path, "unit a", 200), /unit a is locked by another run \(pid \d+/);
  setTimeout(() => l1.release(), 150);
  const l2 = await acquireLock(path, "unit a", 2000);
  l2.release();
  writeFileSync(path, JSON.stringify({ pid: 2 ** 22 + 12345, since: "long ago" }));
  const l3 = await acquireLock(path, "unit a", 200);
  l3.release();
});
