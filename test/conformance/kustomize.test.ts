/**
 * Kustomize conformance: every tree under testdata/kustomize/<case>/ is built twice — once by
 * `kubectl kustomize` directly, once through Sluice's `render` — and the two object lists must be
 * identical, in the same order. `toYamlStream` must round-trip the rendered objects unchanged.
 *
 * Each case directory holds `case.json`: `{"build": "<dir relative to the case>", "description":
 * "...", "extraBuilds"?: ["<dir>", ...]}`. The case directory is the repository root for render.
 * The trees contain no `${...}`, so substitution (strict by default) must leave every object as
 * kustomize produced it.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { render, toYamlStream } from "../../src/render/index.js";

const execFileP = promisify(execFile);
const CASES_DIR = fileURLToPath(new URL("../../testdata/kustomize/", import.meta.url));
const KUSTOMIZE_TIMEOUT_MS = 60_000;

interface CaseSpec {
  build: string;
  description: string;
  extraBuilds?: string[];
}

function listCases(): string[] {
  return readdirSync(CASES_DIR)
    .filter((name) => statSync(join(CASES_DIR, name)).isDirectory())
    .sort();
}

function readCase(name: string): CaseSpec {
  const raw: unknown = JSON.parse(readFileSync(join(CASES_DIR, name, "case.json"), "utf8"));
  assert.ok(typeof raw === "object" && raw !== null, `${name}/case.json: not an object`);
  const spec = raw as Record<string, unknown>;
  assert.equal(typeof spec.build, "string", `${name}/case.json: "build" must be a string`);
  assert.equal(typeof spec.description, "string", `${name}/case.json: "description" must be a string`);
  if (spec.extraBuilds !== undefined) {
    assert.ok(
      Array.isArray(spec.extraBuilds) && spec.extraBuilds.every((b) => typeof b === "string"),
      `${name}/case.json: "extraBuilds" must be a list of strings`,
    );
  }
  return spec as unknown as CaseSpec;
}

function hasKustomization(dir: string): boolean {
  return ["kustomization.yaml", "kustomization.yml", "Kustomization"].some((f) => existsSync(join(dir, f)));
}

/** Parses a YAML stream (YAML 1.2 core schema, as Sluice does), failing on any parse error. */
function parseStream(text: string, what: string): unknown[] {
  const out: unknown[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    assert.deepEqual(
      doc.errors.map((e) => e.message),
      [],
      `${what}: YAML document ${i} does not parse`,
    );
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  });
  return out;
}

/**
 * Rebuilds plain arrays and objects so that the comparison is about data, not about how an
 * implementation allocated it (e.g. null-prototype maps). Any other non-primitive value (Date,
 * Map, class instance) is kept as-is, so deepStrictEqual still reports it as a difference.
 */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null) {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) out[k] = plain(val);
    return out;
  }
  return v;
}

function ids(objects: readonly unknown[]): string[] {
  return objects.map((o) => {
    const obj = o as {
      apiVersion?: unknown;
      kind?: unknown;
      metadata?: { name?: unknown; namespace?: unknown };
    };
    const ns = obj.metadata?.namespace;
    return `${String(obj.apiVersion)} ${String(obj.kind)} ${ns ? `${String(ns)}/` : ""}${String(obj.metadata?.name)}`;
  });
}

async function kubectlKustomize(dir: string): Promise<unknown[]> {
  const { stdout } = await execFileP("kubectl", ["kustomize", dir], {
    timeout: KUSTOMIZE_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
    encoding: "utf8",
  });
  return parseStream(stdout, `kubectl kustomize ${dir}`);
}

async function assertConforms(caseName: string, caseDir: string, build: string): Promise<void> {
  const where = `${caseName}/${build}`;
  const buildDir = join(caseDir, build);
  assert.ok(hasKustomization(buildDir), `${where}: no kustomization file to build`);

  const expected = (await kubectlKustomize(buildDir)).map(plain);
  assert.ok(expected.length > 0, `${where}: kubectl kustomize produced no objects`);

  const result = await render({ root: caseDir, path: build });
  const actual = result.objects.map(plain);

  // Order first (clear message), then full content object by object, then the whole list.
  assert.deepStrictEqual(
    ids(actual),
    ids(expected),
    `${where}: objects or their order differ from kustomize`,
  );
  for (let i = 0; i < expected.length; i++) {
    assert.deepStrictEqual(actual[i], expected[i], `${where}: object ${i} (${ids(expected)[i]}) differs`);
  }
  assert.deepStrictEqual(actual, expected, `${where}: rendered objects differ from kustomize`);

  const reparsed = parseStream(toYamlStream(result.objects), `${where}: toYamlStream output`).map(plain);
  assert.deepStrictEqual(ids(reparsed), ids(expected), `${where}: toYamlStream changed the object list`);
  assert.deepStrictEqual(reparsed, expected, `${where}: toYamlStream does not round-trip the objects`);
}

const cases = listCases();

test("the Kustomize conformance suite has at least 25 well-formed cases", () => {
  assert.ok(cases.length >= 25, `only ${cases.length} cases under ${CASES_DIR}`);
  for (const name of cases) {
    const spec = readCase(name);
    assert.ok(spec.description.length > 0, `${name}: empty description`);
    for (const b of [spec.build, ...(spec.extraBuilds ?? [])]) {
      assert.ok(hasKustomization(join(CASES_DIR, name, b)), `${name}: ${b} has no kustomization file`);
    }
  }
});

for (const name of cases) {
  const spec = readCase(name);
  test(`kustomize conformance ${name}: ${spec.description}`, async () => {
    const caseDir = join(CASES_DIR, name);
    for (const build of [spec.build, ...(spec.extraBuilds ?? [])]) {
      await assertConforms(name, caseDir, build);
    }
  });
}
