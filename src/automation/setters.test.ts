import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { isSluiceError } from "../core/index.js";
import { applySetters, type LatestImages, updateWithSetters } from "./index.js";

const latest: LatestImages = new Map([
  ["automation-ns:policy", { image: "index.repo.fake/updated:v1.0.1" }],
  ["flux-system:app", { image: "ghcr.io/org/app:0.0.2" }],
  ["flux-system:side", { image: "127.0.0.1:5000/team/side:2.1.0" }],
  ["flux-system:num", { image: "registry.example.com/num:1.10" }],
  [
    "flux-system:digest",
    { image: "ghcr.io/org/d:1.0@sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be" },
  ],
]);

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "sluice-setters-"));
  dirs.push(root);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}

const read = (root: string, rel: string) => readFileSync(join(root, rel), "utf8");

test("Flux's fixtures: whole image, and :name/:tag in a kustomization", () => {
  const marked = `apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: foo
  namespace: bar
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: c
            image: image:v1.0.0 # {"$imagepolicy": "automation-ns:policy"}
`;
  const r = applySetters(marked, "marked.yaml", latest);
  assert.equal(r.text, marked.replace("image: image:v1.0.0", "image: index.repo.fake/updated:v1.0.1"));
  assert.deepEqual(
    r.updates.map((u) => [u.line, u.from, u.to, u.setter, u.object]),
    [
      [
        14,
        "image:v1.0.0",
        "index.repo.fake/updated:v1.0.1",
        "automation-ns:policy",
        { apiVersion: "batch/v1beta1", kind: "CronJob", name: "foo", namespace: "bar" },
      ],
    ],
  );

  const kustomization = `# This is not intended to be a working kustomization
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- unimportant.yaml
images:
- name: container
  newName: replaced # {"$imagepolicy": "automation-ns:policy:name"}
  newTag: v1 # {"$imagepolicy": "automation-ns:policy:tag"}
`;
  const k = applySetters(kustomization, "kustomization.yaml", latest);
  assert.equal(
    k.text,
    kustomization
      .replace("newName: replaced", "newName: index.repo.fake/updated")
      .replace("newTag: v1 ", "newTag: v1.0.1 "),
  );
  assert.deepEqual(
    k.updates.map((u) => [u.from, u.to, u.kind]),
    [
      ["replaced", "index.repo.fake/updated", "name"],
      ["v1", "v1.0.1", "tag"],
    ],
  );
});

