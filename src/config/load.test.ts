import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tree } from "../../test/support/tmp.js";
import { isSluiceError } from "../core/index.js";
import { byKind, loadConfig, parseDuration } from "./index.js";

const repo = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app, namespace: flux-system}
spec:
  url: http://127.0.0.1:1/app.git
  interval: 1m
  ref: {branch: main}
`;
const kust = `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: api, namespace: flux-system}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./deploy
  interval: 5m
  prune: true
  postBuild:
    substitute: {APP_NAME: api}
`;

function fails(files: Record<string, string>, re: RegExp) {
  const root = tree(files);
  assert.throws(
    () => loadConfig(root, "."),
    (e: unknown) => {
      assert.ok(isSluiceError(e, "ConfigInvalid"), String(e));
      assert.match(e.message, re);
      return true;
    },
  );
}

describe("configuration loading", () => {
  test("reads Flux and Sluice kinds from every YAML file, defaulting the namespace", () => {
    const root = tree({
      "clusters/local/apps.yaml": `${repo}---\n${kust}`,
      "clusters/local/envs.yaml":
        "apiVersion: sluice.dev/v1alpha1\nkind: Environments\nmetadata: {name: branches}\nspec:\n  sourceRef: {name: app}\n  rules: [{branch: main, name: production}]\n",
    });
    const c = loadConfig(root, "clusters");
    assert.equal(byKind(c, "Kustomization")[0]?.spec.postBuild?.substitute?.APP_NAME, "api");
    assert.equal(byKind(c, "Environments")[0]?.metadata.namespace, "flux-system");
    assert.equal(byKind(c, "GitRepository")[0]?.origin, "clusters/local/apps.yaml#0");
  });

  test("an unknown field names file, document, line and field path", () => {
    fails(
      { "apps.yaml": `${repo}---\n${kust.replace("prune: true", "prune: true\n  prunne: false")}` },
      /apps\.yaml: document 1, line 17: spec\.prunne: unknown field/,
    );
  });

  test("an unknown kind is an error listing the supported ones", () => {
    fails(
      { "x.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {}\n" },
      /x\.yaml: document 0, line 2: kind: unknown kind Widget/,
    );
  });

  test("an unsupported apiVersion of a known kind is an error", () => {
    fails(
      { "x.yaml": repo.replace("source.toolkit.fluxcd.io/v1", "source.toolkit.fluxcd.io/v1beta1") },
      /apiVersion source\.toolkit\.fluxcd\.io\/v1beta1 is not supported/,
    );
  });

  test("a bad duration and a missing required field are errors with their path", () => {
    fails({ "x.yaml": repo.replace("interval: 1m", "interval: soon") }, /spec\.interval: not a duration/);
    fails({ "x.yaml": kust.replace("  prune: true\n", "") }, /spec\.prune/);
  });

  test("the same object twice is an error", () => {
    fails({ "a.yaml": repo, "b.yaml": repo }, /GitRepository\/flux-system\/app is defined twice/);
  });

  test("ConfigMaps and Secrets are read as supporting data, Secret data decoded", () => {
    const root = tree({
      "s.yaml": `apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: ${Buffer.from("pw").toString("base64")}}\n`,
    });
    assert.deepEqual(loadConfig(root, ".").supporting[0]?.data, { password: "pw" });
  });
});

test("Go durations as Flux writes them", () => {
  assert.equal(parseDuration("1m"), 60_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("soon"), undefined);
  assert.equal(parseDuration("10"), undefined);
});
