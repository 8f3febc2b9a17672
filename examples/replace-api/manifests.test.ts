// What a user keeps in Git beside the app: the Kustomize tree builds with the real kustomize for every
// overlay, the ${VAR} placeholders survive the build and are all defined by the layered replace.json
// files (plus what the engine supplies), and the smoke test in deploy/base/smoketest.yaml passes against the app.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import { byKind, loadConfig } from "../../src/config/index.js";
import { createServer, shutdown } from "./app/server.js";

const here = dirname(fileURLToPath(import.meta.url));
/** The placeholder text `${NAME}` as it appears in the built manifests. */
const ph = (name: string): string => `\${${name}}`;
const OVERLAYS = { production: "replace-api-production", staging: "replace-api-staging", preview: ph("ENV") };
/** Supplied by Sluice, not by replace.json: the image of the commit, and the environment's name. */
const ENGINE_VARS = ["IMAGE_URL", "ENV"];

// Built manifests are checked field by field; a loose shape keeps the assertions readable.
type Loose = any;
type Obj = {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Loose;
  data?: Record<string, string>;
};

function build(overlay: string): Obj[] {
  const out = execFileSync("kubectl", ["kustomize", join(here, "deploy", "overlays", overlay)], {
    encoding: "utf8",
    timeout: 60_000,
  });
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

function readJson(...parts: string[]): Record<string, unknown> {
  return JSON.parse(readFileSync(join(here, ...parts), "utf8")) as Record<string, unknown>;
}

describe("deploy/ overlays", () => {
  for (const [overlay, namespace] of Object.entries(OVERLAYS)) {
    test(`${overlay} builds with kustomize and keeps its placeholders`, () => {
      const objects = build(overlay);
      const byKind = new Map(objects.map((o) => [o.kind, o]));
      const deployment = byKind.get("Deployment");
      const service = byKind.get("Service");
      const configMap = byKind.get("ConfigMap");
      assert.ok(deployment && service && configMap, `kinds: ${objects.map((o) => o.kind).join(", ")}`);
      for (const o of objects) assert.equal(o.metadata.namespace, namespace, `${o.kind} namespace`);

      assert.equal(deployment.metadata.name, ph("APP_NAME"));
      assert.equal(deployment.spec.replicas, overlay === "preview" ? 1 : 2);
      const container = deployment.spec.template.spec.containers[0];
      assert.equal(container.image, ph("IMAGE_URL"));
      assert.equal(container.ports[0].containerPort, ph("CONTAINER_PORT"));
      assert.deepEqual(container.readinessProbe.httpGet, { path: "/healthz", port: ph("CONTAINER_PORT") });
      assert.deepEqual(
        container.env.find((e: { name: string }) => e.name === "PORT"),
        {
          name: "PORT",
          value: ph("CONTAINER_PORT"),
        },
      );
      assert.equal(deployment.spec.template.metadata.labels.environment, overlay);

      // The generated ConfigMap's hashed name and the Deployment's reference to it still match.
      assert.match(configMap.metadata.name, /^\$\{APP_NAME\}-replacements-[a-z0-9]{10}$/);
      assert.equal(deployment.spec.template.spec.volumes[0].configMap.name, configMap.metadata.name);
      assert.deepEqual(
        JSON.parse(configMap.data?.["replacements.json"] ?? ""),
        readJson("deploy", "base", "replacements.json"),
      );

      assert.equal(service.metadata.name, ph("APP_NAME"));
      assert.deepEqual(service.spec.ports[0], {
        name: "http",
        protocol: "TCP",
        port: ph("EXTERNAL_PORT"),
        targetPort: ph("CONTAINER_PORT"),
      });
      assert.deepEqual(service.spec.selector, { app: ph("APP_NAME") });
    });

    test(`${overlay}: every placeholder is defined by replace.json layers or the engine`, () => {
      const vars = {
        ...readJson("replace.json"),
        ...readJson("deploy", "overlays", overlay, "replace.json"),
      };
      const text = execFileSync("kubectl", ["kustomize", join(here, "deploy", "overlays", overlay)], {
        encoding: "utf8",
      });
      const used = new Set([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]));
      for (const name of used)
        assert.ok(name && (name in vars || ENGINE_VARS.includes(name)), `${name} undefined`);
      assert.equal(vars.APP_NAME, "replace-api");
      assert.equal(vars.CONTAINER_PORT, 8000);
    });
  }

  test("environments get distinct external ports", () => {
    const ports = Object.keys(OVERLAYS).map(
      (o) => readJson("deploy", "overlays", o, "replace.json").EXTERNAL_PORT,
    );
    assert.equal(new Set(ports).size, ports.length, `ports: ${ports.join(", ")}`);
  });
});

describe("sluice/", () => {
  test("apps.yaml is valid Sluice configuration", () => {
    const config = loadConfig(here, "sluice");
    assert.deepEqual(config.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
      "Environments/branches",
      "GitRepository/replace-api",
      "Kustomization/replace-api",
    ]);
    const [envs] = byKind(config, "Environments");
    assert.deepEqual(
      envs?.spec.rules.map((r) => [r.branch, r.name, r.vars?.OVERLAY]),
      [
        ["main", "production", "production"],
        ["staging", "staging", "staging"],
        ["feature/*", "preview-{{branch.slug}}", "preview"],
      ],
    );
    const [unit] = byKind(config, "Kustomization");
    assert.equal(unit?.spec.path, `./deploy/overlays/${ph("OVERLAY")}`);
  });

  test("the seed's test.sh cases pass against the app", async () => {
    const smoke = parse(readFileSync(join(here, "deploy", "base", "smoketest.yaml"), "utf8")) as {
      kind: string;
      spec: { checks: { name: string; tcp?: object; http?: Loose }[] };
    };
    assert.equal(smoke.kind, "SmokeTest");
    const http = smoke.spec.checks.filter((c) => c.http);
    assert.equal(http.length, 2);
    assert.ok(smoke.spec.checks.some((c) => c.tcp));

    const server = createServer({ log: () => {} });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      for (const check of http) {
        const res = await fetch(`http://127.0.0.1:${port}${check.http.path}`, {
          method: check.http.method,
          headers: check.http.headers,
          body: check.http.body,
          signal: AbortSignal.timeout(5000),
        });
        assert.equal(res.status, check.http.expect.status, check.name);
        assert.deepEqual(await res.json(), check.http.expect.json, check.name);
      }
    } finally {
      await shutdown(server, 2000);
    }
  });
});
