import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { sluice } from "./support/cli.js";
import { tree } from "./support/tmp.js";

const cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "${NAME}"}\ndata: {port: "${PORT}"}\n';

describe("sluice render", () => {
  test("prints the rendered objects as YAML and exits 0", async () => {
    const root = tree({ "app/cm.yaml": cm, "replace.json": '{"NAME": "web", "PORT": 8000}' });
    const r = await sluice(["render", join(root, "app"), "--root", root]);
    assert.equal(r.code, 0, r.stderr);
    const docs = parseAllDocuments(r.stdout).map((d) => (d as any).toJS());
    assert.deepEqual(docs, [
      { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "web" }, data: { port: "8000" } },
    ]);
  });

  test("-o json prints a JSON array; --var beats the files", async () => {
    const root = tree({ "cm.yaml": cm, "replace.json": '{"NAME": "web", "PORT": 8000}' });
    const r = await sluice(["render", root, "--root", root, "-o", "json", "--var", "NAME=api"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout)[0].metadata.name, "api");
  });

  test("Secret values are masked unless --show-secrets", async () => {
    const root = tree({
      "s.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n",
    });
    const masked = await sluice(["render", root, "--root", root]);
    assert.doesNotMatch(masked.stdout, /hunter2/);
    assert.match(masked.stdout, /password: "\*\*\*"/);
    const shown = await sluice(["render", root, "--root", root, "--show-secrets"]);
    assert.match(shown.stdout, /hunter2/);
  });

  for (const [what, files, re] of [
    ["malformed YAML", { "a.yaml": "kind: [\n" }, /a\.yaml: document 0, line/],
    ["an undefined variable", { "a.yaml": cm }, /undefined variables \(NAME, PORT\)/],
    ["YAML that is not Kubernetes", { "a.yaml": "hello: world\n" }, /not a Kubernetes object/],
  ] as const) {
    test(`${what}: exit 2, an explanation on stderr, nothing on stdout`, async () => {
      const root = tree(files as Record<string, string>);
      const r = await sluice(["render", root, "--root", root]);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, re);
      assert.match(r.stderr, /^error: /);
    });
  }

  test("--allow-undefined renders empty strings", async () => {
    const root = tree({
      "a.yaml": 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: "${NOPE}"}\n',
    });
    const r = await sluice(["render", root, "--root", root, "--allow-undefined", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout)[0].data.a, "");
  });

  test("a local override supplies the environment's variables", async () => {
    const root = tree({
      "a.yaml": 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "app-${ENV}"}\ndata: {r: "${REPLICAS}"}\n',
    });
    mkdirSync(join(root, ".sluice"));
    writeFileSync(join(root, ".sluice", "override.yaml"), "config: staging\nvars: {REPLICAS: '1'}\n");
    const r = await sluice(["render", root, "--root", root, "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout)[0].metadata.name, "app-staging");
  });
});
