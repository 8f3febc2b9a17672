/**
 * Hostile repository content, beyond what render.test.ts and gitsource.test.ts already cover:
 * symlink chains and loops, absolute paths in every kustomization field that names a file,
 * remote bases in every spelling kustomize fetches (checked against a real server that counts
 * requests), exec plugins and KRM exec functions (a marker file shows whether anything ran),
 * huge, deeply nested and multiplying inputs, variable values and branch names that look like
 * shell, submodules pointing at a reachable repository, and link-local/metadata source URLs
 * through the agent. Every refusal must be a SluiceError naming what was refused, in bounded time.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isSluiceError, type SluiceError } from "../src/core/index.js";
import { render } from "../src/render/index.js";
import { GitSource } from "../src/source/index.js";
import { eventually, fluxConfig, harness, httpText, WEB_IMAGE } from "./support/agent.js";
import { type GitServer, startTestGitServer, WorkingCopy } from "./support/gitserver.js";
import { tree } from "./support/tmp.js";

const CM = (name: string, extra = "") =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}}\ndata: {a: "1"${extra}}\n`;

/** Asserts `p` rejects with a SluiceError of `code` whose message matches `re`, within `ms`. */
async function refused(
  p: Promise<unknown>,
  code: SluiceError["code"] | SluiceError["code"][],
  re: RegExp,
  ms = 30_000,
) {
  const t0 = Date.now();
  await assert.rejects(p, (e) => {
    assert.ok(isSluiceError(e), `not a SluiceError: ${(e as Error)?.stack ?? e}`);
    const codes = Array.isArray(code) ? code : [code];
    assert.ok(codes.includes(e.code), `code ${e.code}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
  assert.ok(Date.now() - t0 < ms, `took ${Date.now() - t0} ms`);
}

// A marker file outside every repository: if it ever exists, repository content ran a program.
const markerDir = mkdtempSync(join(tmpdir(), "sluice-hostile-marker-"));
const MARKER = join(markerDir, "pwned");
after(() => rmSync(markerDir, { recursive: true, force: true }));
const noMarker = () => assert.equal(existsSync(MARKER), false, "repository content ran a program");

describe("paths: symlink chains and loops, absolute paths", () => {
  test("a symlink chain that ends outside the repository is refused; one that stays inside is followed", async () => {
    const outside = tree({ "secret.yaml": CM("outside") });
    const root = tree({
      "chain/a.yaml": "->b.yaml",
      "chain/b.yaml": "->../c.yaml",
      "c.yaml": `->${outside}/secret.yaml`,
      "inside/a.yaml": "->../links/b.yaml",
      "links/b.yaml": "->../real/cm.yaml",
      "real/cm.yaml": CM("inside"),
    });
    await refused(render({ root, path: "chain" }), "PathEscape", /outside the repository.*symlink/);
    const ok = await render({ root, path: "inside" });
    assert.deepEqual(
      ok.objects.map((o) => o.metadata.name),
      ["inside"],
    );
  });

  test("a directory symlink out of the repository, as render path and as kustomize resource, is refused", async () => {
    const outside = tree({ "kustomization.yaml": "resources: [cm.yaml]\n", "cm.yaml": CM("stolen") });
    const root = tree({
      escape: `->${outside}`,
      "k/kustomization.yaml": "resources: [../escape]\n",
      "k2/kustomization.yaml": "resources: [escape-too]\n",
      "k2/escape-too": `->${outside}`,
    });
    await refused(render({ root, path: "escape" }), "PathEscape", /symlink/);
    await refused(render({ root, path: "k" }), "PathEscape", /escape.*symlink/);
    await refused(render({ root, path: "k2" }), "PathEscape", /escape-too.*symlink/);
  });

  test("symlink loops (file and directory) end in an error or are skipped, never a hang", async () => {
    const root = tree({
      "loop/a.yaml": "->b.yaml",
      "loop/b.yaml": "->a.yaml",
      "dirloop/cm.yaml": CM("x"),
      "dirloop/again": "->..",
      "k/kustomization.yaml": "resources: [a.yaml]\n",
      "k/a.yaml": "->a.yaml",
    });
    await refused(render({ root, path: "loop" }), "PathEscape", /loop|symlink/, 10_000);
    await refused(render({ root, path: "k" }), "PathEscape", /loop|symlink/, 10_000);
    const t0 = Date.now();
    const r = await render({ root, path: "dirloop" }).catch((e) => e);
    assert.ok(Date.now() - t0 < 10_000);
    if (r instanceof Error) assert.ok(isSluiceError(r), String(r));
    else
      assert.deepEqual(
        r.objects.map((o: { metadata: { name: string } }) => o.metadata.name),
        ["x"],
      );
  });

  test("absolute paths in every kustomization field that names a file are refused before kustomize runs", async () => {
    const fields: [string, string][] = [
      ["resources", "resources: [/etc/hostname]"],
      ["bases", "bases: [/etc]"],
      ["components", "components: [/etc]"],
      ["crds", "crds: [/etc/hostname]"],
      ["patches", "resources: [cm.yaml]\npatches: [{path: /etc/hostname}]"],
      ["patchesStrategicMerge", "resources: [cm.yaml]\npatchesStrategicMerge: [/etc/hostname]"],
      [
        "patchesJson6902",
        "resources: [cm.yaml]\npatchesJson6902: [{path: /etc/hostname, target: {kind: ConfigMap, name: c}}]",
      ],
      ["configurations", "configurations: [/etc/hostname]"],
      ["openapi", "openapi: {path: /etc/hostname}"],
      ["transformers", "transformers: [/etc/hostname]"],
      ["generators", "generators: [/etc/hostname]"],
      ["configMapGenerator files", "configMapGenerator: [{name: x, files: [/etc/passwd]}]"],
      ["configMapGenerator key=path", "configMapGenerator: [{name: x, files: [pw=/etc/passwd]}]"],
      ["secretGenerator envs", "secretGenerator: [{name: x, envs: [/proc/self/environ]}]"],
      ["secretGenerator env", "secretGenerator: [{name: x, env: /proc/self/environ}]"],
      ["relative climb", "configMapGenerator: [{name: x, files: [../../../../../../etc/passwd]}]"],
    ];
    for (const [what, k] of fields) {
      const root = tree({ "k/kustomization.yaml": `${k}\n`, "k/cm.yaml": CM("c") });
      await refused(render({ root, path: "k" }), "PathEscape", /outside the repository/, 10_000).catch(
        (e) => {
          throw new Error(`${what}: ${(e as Error).message}`);
        },
      );
    }
    const root = tree({ "cm.yaml": CM("c") });
    await refused(render({ root, path: "/etc" }), "PathEscape", /outside the repository/);
  });
});

describe("kustomize: remote bases, Helm, exec plugins", () => {
  let srv: GitServer & { root: string };
  const requests: string[] = [];
  before(async () => {
    srv = await startTestGitServer({ onRequest: (r) => requests.push(r.path) });
    await srv.createRepo("remote-base", {
      "base/kustomization.yaml": "resources: [cm.yaml]\n",
      "base/cm.yaml": CM("from-the-network"),
    });
  });
  after(() => srv.stop());

  test("remote bases in every spelling kustomize fetches are refused, and nothing reaches the server", async () => {
    const url = srv.repoUrl("remote-base");
    const hostPort = url.replace(/^http:\/\//, "").replace(/\/.*$/, "");
    const spellings = [
      `${url}//base`,
      `${url}//base?ref=main`,
      `git::${url}//base`,
      `git::${url.replace("http://", "HTTP://")}//base`,
      `s3::${url}`,
      `ssh://git@${hostPort}/remote-base.git//base`,
      `git@${hostPort.split(":")[0]}:remote-base.git`,
      "github.com/example/repo//base?ref=v1",
      "https://github.com/example/repo/base?ref=v1",
      `${url.replace("/remote-base.git", "")}/remote-base/_git/x`,
    ];
    for (const s of spellings) {
      for (const field of ["resources", "components"]) {
        const root = tree({ "k/kustomization.yaml": `${field}:\n  - "${s}"\n` });
        await refused(render({ root, path: "k" }), "KustomizeFailed", /remote resource/, 20_000).catch(
          (e) => {
            throw new Error(`${field}: ${s}: ${(e as Error).message}`);
          },
        );
      }
    }
    assert.deepEqual(requests, [], "no request reached the Git server");
  });

  test("Helm charts are refused; exec plugins and KRM exec functions never run", async () => {
    const helm = tree({
      "k/kustomization.yaml": "helmCharts: [{name: x, repo: https://charts.example.com}]\n",
    });
    await refused(render({ root: helm, path: "k" }), "KustomizeFailed", /helmCharts is not supported/);
    const script = `#!/bin/sh\ntouch ${MARKER}\necho 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: evil}'\n`;
    const cases: Record<string, string>[] = [
      // A legacy exec plugin: kustomize looks it up under KUSTOMIZE_PLUGIN_HOME or XDG_CONFIG_HOME.
      {
        "k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [plugin.yaml]\n",
        "k/cm.yaml": CM("c"),
        "k/plugin.yaml": "apiVersion: someteam.example.com/v1\nkind: Evil\nmetadata: {name: e}\n",
        "k/kustomize/plugin/someteam.example.com/v1/evil/Evil": script,
      },
      // A KRM function with an exec runtime, as a generator and as a transformer.
      {
        "k/kustomization.yaml": "generators: [fn.yaml]\n",
        "k/fn.yaml": `apiVersion: example.com/v1\nkind: Gen\nmetadata:\n  name: g\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: ./evil.sh\n`,
        "k/evil.sh": script,
      },
      {
        "k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [fn.yaml]\n",
        "k/cm.yaml": CM("c"),
        "k/fn.yaml": `apiVersion: example.com/v1\nkind: T\nmetadata:\n  name: t\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n        args: ["-c", "touch ${MARKER}"]\n`,
      },
      // A container function (would pull and run an image).
      {
        "k/kustomization.yaml": "generators: [fn.yaml]\n",
        "k/fn.yaml": `apiVersion: example.com/v1\nkind: Gen\nmetadata:\n  name: g\n  annotations:\n    config.kubernetes.io/function: |\n      container:\n        image: ${WEB_IMAGE}\n`,
      },
    ];
    for (const files of cases) {
      const root = tree(files);
      const { chmodSync } = await import("node:fs");
      for (const [p, c] of Object.entries(files)) if (c.startsWith("#!")) chmodSync(join(root, p), 0o755);
      await refused(render({ root, path: "k" }), "KustomizeFailed", /kustomize build of k failed/, 30_000);
      noMarker();
    }
  });
});