test("several markers in one file, in sequences, with quotes kept and a registry port in the name", () => {
  const src = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  template:
    spec:
      initContainers:
      - image: "ghcr.io/org/app:0.0.1" # {"$imagepolicy": "flux-system:app"}
      containers:
        - name: app
          image: 'ghcr.io/org/app:0.0.1'   # {"$imagepolicy": "flux-system:app"}
        - name: side
          image: 127.0.0.1:5000/team/side:2.0.0 # {"$imagepolicy": "flux-system:side"}
      images:
        - ghcr.io/org/app:0.0.1 # {"$imagepolicy": "flux-system:app"}
        - "0.0.1" # {"$imagepolicy": "flux-system:app:tag"}
        - old/name # {"$imagepolicy":"flux-system:side:name"}
`;
  const r = applySetters(src, "web.yaml", latest);
  assert.equal(
    r.text,
    `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  template:
    spec:
      initContainers:
      - image: "ghcr.io/org/app:0.0.2" # {"$imagepolicy": "flux-system:app"}
      containers:
        - name: app
          image: 'ghcr.io/org/app:0.0.2'   # {"$imagepolicy": "flux-system:app"}
        - name: side
          image: 127.0.0.1:5000/team/side:2.1.0 # {"$imagepolicy": "flux-system:side"}
      images:
        - ghcr.io/org/app:0.0.2 # {"$imagepolicy": "flux-system:app"}
        - "0.0.2" # {"$imagepolicy": "flux-system:app:tag"}
        - 127.0.0.1:5000/team/side # {"$imagepolicy":"flux-system:side:name"}
`,
  );
  assert.deepEqual(
    r.updates.map((u) => u.line),
    [8, 11, 13, 15, 16, 17],
  );
  assert.ok(r.updates.every((u) => u.object.name === "web" && u.object.namespace === "prod"));
});

test("CRLF line endings, a missing final newline and every other byte stay as they were", () => {
  const src =
    "# header comment\r\n" +
    "kind: Deployment   # trailing comment\r\n" +
    "metadata:\r\n" +
    "  name: app # name\r\n" +
    "  annotations: {a: '1', b: \"two\"}   # flow map\r\n" +
    "spec:\r\n" +
    "  # a comment line before\r\n" +
    "  containers:\r\n" +
    "    -   name: app\r\n" +
    '        image: ghcr.io/org/app:0.0.1 # {"$imagepolicy": "flux-system:app"}\r\n' +
    "        # between\r\n" +
    "        args: [\"--x\", '--y']  #  comment\r\n" +
    "\r\n" +
    "        env:\r\n" +
    '        - {name: A, value: "1"} # c\r\n' +
    "# footer, no final newline";
  const r = applySetters(src, "crlf.yaml", latest);
  assert.equal(r.text, src.replace("ghcr.io/org/app:0.0.1", "ghcr.io/org/app:0.0.2"));
  assert.equal(r.updates[0]?.line, 10);
});

test("a plain value that would read back as a number or boolean is written quoted", () => {
  const src = 'newTag: v1 # {"$imagepolicy": "flux-system:num:tag"}\n';
  const r = applySetters(src, "k.yaml", latest);
  assert.equal(r.text, 'newTag: "1.10" # {"$imagepolicy": "flux-system:num:tag"}\n');
  assert.equal(r.updates[0]?.to, "1.10");
});

test("digests: the whole reference, and a :digest marker", () => {
  const src =
    'image: ghcr.io/org/d:0.9 # {"$imagepolicy": "flux-system:digest"}\n' +
    'digest: sha256:1234 # {"$imagepolicy": "flux-system:digest:digest"}\n' +
    'tag: "0.9" # {"$imagepolicy": "flux-system:digest:tag"}\n';
  const r = applySetters(src, "d.yaml", latest);
  assert.equal(
    r.text,
    'image: ghcr.io/org/d:1.0@sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be # {"$imagepolicy": "flux-system:digest"}\n' +
      'digest: sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be # {"$imagepolicy": "flux-system:digest:digest"}\n' +
      'tag: "1.0" # {"$imagepolicy": "flux-system:digest:tag"}\n',
  );
});

test("a value already up to date is no change; multi-document files keep each document's object", () => {
  const src = `apiVersion: v1
kind: Pod
metadata: {name: a}
spec: {containers: [{name: a, image: x}]}
image: ghcr.io/org/app:0.0.2 # {"$imagepolicy": "flux-system:app"}
---
apiVersion: v1
kind: Pod
metadata:
  name: b
  namespace: ns
image: ghcr.io/org/app:0.0.1 # {"$imagepolicy": "flux-system:app"}
...
`;
  const r = applySetters(src, "multi.yaml", latest);
  assert.equal(r.updates.length, 1);
  assert.equal(r.updates[0]?.line, 12);
  assert.deepEqual(r.updates[0]?.object, { apiVersion: "v1", kind: "Pod", name: "b", namespace: "ns" });
  assert.equal(r.text, src.replace("app:0.0.1", "app:0.0.2"));
});

test("markers not after a scalar, and other namespaces' policies, are reported as ignored", () => {
  const src = `# image: old # {"$imagepolicy": "flux-system:app"}
images: [a, b] # {"$imagepolicy": "flux-system:app"}
other: x:1 # {"$imagepolicy": "other-namespace:policy"}
`;
  const r = applySetters(src, "f.yaml", latest, { namespace: "flux-system" });
  assert.equal(r.text, src);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(
    r.ignored.map((i) => [i.line, i.setter, /namespace|not on the same line/.test(i.reason)]).sort(),
    [
      [1, "flux-system:app", true],
      [2, "flux-system:app", true],
      [3, "other-namespace:policy", true],
    ],
  );
});

test("a file with many unrelated comments changes only in the marked value", () => {
  const lines: string[] = ["# Top of file: comments everywhere, odd spacing, anchors and quoting."];
  for (let i = 0; i < 200; i++) {
    lines.push(`key${i}:   'v${i}'    # comment ${i} with # hashes and "quotes" and {"braces": 1}`);
    lines.push(`  # indented comment ${i}\t`);
    lines.push(`list${i}: [ a , "b" ,'c' ]  #x`);
  }
  lines.push("anchor: &a {x: 1}  # anchor");
  lines.push("alias: *a # alias");
  lines.push("block: |  # block header");
  lines.push('  image: not-a-marker # {"$imagepolicy": "flux-system:app"} inside a block scalar');
  lines.push('image:    ghcr.io/org/app:0.0.1     # {"$imagepolicy": "flux-system:app"}   ');
  lines.push("tail: ~ # the end");
  const src = `${lines.join("\n")}\n\n`;
  const r = applySetters(src, "comments.yaml", latest);
  assert.deepEqual(r.errors, []);
  assert.equal(r.updates.length, 1);
  const expected = src.replace("image:    ghcr.io/org/app:0.0.1 ", "image:    ghcr.io/org/app:0.0.2 ");
  assert.notEqual(expected, src);
  assert.equal(Buffer.compare(Buffer.from(r.text), Buffer.from(expected)), 0);
});

