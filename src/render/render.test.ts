import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tree } from "../../test/support/tmp.js";
import { isSluiceError } from "../core/index.js";
import { render, toYamlStream } from "./index.js";

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: \${APP_NAME}
  namespace: \${NS:=default}
spec:
  replicas: \${REPLICAS}
  template:
    spec:
      containers:
        - name: app
          image: \${IMAGE_URL}
          ports:
            - containerPort: \${CONTAINER_PORT}
          env:
            - name: PORT
              value: "\${CONTAINER_PORT}"
            - name: DEBUG
              value: \${DEBUG}
`;

async function rejects(p: Promise<unknown>, code: string, re: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isSluiceError(e), `expected a SluiceError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

describe("render of a plain directory", () => {
  test("substitutes variables and re-types unquoted scalars, keeping quoted ones strings", async () => {
    const root = tree({
      "replace.json": JSON.stringify({
        APP_NAME: "replace-api",
        CONTAINER_PORT: 8000,
        REPLICAS: 2,
        DEBUG: true,
      }),
      "deploy/app.yaml": deployment,
    });
    const { objects } = await render({
      root,
      path: "deploy",
      vars: { IMAGE_URL: "localhost:5000/replace-api:abc" },
    });
    assert.equal(objects.length, 1);
    const d = objects[0] as any;
    assert.equal(d.metadata.name, "replace-api");
    assert.equal(d.metadata.namespace, "default");
    assert.equal(d.spec.replicas, 2);
    const c = d.spec.template.spec.containers[0];
    assert.equal(c.image, "localhost:5000/replace-api:abc");
    assert.equal(c.ports[0].containerPort, 8000);
    assert.deepEqual(c.env[0], { name: "PORT", value: "8000" });
    assert.deepEqual(c.env[1], { name: "DEBUG", value: "true" }, "env values are strings in Kubernetes");
  });

  test("strict by default: every undefined variable is listed with its object and field", async () => {
    const root = tree({ "app.yaml": deployment });
    await rejects(
      render({ root, path: "." }),
      "VariableUndefined",
      /5 undefined variables \(APP_NAME, REPLICAS, IMAGE_URL, CONTAINER_PORT, DEBUG\)/,
    );
    try {
      await render({ root, path: "." });
    } catch (e: any) {
      assert.match(
        e.message,
        /\$\{APP_NAME\} in Deployment\/\$\{NS:=default\}\/\$\{APP_NAME\} at metadata\.name/,
      );
      assert.match(e.message, /\$\{IMAGE_URL\} in .* at spec\.template\.spec\.containers\[0\]\.image/);
      assert.match(
        e.message,
        /\$\{CONTAINER_PORT\} in .* at spec\.template\.spec\.containers\[0\]\.env\[0\]\.value/,
      );
      assert.doesNotMatch(e.message, /^\s+\$\{NS/m, "a variable with a default is not missing");
    }
  });

  test("--allow-undefined gives Flux's empty strings", async () => {
    const root = tree({
      "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: 'x${MISSING}y'\n",
    });
    const { objects } = await render({ root, path: ".", allowUndefined: true });
    assert.equal((objects[0] as any).data.a, "xy");
  });

  test("$${VAR} escapes to a literal ${VAR}; a bare $VAR is left alone", async () => {
    const root = tree({
      "cm.yaml":
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: 'echo $${HOME} $HOME ${X}'\n",
    });
    const { objects } = await render({ root, path: ".", vars: { X: "1" } });
    assert.equal((objects[0] as any).data.a, "echo ${HOME} $HOME 1");
  });

  test("objects labelled or annotated substitute: disabled are left untouched", async () => {
    const root = tree({
      "a.yaml":
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {kustomize.toolkit.fluxcd.io/substitute: disabled}\ndata: {s: '${1:-default}'}\n",
      "b.yaml":
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations: {kustomize.toolkit.fluxcd.io/substitute: disabled}\ndata: {s: '${UNSET}'}\n",
    });
    const { objects } = await render({ root, path: "." });
    assert.equal((objects[0] as any).data.s, "${1:-default}");
    assert.equal((objects[1] as any).data.s, "${UNSET}");
  });

  test("variable layers: root < environment < nearer directories < unit < --vars-file < --var", async () => {
    const names = ["A", "B", "C", "D", "E", "F"];
    const cm = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: layers}\ndata:\n${names.map((n) => `  ${n}: "\${${n}}"`).join("\n")}\n`;
    const root = tree({
      "replace.json": JSON.stringify({ A: "root", B: "root", C: "root", D: "root", E: "root", F: "root" }),
      "apps/vars.yaml": "C: apps\nD: apps\nE: apps\nF: apps\n",
      "apps/web/.env": "D=web-env\n",
      "apps/web/replace.json": JSON.stringify({ D: "web" }),
      "apps/web/cm.yaml": cm,
      "extra.env": "E=file\nF=file\n",
    });
    const { objects } = await render({
      root,
      path: "apps/web",
      environmentVars: { B: "env", C: "env" },
      unitVars: [{ source: "postBuild.substitute", vars: { D: "unit" } }],
      varsFiles: [`${root}/extra.env`],
      vars: { F: "cli" },
    });
    const data = (objects[0] as any).data;
    assert.deepEqual(data, { A: "root", B: "env", C: "apps", D: "unit", E: "file", F: "cli" });
  });

  test("replace.json beats .env and vars.yaml beats replace.json in the same directory", async () => {
    const root = tree({
      ".env": "X=env\nY=env\nZ=env\n",
      "replace.json": JSON.stringify({ Y: "json", Z: "json" }),
      "vars.yaml": "Z: yaml\n",
      "cm.yaml":
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {x: "${X}", y: "${Y}", z: "${Z}"}\n',
    });
    const { objects } = await render({ root, path: "." });
    assert.deepEqual((objects[0] as any).data, { x: "env", y: "json", z: "yaml" });
  });

  test("newlines in values are stripped and a bad variable name is an error naming it", async () => {
    const root = tree({
      "cm.yaml": 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {x: "${X}"}\n',
    });
    const { objects } = await render({ root, path: ".", vars: { X: "a\nb" } });
    assert.equal((objects[0] as any).data.x, "ab");
    await rejects(render({ root, path: ".", vars: { "my-var": "1" } }), "VariableNameInvalid", /'my-var'/);
  });

  test("objects come out in kustomize's legacy order", async () => {
    const root = tree({
      "1.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
      "2.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
      "3.yaml":
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n",
    });
    const { objects } = await render({ root, path: "." });
    assert.deepEqual(
      objects.map((o) => o.kind),
      ["Namespace", "Service", "Deployment", "Ingress"],
    );
  });

  test("a file with YAML anchors (the bounded path) substitutes exactly like one without", async () => {
    const plain =
      "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\ndata:\n  x: ${X}\n  y: '${X}'\n";
    const anchored =
      "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: b, labels: &l {k: v}}\ndata:\n  x: ${X}\n  y: '${X}'\n  z: *l\n";
    const root = tree({ "a.yaml": plain, "b.yaml": anchored });
    const { objects } = await render({ root, path: ".", vars: { X: "8" } });
    const [a, b] = objects as any[];
    assert.deepEqual(a.data, { x: 8, y: "8" });
    assert.deepEqual(b.data, { x: 8, y: "8", z: { k: "v" } });
  });

  test("toYamlStream round-trips", async () => {
    const root = tree({ "app.yaml": deployment });
    const { objects } = await render({ root, path: ".", allowUndefined: true });
    assert.ok(toYamlStream(objects).includes("kind: Deployment"));
  });
});

describe("render refuses bad input", () => {
  test("malformed YAML names file, document and line", async () => {
    const root = tree({
      "bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\na: [1, 2\nb: c\n",
    });
    await rejects(render({ root, path: "." }), "YamlInvalid", /bad\.yaml: document 1, line \d+/);
  });

  test("an unquoted ${VAR} inside a flow map gets a hint", async () => {
    const root = tree({ "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a-${X}}\n" });
    await assert.rejects(render({ root, path: ".", vars: { X: "1" } }), (e: any) => {
      assert.equal(e.code, "YamlInvalid");
      assert.match(e.hint, /quote \$\{VAR\} placeholders/);
      return true;
    });
  });

  test("a YAML bomb is an error, not a hang", async () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 9; i++)
      bomb.push(
        `${"b".repeat(i)}: &${"b".repeat(i)} [${Array(9)
          .fill(i === 1 ? "*a" : `*${"b".repeat(i - 1)}`)
          .join(", ")}]`,
      );
    const text = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n${bomb.map((l) => `  ${l}`).join("\n")}\n`;
    const root = tree({ "bomb.yaml": text });
    await rejects(render({ root, path: "." }), "YamlInvalid", /bomb\.yaml.*alias/);
  });

  test("paths escaping the root through .. or a symlink are refused", async () => {
    const outside = tree({ "secret.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\n" });
    const root = tree({
      "apps/link.yaml": `->${outside}/secret.yaml`,
      "apps/ok.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
    });
    await rejects(render({ root, path: "../.." }), "PathEscape", /outside the repository/);
    await rejects(render({ root, path: "apps" }), "PathEscape", /symlink/);
  });

  test("a kustomization reaching outside the repository is refused before kustomize runs", async () => {
    const outside = tree({
      "kustomization.yaml": "resources: [cm.yaml]\n",
      "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    });
    const root = tree({ "k/kustomization.yaml": `resources:\n  - ${outside}\n` });
    await rejects(render({ root, path: "k" }), "PathEscape", /outside the repository/);
    const root2 = tree({
      "k/kustomization.yaml": "resources:\n  - https://github.com/example/repo//base?ref=v1\n",
    });
    await rejects(render({ root: root2, path: "k" }), "KustomizeFailed", /remote resource/);
  });

  test("YAML that is not a Kubernetes object is an error naming the file", async () => {
    const root = tree({ "notes.yaml": "just: some\nsettings: here\n" });
    await rejects(render({ root, path: "." }), "NotKubernetes", /notes\.yaml: document 0/);
  });

  test("a file over the size limit is refused", async () => {
    const root = tree({
      "big.yaml": `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: "${"x".repeat(5000)}"}\n`,
    });
    await rejects(render({ root, path: ".", limits: { maxFileBytes: 1000 } }), "FileTooLarge", /big\.yaml/);
  });

  test("duplicate objects are an error", async () => {
    const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    const root = tree({ "a.yaml": cm, "b.yaml": cm });
    await rejects(render({ root, path: "." }), "ConfigInvalid", /ConfigMap\/c is defined twice/);
  });
});

describe("render of a kustomization", () => {
  test("env values stay strings although kustomize drops their quotes", async () => {
    const root = tree({
      "k/kustomization.yaml": "resources: [app.yaml]\n",
      "k/app.yaml": deployment,
    });
    const { objects } = await render({
      root,
      path: "k",
      vars: { APP_NAME: "a", REPLICAS: "1", IMAGE_URL: "i", CONTAINER_PORT: "8000", DEBUG: "1" },
    });
    const c = (objects[0] as any).spec.template.spec.containers[0];
    assert.equal(c.ports[0].containerPort, 8000);
    assert.deepEqual(c.env, [
      { name: "PORT", value: "8000" },
      { name: "DEBUG", value: "1" },
    ]);
  });

  test("builds with the real kustomize, then substitutes", async () => {
    const root = tree({
      "replace.json": JSON.stringify({
        APP_NAME: "api",
        CONTAINER_PORT: 8000,
        REPLICAS: 1,
        DEBUG: false,
        IMAGE_URL: "img:1",
      }),
      "base/kustomization.yaml": "resources: [app.yaml]\n",
      "base/app.yaml": deployment,
      "overlays/staging/kustomization.yaml":
        "resources: [../../base]\nnamePrefix: staging-\ncommonLabels: {env: staging}\n",
    });
    const { objects } = await render({ root, path: "overlays/staging" });
    const d = objects[0] as any;
    assert.equal(d.metadata.name, "staging-api");
    assert.equal(d.metadata.labels.env, "staging");
    assert.equal(d.spec.template.spec.containers[0].ports[0].containerPort, 8000);
  });

  test("a kustomize error is reported with the path", async () => {
    const root = tree({ "k/kustomization.yaml": "resources: [missing.yaml]\n" });
    await rejects(render({ root, path: "k" }), "KustomizeFailed", /kustomize build of k failed/);
  });
});