describe("huge, deep and multiplying input", () => {
  test("a file over the default size limit is refused at once", async () => {
    const root = tree({ "big.yaml": `${CM("big").trimEnd()}\n# ${"x".repeat(5 * 1024 * 1024)}\n` });
    await refused(
      render({ root, path: "." }),
      "FileTooLarge",
      /big\.yaml: \d+ bytes is over the limit/,
      5000,
    );
  });

  test("megabytes of nesting, plain or dressed as a SOPS file, are refused in bounded time and memory", async () => {
    const deep = `${"[".repeat(1_500_000)}${"]".repeat(1_500_000)}`;
    const sopsLike = `apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {x: ENC[AES256_GCM,data:x]}\nsops:\n  mac: x\n---\n${deep}\n`;
    for (const text of [`${CM("a")}---\n${deep}\n`, sopsLike]) {
      const root = tree({ "deep.yaml": text });
      const before = process.memoryUsage().rss;
      await refused(
        render({
          root,
          path: ".",
          ageIdentities: {
            identities: ["AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"],
          },
        }),
        ["YamlInvalid", "DecryptionFailed"],
        /deep\.yaml.*nesting deeper than 100 levels/,
        5000,
      );
      assert.ok(process.memoryUsage().rss - before < 512 * 2 ** 20, "memory stayed bounded");
    }
  });

  test("a kustomization that multiplies its objects hits the object or time limit with a clear error", async () => {
    // Each level includes the one below twice under two prefixes: 2^14 ConfigMaps at the top.
    const files: Record<string, string> = {
      "l0/kustomization.yaml": "resources: [cm.yaml]\n",
      "l0/cm.yaml": CM("c"),
    };
    for (let i = 1; i <= 14; i++) {
      files[`l${i}/a/kustomization.yaml`] = `namePrefix: a${i}-\nresources: [../../l${i - 1}]\n`;
      files[`l${i}/b/kustomization.yaml`] = `namePrefix: b${i}-\nresources: [../../l${i - 1}]\n`;
      files[`l${i}/kustomization.yaml`] = "resources: [a, b]\n";
    }
    const root = tree(files);
    const t0 = Date.now();
    await assert.rejects(
      render({ root, path: "l14", limits: { maxObjects: 5000, timeoutMs: 4000 } }),
      (e) => {
        assert.ok(isSluiceError(e), String(e));
        assert.ok(
          (e.code === "LimitExceeded" && /5000/.test(e.message)) ||
            (e.code === "KustomizeFailed" && /timed out/.test(e.message)),
          `${e.code}: ${e.message}`,
        );
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0} ms`);
  });
});

describe("values that look like shell or YAML", () => {
  const VALUES = [
    `$(touch ${MARKER})`,
    `\`touch ${MARKER}\``,
    `x; touch ${MARKER}`,
    `' || touch ${MARKER} || '`,
    `"; touch ${MARKER}; echo "`,
    "{a: b}",
    "[1, 2]",
    "&anchor x",
    "*alias",
    "!!binary aGk=",
    "- item",
    "key: value",
    "${NESTED}",
    "$$(echo)",
    "true",
    "0x1F",
  ];

  test("substituted verbatim as strings: no shell, no YAML structure, no re-typing", async () => {
    const root = tree({
      "cm.yaml": `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n${VALUES.map((_, i) => `  v${i}: \${V${i}}\n  q${i}: "\${V${i}}"\n`).join("")}`,
    });
    const vars = Object.fromEntries(VALUES.map((v, i) => [`V${i}`, v]));
    const r = await render({ root, path: ".", vars: { ...vars, NESTED: "not-expanded-twice" } });
    const data = r.objects[0]!.data as Record<string, unknown>;
    VALUES.forEach((v, i) => {
      const want = v === "true" || v === "0x1F" ? (data[`v${i}`] as unknown) : v;
      assert.equal(data[`q${i}`], v, `quoted ${v}`);
      assert.equal(data[`v${i}`], want, `unquoted ${v}`);
      assert.equal(typeof data[`q${i}`], "string");
    });
    noMarker();
  });
});

describe("sources: submodules elsewhere, metadata URLs, hostile branch names (through the agent)", () => {
  test("a submodule pointing at another reachable repository is neither fetched nor materialised", async () => {
    const requests: string[] = [];
    const srv = await startTestGitServer({ onRequest: (r) => requests.push(r.path) });
    const cache = mkdtempSync(join(tmpdir(), "sluice-hostile-cache-"));
    after(async () => {
      await srv.stop();
      rmSync(cache, { recursive: true, force: true });
    });
    await srv.createRepo("other", { "secret.txt": "other repository's content\n" });
    await srv.createRepo("app", { "ok.yaml": CM("ok") });
    const wc = await WorkingCopy.clone(srv.repoUrl("app"));
    after(() => rmSync(wc.dir, { recursive: true, force: true }));
    const otherHead = (
      await new GitSource({ cacheDir: cache }).listBranches("o", { url: srv.repoUrl("other") })
    ).get("main")!;
    await wc.write({
      ".gitmodules": `[submodule "a"]\n\tpath = a\n\turl = ${srv.repoUrl("other")}\n[submodule "b"]\n\tpath = b\n\turl = ../other.git\n`,
    });
    await wc.run(["update-index", "--add", "--cacheinfo", `160000,${otherHead},a`]);
    await wc.run(["update-index", "--add", "--cacheinfo", `160000,${otherHead},b`]);
    await wc.run(["add", ".gitmodules"]);
    await wc.run(["commit", "-q", "-m", "submodules"]);
    await wc.run(["push", "-q", "origin", "HEAD:main"]);
    requests.length = 0;
    const a = await new GitSource({ cacheDir: cache }).fetch("app", { url: srv.repoUrl("app") });
    assert.ok(!readdirSync(a.dir).includes("a") && !readdirSync(a.dir).includes("b"), "not materialised");
    assert.ok(
      requests.every((p) => p.startsWith("/app.git/")),
      `only the watched repository was asked: ${requests.join(", ")}`,
    );
    const r = await render({ root: a.dir, path: "." });
    assert.deepEqual(
      r.objects.map((o) => o.metadata.name),
      ["ok"],
    );
  });

  test("link-local and metadata source URLs are refused by the agent, which carries on", async (t) => {
    const h = await harness("meta", { "web/cm.yaml": CM("ok") });
    t.after(() => h.cleanup());
    const repo = (name: string, url: string) =>
      `---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: ${name}}\nspec: {url: "${url}", interval: 1h, ref: {branch: main}}\n`;
    const { agent, store } = await h.startAgent(
      fluxConfig({ env: "hostile-meta", units: ["web"] }) +
        repo("imds", "http://169.254.169.254/latest/meta-data.git") +
        repo("v6", "http://[fe80::1]/x.git") +
        repo("mapped", "http://[::ffff:169.254.169.254]/x.git") +
        repo("gce", "http://metadata.google.internal/x.git"),
    );
    await eventually(
      () => store.getUnitStatus("hostile-meta", "web")?.ready === "True",
      "the good source still works",
    );
    const bad = await eventually(
      () => {
        const s = agent.listSources().filter((x) => x.name !== "default/app" && !x.name.endsWith("/app"));
        return s.length === 4 && s.every((x) => !x.ok && /refused/.test(x.message)) ? s : undefined;
      },
      "every metadata URL refused",
      20_000,
      () => agent.listSources(),
    );
    for (const s of bad) assert.match(s.message, /link-local|metadata/);
    const events = store.listEvents({ limit: 1000 }).filter((e) => e.reason === "ArtifactFailed");
    assert.ok(events.length >= 4);
    assert.ok(agent.started);
  });

  test("branch names and variable values that look like shell reach pods verbatim and run nothing on the host", async (t) => {
    const PORT = 18_620;
    const evil = `$(touch ${MARKER}) \`touch ${MARKER}\`; touch ${MARKER} ' " |`;
    const app = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {branch: "\${BRANCH}"}}
    spec:
      containers:
        - name: web
          image: ${WEB_IMAGE}
          env: [{name: EVIL, value: "\${EVIL}"}, {name: BRANCH, value: "\${BRANCH}"}]
          command: ["sh", "-c", 'mkdir -p /www && echo "$EVIL" > /www/index.html && echo "$BRANCH" >> /www/index.html && exec httpd -f -p 8080 -h /www']
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
    - port: \${PORT}
      targetPort: 8080
`;
    const h = await harness("shell", { "web/app.yaml": app });
    t.after(() => h.cleanup());
    // A branch name git accepts, full of shell syntax.
    const branch = `feature/$(touch${"${IFS}"}${MARKER.replaceAll("/", "-")})\`id\`;x`;
    await h.git("checkout", "-q", "-b", branch);
    await h.git("push", "-q", "origin", `HEAD:refs/heads/${branch}`);
    const config = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app}
spec: {url: GIT_URL, interval: 1h}
---
apiVersion: sluice.dev/v1alpha1
kind: Environments
metadata: {name: branches}
spec:
  sourceRef: {name: app}
  rules: [{branch: "feature/**", name: "hostile-{{branch.slug}}", vars: {PORT: "${PORT}"}}]
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: web}
spec:
  sourceRef: {kind: GitRepository, name: app}
  path: ./web
  interval: 1h
  prune: true
  timeout: 90s
  postBuild:
    substitute: {EVIL: ${JSON.stringify(evil)}}
`;
    const { store } = await h.startAgent(config);
    const env = await eventually(
      () => store.listEnvironments().find((e) => e.branch === branch && e.state === "active")?.name,
      "the branch's environment",
    );
    assert.match(env, /^hostile-feature-[a-z0-9-]+$/);
    await eventually(
      () => store.getUnitStatus(env, "web")?.ready === "True",
      "Ready",
      120_000,
      () => store.getUnitStatus(env, "web"),
    );
    assert.equal(await httpText(PORT), `${evil}\n${branch}`);
    noMarker();
    // The local target's state holds the branch as data, nothing more.
    const state = join(h.dir, "state", "local");
    assert.ok(statSync(state).isDirectory());
    assert.ok(readFileSync(join(h.dir, "state", "config", "sluice.yaml"), "utf8").includes("hostile-"));
  });
});
