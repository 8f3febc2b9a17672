import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { isSluiceError } from "../core/index.js";
import { compileMessageTemplate, DEFAULT_MESSAGE_TEMPLATE, type SetterUpdate } from "./index.js";

/** Cases with the output of Go's text/template + Sprig over Flux's types (see testdata/gotemplate). */
interface GoCase {
  name: string;
  template: string;
  namespace: string;
  automation: string;
  values?: Record<string, string>;
  updates: {
    file: string;
    apiVersion: string;
    kind: string;
    name: string;
    namespace: string;
    from: string;
    to: string;
    setter: string;
    image: string;
    policy: string;
  }[];
  expect: { out: string; err?: string };
}

const cases: GoCase[] = JSON.parse(
  readFileSync(new URL("./testdata/template-cases.json", import.meta.url), "utf8"),
) as GoCase[];

function updatesOf(c: GoCase): SetterUpdate[] {
  return c.updates.map((u, i) => ({
    file: u.file,
    line: i + 1,
    from: u.from,
    to: u.to,
    policy: u.policy,
    setter: u.setter,
    kind: "image",
    image: u.image,
    object: { apiVersion: u.apiVersion, kind: u.kind, name: u.name, namespace: u.namespace },
  }));
}

for (const c of cases) {
  test(`template renders as Go does: ${c.name}`, () => {
    const data = {
      automation: { namespace: c.namespace, name: c.automation },
      updates: updatesOf(c),
      ...(c.values ? { values: c.values } : {}),
    };
    if (!c.expect.err) {
      assert.equal(compileMessageTemplate(c.template).render(data), c.expect.out);
      return;
    }
    // Go rejects these (some only when executing); Sluice rejects them when the template is loaded.
    assert.throws(
      () => compileMessageTemplate(c.template),
      (e: unknown) =>
        isSluiceError(e, "ConfigInvalid") && /^messageTemplate: line \d+, column \d+: /.test(e.message),
      `Go says: ${c.expect.err}`,
    );
  });
}

test("the Flux doc examples are among the Go-checked cases", () => {
  const names = cases.map((c) => c.name);
  for (const n of [
    "seed 004: println of each image",
    "flux v1beta1 docs: files, objects and images",
    "flux v1beta2 docs: changed files and objects",
    "flux v1beta2 docs: template functions",
    "flux docs: messageTemplateValues",
    "flux docs: Gerrit Change-Id",
  ])
    assert.ok(names.includes(n), n);
});

test("an empty or missing template gives Flux's default message", () => {
  const data = { automation: { namespace: "ns", name: "a" }, updates: [] };
  assert.equal(compileMessageTemplate(undefined).render(data), "Update from image update automation");
  assert.equal(compileMessageTemplate("").render(data), DEFAULT_MESSAGE_TEMPLATE);
});

test("constructs outside the supported subset are errors at load, naming line and column", () => {
  const bad: [string, RegExp][] = [
    ['{{ define "x" }}y{{ end }}', /line 1, column 4: \{\{define\}\} is not supported/],
    ['{{ template "x" . }}', /\{\{template\}\} is not supported/],
    ["{{ range .Updated.Images }}{{ break }}{{ end }}", /\{\{break\}\} is not supported/],
    ['line one\n{{ index .Values "a" }}', /line 2, column 4: function "index" not defined/],
    ['{{ default "x" .Values.a }}', /function "default" not defined/],
    ['{{ now | date "2006" }}', /function "now" not defined/],
    ["{{ .Updated.Images.Foo }}", /can't evaluate field Foo in type \[\]update\.ImageRef/],
    ["{{ .Changed.FileChanges.x.y }}", /can't evaluate field y in type update\.ObjectChanges/],
    ["{{ 'c' }}", /character constants are not supported/],
    ["{{ 1.5 }}", /only whole numbers/],
    ["{{ end }}", /unexpected \{\{end\}\}/],
    ["{{ if .Values }}a{{ else }}b{{ else }}c{{ end }}", /expected end; found else/],
    ['{{ printf "%s" .AutomationObject | upper | lower "x" }}', /wrong number of args for lower/],
    ["{{ range $i, $v := .Updated.Images }}{{ contains $i $v }}{{ end }}", /expected string; got int/],
  ];
  for (const [src, re] of bad) {
    assert.throws(
      () => compileMessageTemplate(src),
      (e: unknown) => isSluiceError(e, "ConfigInvalid") && re.test(e.message),
      src,
    );
  }
});

test("a template that fails while rendering is a ConfigInvalid error, not a partial message", () => {
  const t = compileMessageTemplate("{{ lower .Values.missing }}");
  assert.throws(
    () => t.render({ automation: { namespace: "ns", name: "a" }, updates: [] }),
    (e: unknown) => isSluiceError(e, "ConfigInvalid") && /invalid value; expected string/.test(e.message),
  );
});

test("file names are relative to update.path, as in Flux", () => {
  const t = compileMessageTemplate("{{ range $f, $_ := .Updated.Files }}{{ $f }} {{ end }}");
  const u = updatesOf(cases[0]!)[0]!;
  const data = (updatePath: string, file: string) => ({
    automation: { namespace: "ns", name: "a" },
    updates: [{ ...u, file }],
    updatePath,
  });
  assert.equal(t.render(data("clusters/prod", "clusters/prod/app/deploy.yaml")), "app/deploy.yaml ");
  assert.equal(t.render(data("./clusters/prod/", "clusters/prod/deploy.yaml")), "deploy.yaml ");
  assert.equal(t.render(data(".", "clusters/prod/deploy.yaml")), "clusters/prod/deploy.yaml ");
  // update.path naming a file (seed 004: ./clusters/flux-cluster/nginx.yml): the file's own name.
  assert.equal(t.render(data("./clusters/c/nginx.yml", "clusters/c/nginx.yml")), "nginx.yml ");
});