test("malformed markers and markers on block scalars are errors naming the line", () => {
  const src = `a: x # {"$imagepolicy": "flux-system/app"}
b: y # {"$imagepolicy": "flux-system:app:bogus"}
c: z # {"$imagepolicy": flux-system:app
d: | # {"$imagepolicy": "flux-system:app"}
  text
`;
  const r = applySetters(src, "bad.yaml", latest);
  assert.deepEqual(
    r.errors.map((e) => [e.line, /colon, not a slash|:bogus|malformed marker|block scalar/.test(e.message)]),
    [
      [1, true],
      [2, true],
      [3, true],
      [4, true],
    ],
  );
  assert.equal(r.text, src);
});

test("a tree: unknown policy is an error naming file, line and policy, and nothing is written", () => {
  const good = 'image: ghcr.io/org/app:0.0.1 # {"$imagepolicy": "flux-system:app"}\n';
  const bad = 'a: ok\n\nimage: x:1 # {"$imagepolicy": "flux-system:nope"}\n';
  const root = tree({ "apps/a.yaml": good, "apps/b.yml": bad });
  assert.throws(
    () => updateWithSetters({ root, latest }),
    (e: unknown) =>
      isSluiceError(e, "ConfigInvalid") &&
      e.message.includes("apps/b.yml:3") &&
      e.message.includes("flux-system:nope") &&
      e.message.includes("nothing was written"),
  );
  assert.equal(read(root, "apps/a.yaml"), good);
  assert.equal(read(root, "apps/b.yml"), bad);
});

test("a tree: Flux's screening (extension, token), unparseable files skipped and reported, update.path", () => {
  const marker = 'image: ghcr.io/org/app:0.0.1 # {"$imagepolicy": "flux-system:app"}\n';
  const root = tree({
    "clusters/prod/app.yaml": marker,
    "clusters/prod/nested/deep.yml": marker,
    "clusters/prod/notes.txt": marker,
    "clusters/prod/Kustomization": marker,
    "clusters/prod/broken.yaml": `${marker}a: [unclosed\n`,
    "clusters/prod/chart/template.yaml": "{{ .Values.x }}: y\n",
    "clusters/staging/app.yaml": marker,
    ".git/config.yaml": marker,
  });
  symlinkSync(join(root, "clusters/staging/app.yaml"), join(root, "clusters/prod/link.yaml"));
  const run = updateWithSetters({ root, path: "./clusters/prod", latest });
  assert.deepEqual(run.changedFiles, ["clusters/prod/app.yaml", "clusters/prod/nested/deep.yml"]);
  assert.deepEqual(
    run.skipped.map((s) => s.file),
    ["clusters/prod/broken.yaml", "clusters/prod/link.yaml"],
  );
  assert.match(run.skipped[0]!.reason, /not valid YAML/);
  assert.match(run.skipped[1]!.reason, /symbolic link/);
  assert.equal(read(root, "clusters/prod/app.yaml"), marker.replace("0.0.1", "0.0.2"));
  for (const untouched of [
    "clusters/prod/notes.txt",
    "clusters/prod/Kustomization",
    "clusters/staging/app.yaml",
    ".git/config.yaml",
  ])
    assert.equal(read(root, untouched), marker, untouched);

  // update.path may name one file (seed 004), and must stay inside the repository.
  const one = updateWithSetters({ root, path: "clusters/staging/app.yaml", latest });
  assert.deepEqual(one.changedFiles, ["clusters/staging/app.yaml"]);
  assert.throws(
    () => updateWithSetters({ root, path: "../elsewhere", latest }),
    (e: unknown) => isSluiceError(e, "PathEscape"),
  );
  assert.throws(() => updateWithSetters({ root, path: "missing", latest }), /does not exist/);

  // A second pass finds nothing to do.
  assert.deepEqual(updateWithSetters({ root, latest }).changedFiles, []);
});

test("dry runs compute updates without writing", () => {
  const marker = 'image: ghcr.io/org/app:0.0.1 # {"$imagepolicy": "flux-system:app"}\n';
  const root = tree({ "a.yaml": marker });
  const run = updateWithSetters({ root, latest, dryRun: true });
  assert.deepEqual(run.changedFiles, ["a.yaml"]);
  assert.equal(read(root, "a.yaml"), marker);
});
