import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { createLocalTarget } from "../src/targets/local/index.js";
import { sluice } from "./support/cli.js";
import { tree } from "./support/tmp.js";

const cm = (name: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}}\ndata: {v: "\${V}"}\n`;

test("sluice diff exits 1 when it differs and 0 in sync; apply --prune removes what PATH dropped", async (t) => {
  const root = tree({
    "app/a.yaml": cm("a"),
    "app/b.yaml": cm("b"),
    "app/ing.yaml": "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec: {}\n",
  });
  const state = join(root, "state");
  const common = ["--root", root, "--state-dir", state, "--env", "cli-test", "--var", "V=1"];
  t.after(async () => {
    const local = await createLocalTarget({ stateDir: join(state, "local") });
    await local.destroy({ env: "cli-test", unit: "app" });
    await local.close();
  });
  const d1 = await sluice(["diff", join(root, "app"), ...common]);
  assert.equal(d1.code, 1, d1.stderr);
  assert.match(d1.stdout, /created\s+ConfigMap\/a/);
  assert.match(d1.stdout, /not-applicable\s+Ingress\/i\s+not applicable on local/);
  const a1 = await sluice(["apply", join(root, "app"), ...common, "--wait"]);
  assert.equal(a1.code, 0, a1.stderr);
  assert.match(a1.stdout, /2 created, 1 not-applicable/);
  const d2 = await sluice(["diff", join(root, "app"), ...common]);
  assert.equal(d2.code, 0, d2.stdout);
  rmSync(join(root, "app/b.yaml"));
  writeFileSync(join(root, "app/a.yaml"), cm("a").replace('"${V}"', '"${V}-2"'));
  const a2 = await sluice(["apply", join(root, "app"), ...common, "--prune"]);
  assert.equal(a2.code, 0, a2.stderr);
  assert.match(a2.stdout, /configured\s+ConfigMap\/a/);
  assert.match(a2.stdout, /deleted\s+ConfigMap\/b/);
});
