/**
 * The local target against real podman. Every pod and container these tests create carries
 * `sluice.dev/env=<a test env>`; `after()` removes them by that label.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { KubeObject } from "../../core/index.js";
import { isSluiceError } from "../../core/index.js";
import type { UnitId } from "../types.js";
import { BUSYBOX_IMAGE, createLocalTarget, ensureBaseImages, type LocalTarget, Podman } from "./index.js";

const podman = new Podman();
const envs = new Set<string>();
const dirs: string[] = [];
const targets: LocalTarget[] = [];
const run = `t${process.pid.toString(36)}`;

function envName(s: string): string {
  const e = `${run}-${s}`;
  envs.add(e);
  return e;
}

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), "sluice-local-test-"));
  dirs.push(d);
  return d;
}

async function target(dir: string, logs?: string[]): Promise<LocalTarget> {
  const t = await createLocalTarget({ stateDir: dir, log: (m) => logs?.push(m) });
  targets.push(t);
  return t;
}

before(async () => {
  await ensureBaseImages({ log: () => {} });
});

after(async () => {
  for (const t of targets) await t.close();
  for (const env of envs) {
    const pods = await podman.json<{ Id: string }[]>([
      "pod",
      "ps",
      "--format",
      "json",
      "--filter",
      `label=sluice.dev/env=${env}`,
    ]);
    if (pods.length) await podman.run(["pod", "rm", "-f", "-t", "0", "--ignore", ...pods.map((p) => p.Id)]);
    const ctrs = await podman.json<{ Id: string }[]>([
      "ps",
      "-a",
      "--format",
      "json",
      "--filter",
      `label=sluice.dev/env=${env}`,
    ]);
    if (ctrs.length) await podman.run(["rm", "-f", "-t", "0", "--ignore", ...ctrs.map((c) => c.Id)]);
    const vols = await podman.json<{ Name: string }[]>([
      "volume",
      "ls",
      "--format",
      "json",
      "--filter",
      `label=sluice.dev/env=${env}`,
    ]);
    if (vols.length) await podman.run(["volume", "rm", "-f", ...vols.map((v) => v.Name)]);
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// ---------------------------------------------------------------- manifests

const WEB_CMD =
  'mkdir -p /www && echo "$VERSION $GREETING" > /www/index.html && if [ -f /etc/secret/token ]; then cp /etc/secret/token /www/token; fi && exec httpd -f -p 8080 -h /www';

function deployment(
  name: string,
  version: string,
  opts: { replicas?: number; command?: string[]; image?: string } = {},
): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name },
    spec: {
      replicas: opts.replicas ?? 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: "web",
              image: opts.image ?? BUSYBOX_IMAGE,
              command: opts.command ?? ["sh", "-c", WEB_CMD],
              env: [
                { name: "VERSION", value: version },
                {
                  name: "GREETING",
                  valueFrom: { configMapKeyRef: { name: `${name}-config`, key: "greeting" } },
                },
              ],
              ports: [{ name: "http", containerPort: 8080 }],
              readinessProbe: { httpGet: { path: "/", port: "http" }, periodSeconds: 1 },
              volumeMounts: [{ name: "secret", mountPath: "/etc/secret", readOnly: true }],
            },
          ],
          volumes: [{ name: "secret", secret: { secretName: `${name}-secret` } }],
        },
      },
    },
  };
}

function config(name: string, greeting = "hello"): KubeObject[] {
  return [
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `${name}-config` }, data: { greeting } },
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: `${name}-secret` },
      data: { token: Buffer.from("s3cr3t-value").toString("base64") },
    },
  ];
}

function service(name: string, port = 80): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name },
    spec: { selector: { app: name }, ports: [{ name: "http", port, targetPort: "http" }] },
  };
}

function ingress(name: string): KubeObject {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "Ingress",
    metadata: { name },
    spec: {
      rules: [
        {
          host: "x.example",
          http: {
            paths: [{ path: "/", pathType: "Prefix", backend: { service: { name, port: { number: 80 } } } }],
          },
        },
      ],
    },
  };
}

function app(name: string, version: string, replicas = 2): KubeObject[] {
  return [...config(name), deployment(name, version, { replicas }), service(name)];
}

const opts = { prune: true, wait: true, timeoutMs: 60_000 };

// ---------------------------------------------------------------- helpers

function get(port: number, path = "/"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

interface PsEntry {
  Id: string;
  Names: string[];
  StartedAt: number;
  State: string;
  IsInfra: boolean;
  Labels: Record<string, string>;
  Ports: { host_ip: string; host_port: number; container_port: number }[] | null;
}

async function containers(env: string, extra: string[] = []): Promise<PsEntry[]> {
  const filters = [`label=sluice.dev/env=${env}`, ...extra].flatMap((f) => ["--filter", f]);
  const list = (await podman.json<PsEntry[]>(["ps", "-a", "--format", "json", ...filters])).filter(
    (c) => !c.IsInfra,
  );
  return list.sort((a, b) => (a.Names[0] ?? "").localeCompare(b.Names[0] ?? ""));
}

async function pods(env: string): Promise<{ Id: string; Name: string; Labels: Record<string, string> }[]> {
  return podman.json(["pod", "ps", "--format", "json", "--filter", `label=sluice.dev/env=${env}`]);
}

function action(
  res: { changeSet: { entries: { subject: string; action: string; reason?: string }[] } },
  subj: string,
): string | undefined {
  return res.changeSet.entries.find((e) => e.subject === subj)?.action;
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---------------------------------------------------------------- tests

describe("local target: one environment's life", () => {
  const env = envName("life");
  const unit: UnitId = { env, unit: "web" };
  const dir = stateDir();
  const logs: string[] = [];
  let t: LocalTarget;
  let port = 0;

  test("create: pods per replica with owner labels, ports on 127.0.0.1, a Service address, Ingress not applicable", async () => {
    t = await target(dir, logs);
    const ns: KubeObject = { apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } };
    const t0 = Date.now();
    const res = await t.apply(unit, [ns, ...app("web", "v1"), ingress("web")], opts);
    const ms = Date.now() - t0;
    console.log(`create apply (2 replicas, wait): ${ms} ms`);
    assert.equal(action(res, "Deployment/web"), "created");
    assert.equal(action(res, "Service/web"), "created");
    assert.equal(action(res, "ConfigMap/web-config"), "created");
    assert.equal(action(res, "Secret/web-secret"), "created");
    assert.equal(action(res, "Namespace/default"), "created");
    const ing = res.changeSet.entries.find((e) => e.subject === "Ingress/web");
    assert.equal(ing?.action, "not-applicable");
    assert.match(ing?.reason ?? "", /not applicable on local/);
    assert.equal(res.health?.status, "Healthy");
    assert.deepEqual(res.inventory.entries.map((r) => r.kind).sort(), [
      "ConfigMap",
      "Deployment",
      "Namespace",
      "Secret",
      "Service",
    ]);
    assert.deepEqual((await t.inventory(unit))?.entries, res.inventory.entries);

    const ps = await containers(env);
    assert.equal(ps.length, 2, "one app container per replica");
    const hashes = new Set<string>();
    for (const c of ps) {
      assert.equal(c.Labels["sluice.dev/env"], env);
      assert.equal(c.Labels["sluice.dev/unit"], "web");
      assert.equal(c.Labels["sluice.dev/owner"], `${env}.web`);
      assert.ok(c.Labels["sluice.dev/template-hash"]);
      hashes.add(c.Labels["sluice.dev/template-hash"] ?? "");
      for (const p of c.Ports ?? []) assert.equal(p.host_ip, "127.0.0.1");
      assert.ok((c.Ports ?? []).some((p) => p.container_port === 8080));
    }
    assert.equal(hashes.size, 1);
    const pl = await pods(env);
    assert.equal(pl.length, 2);
    for (const p of pl) assert.match(p.Name, new RegExp(`^${env}-default-web-[0-9a-f]{10}-[01]$`));

    const addr = t.serviceAddress(unit, "default", "web");
    assert.ok(addr);
    port = addr.port;
    const r = await get(port);
    assert.equal(r.status, 200);
    assert.equal(r.body.trim(), "v1 hello", "env from a value and from a ConfigMap");
    const s = await get(port, "/token");
    assert.equal(s.body.trim(), "s3cr3t-value", "the Secret is mounted as a volume");
    assert.ok(!logs.join("\n").includes("s3cr3t-value"), "secret values never reach the log");
    assert.ok(
      !readFileSync(
        join(dir, "units", (await import("node:fs")).readdirSync(join(dir, "units"))[0] ?? ""),
        "utf8",
      ).includes("s3cr3t"),
    );
  });

  test("no-op re-apply touches nothing: same container IDs and start times", async () => {
    const before = await containers(env);
    const t0 = Date.now();
    const res = await t.apply(
      unit,
      [
        ...app("web", "v1"),
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } },
        ingress("web"),
      ],
      opts,
    );
    console.log(`no-op re-apply (wait): ${Date.now() - t0} ms`);
    for (const e of res.changeSet.entries) {
      assert.ok(
        e.action === "unchanged" || e.action === "not-applicable",
        `${e.subject} is ${e.action}: ${e.reason ?? ""}`,
      );
    }
    const afterList = await containers(env);
    assert.deepEqual(
      afterList.map((c) => [c.Id, c.StartedAt, c.State]),
      before.map((c) => [c.Id, c.StartedAt, c.State]),
    );
    const plan = await t.plan(unit, [
      ...app("web", "v1"),
      ingress("web"),
      { apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } },
    ]);
    assert.ok(plan.entries.every((e) => e.action === "unchanged" || e.action === "not-applicable"));
    const changed = await t.plan(unit, app("web", "v2"));
    assert.equal(changed.entries.find((e) => e.subject === "Deployment/web")?.action, "configured");
  });

  test("update rolls with zero failed requests from a continuous client", async () => {
    const oldHash = (await containers(env))[0]?.Labels["sluice.dev/template-hash"];
    let ok = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    let stop = false;
    let firstV2 = 0;
    const client = (async () => {
      while (!stop) {
        try {
          const r = await get(port);
          if (r.status === 200) {
            ok++;
            if (r.body.trim() === "v2 hello" && !firstV2) firstV2 = Date.now();
            seen.add(r.body.trim());
          } else failures.push(`status ${r.status}`);
        } catch (e) {
          failures.push(String(e));
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const res = await t.apply(unit, app("web", "v2"), opts);
    console.log(
      `rolling update (2 replicas, wait): ${Date.now() - t0} ms; new version answering after ${firstV2 - t0} ms`,
    );
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await client;
    assert.equal(action(res, "Deployment/web"), "configured");
    assert.deepEqual(failures, [], "no failed request during the rollout");
    assert.ok(ok > 20, `the client kept sending (${ok} requests)`);
    assert.ok(seen.has("v1 hello") && seen.has("v2 hello"), `saw both versions: ${[...seen].join(", ")}`);
    const ps = await containers(env);
    assert.equal(ps.length, 2);
    const hashes = new Set(ps.map((c) => c.Labels["sluice.dev/template-hash"]));
    assert.equal(hashes.size, 1);
    assert.notEqual([...hashes][0], oldHash, "only pods of the new template run");
    assert.equal((await get(port)).body.trim(), "v2 hello");
    assert.deepEqual(
      t.serviceAddress(unit, "default", "web"),
      { host: "127.0.0.1", port },
      "the address is stable",
    );
  });

  test("a restarted agent serves the same address and finds its pods", async () => {
    // A second agent on the same state while the first still serves: it keeps the recorded
    // address (never moves it) and takes over once the first one is gone.
    const t2 = await createLocalTarget({ stateDir: dir, log: (m) => logs.push(m), monitorIntervalMs: 200 });
    targets.push(t2);
    assert.deepEqual(t2.serviceAddress(unit, "default", "web"), { host: "127.0.0.1", port });
    const busy = await t2.health(unit, [{ apiVersion: "v1", kind: "Service", name: "web" }]);
    assert.match(busy.objects[0]?.message ?? "", /held by another process/);
    await t.close();
    await until("the second agent to take the port over", 10_000, async () => {
      const h = await t2.health(unit, [{ apiVersion: "v1", kind: "Service", name: "web" }]);
      return /^Serving on 127\.0\.0\.1:/.test(h.objects[0]?.message ?? "") ? true : undefined;
    });
    const r = await until("the proxy to serve after restart", 10_000, async () => {
      const x = await get(port).catch(() => undefined);
      return x?.status === 200 ? x : undefined;
    });
    assert.equal(r.body.trim(), "v2 hello");
    const h = await t2.health(unit, (await t2.inventory(unit))?.entries ?? []);
    assert.equal(h.status, "Healthy", JSON.stringify(h));
    t = t2;
  });

  test("prune removes only inventory-owned pods", async () => {
    // A second Deployment in the unit, then a pod and a container started by hand with look-alike labels.
    await t.apply(
      unit,
      [...app("web", "v2"), ...config("extra"), deployment("extra", "x1", { replicas: 1 })],
      opts,
    );
    assert.equal((await pods(env)).length, 3);
    const labels: Record<string, string> = {
      "sluice.dev/env": env,
      "sluice.dev/unit": "web",
      "sluice.dev/owner": `${env}.web`,
    };
    const labelArgs = (more: Record<string, string>) =>
      Object.entries({ ...labels, ...more }).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
    await podman.run([
      "run",
      "-d",
      "--name",
      `${env}-byhand`,
      ...labelArgs({ "sluice.dev/workload": "Deployment/default/extra" }),
      BUSYBOX_IMAGE,
      "sleep",
      "300",
    ]);
    await podman.run([
      "pod",
      "create",
      "--name",
      `${env}-default-handpod`,
      ...labelArgs({ "sluice.dev/workload": "Deployment/default/handmade" }),
    ]);
    await podman.run([
      "run",
      "-d",
      "--pod",
      `${env}-default-handpod`,
      "--name",
      `${env}-handpod-c`,
      ...labelArgs({}),
      BUSYBOX_IMAGE,
      "sleep",
      "300",
    ]);

    const res = await t.apply(unit, app("web", "v2"), opts);
    assert.equal(action(res, "Deployment/extra"), "deleted");
    assert.equal(action(res, "ConfigMap/extra-config"), "deleted");
    assert.equal(action(res, "Deployment/web"), "unchanged");
    assert.ok(!res.inventory.entries.some((r) => r.name === "extra"));
    const names = (await pods(env)).map((p) => p.Name).sort();
    assert.equal(names.filter((n) => n.includes("-extra-")).length, 0, "the pruned Deployment's pod is gone");
    assert.ok(names.includes(`${env}-default-handpod`), "a pod started by hand survives");
    assert.equal(names.filter((n) => n.includes("-web-")).length, 2);
    const byHand = await containers(env, [`name=${env}-byhand`]);
    assert.equal(byHand.length, 1, "a container started by hand survives");
    assert.equal(byHand[0]?.State, "running");
  });

  test("destroy removes what the inventory lists and the inventory", async () => {
    const res = await t.destroy(unit);
    assert.ok(res.entries.some((e) => e.subject === "Deployment/web" && e.action === "deleted"));
    assert.equal(await t.inventory(unit), undefined);
    assert.equal(t.serviceAddress(unit, "default", "web"), undefined);
    const left = (await pods(env)).map((p) => p.Name);
    assert.deepEqual(left, [`${env}-default-handpod`]);
  });
});

describe("local target: failures", () => {
  test("a crash-looping container is Degraded with its exit code and last log lines", async () => {
    const env = envName("crash");
    const unit = { env, unit: "c" };
    const t = await target(stateDir());
    const dep = deployment("boom", "v1", {
      replicas: 1,
      command: ["sh", "-c", "echo about to fail; exit 3"],
    });
    const objs = [...config("boom"), dep];
    const res = await t.apply(unit, objs, { prune: true, wait: false, timeoutMs: 20_000 });
    assert.equal(action(res, "Deployment/boom"), "created");
    const h = await until("Degraded", 20_000, async () => {
      const x = await t.health(unit, res.inventory.entries);
      return x.status === "Degraded" ? x : undefined;
    });
    const d = h.objects.find((o) => o.subject === "Deployment/boom");
    assert.equal(d?.status, "Degraded");
    assert.match(d?.message ?? "", /exited with code 3/);
    assert.match(d?.message ?? "", /about to fail/);
    await assert.rejects(
      t.apply(unit, objs, { prune: true, wait: true, timeoutMs: 20_000 }),
      (e: unknown) => {
        assert.ok(isSluiceError(e, "HealthCheckFailed"));
        assert.match((e as Error).message, /exited with code 3/);
        return true;
      },
    );
  });

  test("a missing image is Degraded with the reason", async () => {
    const env = envName("noimg");
    const unit = { env, unit: "n" };
    const t = await target(stateDir());
    const dep = deployment("ghost", "v1", { replicas: 1, image: "localhost/sluice/does-not-exist:1" });
    const res = await t.apply(unit, [...config("ghost"), dep], {
      prune: true,
      wait: false,
      timeoutMs: 30_000,
    });
    assert.match(
      res.changeSet.entries.find((e) => e.subject === "Deployment/ghost")?.reason ?? "",
      /could not be found or pulled/,
    );
    const h = await t.health(unit, res.inventory.entries);
    const d = h.objects.find((o) => o.subject === "Deployment/ghost");
    assert.equal(d?.status, "Degraded");
    assert.match(d?.message ?? "", /localhost\/sluice\/does-not-exist:1/);
    assert.equal((await pods(env)).length, 0, "no half-made pod is left");
  });
});

describe("local target: side by side", () => {
  test("two environments of the same app run without name or port clashes", async () => {
    const a = envName("prod");
    const b = envName("stag");
    const t = await target(stateDir());
    const [ra, rb] = await Promise.all([
      t.apply({ env: a, unit: "app" }, app("web", "prod-1", 1), opts),
      t.apply({ env: b, unit: "app" }, app("web", "stag-1", 1), opts),
    ]);
    assert.equal(ra.health?.status, "Healthy");
    assert.equal(rb.health?.status, "Healthy");
    const pa = t.serviceAddress({ env: a, unit: "app" }, "default", "web");
    const pb = t.serviceAddress({ env: b, unit: "app" }, "default", "web");
    assert.ok(pa && pb && pa.port !== pb.port);
    assert.equal((await get(pa.port)).body.trim(), "prod-1 hello");
    assert.equal((await get(pb.port)).body.trim(), "stag-1 hello");
    const [na, nb] = [(await pods(a)).map((p) => p.Name), (await pods(b)).map((p) => p.Name)];
    assert.equal(na.length, 1);
    assert.equal(nb.length, 1);
    assert.ok(na[0]?.startsWith(`${a}-default-web-`));
    assert.ok(nb[0]?.startsWith(`${b}-default-web-`));
    // Updating one leaves the other alone.
    const before = (await containers(a)).map((c) => c.Id);
    await t.apply({ env: b, unit: "app" }, app("web", "stag-2", 1), opts);
    assert.deepEqual(
      (await containers(a)).map((c) => c.Id),
      before,
    );
    assert.equal((await get(pb.port)).body.trim(), "stag-2 hello");
    assert.equal((await get(pa.port)).body.trim(), "prod-1 hello");
  });

  test("kinds that mean nothing locally are listed as not applicable, never dropped", async () => {
    const t = await target(stateDir());
    const objs: KubeObject[] = [
      ingress("web"),
      { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "r" } },
      { apiVersion: "policy/v1", kind: "PodDisruptionBudget", metadata: { name: "p" } },
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "sa" } },
      { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } },
    ];
    const res = await t.apply({ env: envName("na"), unit: "u" }, objs, opts);
    assert.equal(res.changeSet.entries.length, objs.length);
    for (const e of res.changeSet.entries) {
      assert.equal(e.action, "not-applicable", e.subject);
      assert.match(e.reason ?? "", /not applicable on local: \S/);
    }
    assert.deepEqual(res.inventory.entries, []);
  });
});

describe("local target: crash safety", () => {
  test("an agent killed mid-apply converges on the next apply, without duplicates", async () => {
    const env = envName("kill");
    const unit = { env, unit: "app" };
    const dir = stateDir();
    const t1 = await target(dir);
    await t1.apply(unit, app("web", "v1"), opts);
    const oldHash = (await containers(env))[0]?.Labels["sluice.dev/template-hash"];
    await t1.close();

    // Apply v2 in a child process and SIGKILL it as soon as a pod of the new template exists.
    const mod = fileURLToPath(new URL("./index.ts", import.meta.url));
    const code = `
      const { createLocalTarget } = await import(${JSON.stringify(mod)});
      const t = await createLocalTarget({ stateDir: ${JSON.stringify(dir)} });
      await t.apply(${JSON.stringify(unit)}, ${JSON.stringify(app("web", "v2"))}, { prune: true, wait: true, timeoutMs: 60000 });
      console.log("finished");
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    await until("a pod of the new template", 30_000, async () => {
      const ps = await pods(env);
      return ps.some((p) => p.Labels["sluice.dev/template-hash"] !== oldHash) ? true : undefined;
    });
    child.kill("SIGKILL");
    await exited;
    assert.ok(!out.includes("finished"), `the child was killed mid-apply (output: ${out})`);

    const t2 = await target(dir);
    const res = await t2.apply(unit, app("web", "v2"), opts);
    assert.equal(res.health?.status, "Healthy");
    const ps = await pods(env);
    assert.equal(ps.length, 2, `exactly two pods: ${ps.map((p) => p.Name).join(", ")}`);
    assert.equal(new Set(ps.map((p) => p.Labels["sluice.dev/template-hash"])).size, 1);
    assert.notEqual(ps[0]?.Labels["sluice.dev/template-hash"], oldHash);
    const ctrs = await containers(env);
    assert.equal(ctrs.length, 2, "no duplicate containers");
    assert.ok(ctrs.every((c) => c.State === "running"));
    const addr = t2.serviceAddress(unit, "default", "web");
    assert.ok(addr);
    assert.equal((await get(addr.port)).body.trim(), "v2 hello");
    const again = await t2.apply(unit, app("web", "v2"), opts);
    assert.equal(action(again, "Deployment/web"), "unchanged");
  });
});

describe("local target: traffic policies", () => {
  test("set, validated, kept across a re-apply and a restart, cleared", async () => {
    const env = envName("traffic");
    const unit: UnitId = { env, unit: "web" };
    const dir = stateDir();
    const t1 = await target(dir);
    await t1.apply(unit, [service("web")], { prune: true, wait: false, timeoutMs: 10_000 });
    const policy = {
      protocol: "http" as const,
      rules: [
        {
          matches: [{ headers: [{ name: "x-ab", value: "b" }] }],
          backends: [{ selector: { app: "web", v: "2" }, weight: 1 }],
        },
        {
          backends: [
            { selector: { app: "web", v: "1" }, weight: 90 },
            { selector: { app: "web", v: "2" }, weight: 10 },
          ],
        },
      ],
    };
    assert.throws(
      () => t1.setTraffic(unit, "default", "nope", policy),
      (e: Error & { code?: string }) => e.code === "NotFound" && /Service default\/nope/.test(e.message),
    );
    assert.throws(
      () => t1.setTraffic(unit, "default", "web", { protocol: "tcp", rules: policy.rules }),
      /request matches need protocol http/,
    );
    assert.throws(
      () =>
        t1.setTraffic(unit, "default", "web", {
          protocol: "http",
          rules: [{ backends: [{ selector: {}, weight: 1 }] }],
        }),
      /a backend without a selector/,
    );
    t1.setTraffic(unit, "default", "web", policy);
    assert.deepEqual(t1.traffic(unit, "default", "web"), policy);
    // Two ports, httpPort 80: port 80 parses HTTP (garbage gets a 400 at once), port 81 stays tcp.
    const twoPorts: KubeObject = {
      ...service("web2"),
      spec: {
        selector: { app: "web2" },
        ports: [
          { name: "http", port: 80, targetPort: 8080 },
          { name: "raw", port: 81, targetPort: 9090 },
        ],
      },
    };
    await t1.apply(unit, [service("web"), twoPorts], { prune: true, wait: false, timeoutMs: 10_000 });
    t1.setTraffic(unit, "default", "web2", {
      protocol: "http",
      httpPort: 80,
      rules: [{ backends: [{ selector: { app: "web2" }, weight: 1 }] }],
    });
    const addrs = t1.serviceAddresses(unit).filter((a) => a.name === "web2");
    const answer = (port: number) =>
      new Promise<string>((resolve) => {
        const c = net.connect(port, "127.0.0.1", () => c.write("hello\r\n\r\n"));
        let got = "";
        c.on("data", (d) => {
          got += d;
        });
        c.on("error", () => {});
        setTimeout(() => {
          c.destroy();
          resolve(got);
        }, 800);
      });
    assert.match(await answer(addrs.find((a) => a.port === 80)!.address.port), /^HTTP\/1\.1 400/);
    assert.equal(
      await answer(addrs.find((a) => a.port === 81)!.address.port),
      "",
      "tcp: waits for a backend",
    );
    await t1.apply(unit, [service("web")], { prune: true, wait: false, timeoutMs: 10_000 });
    // A re-apply of the Service (the manifest knows nothing of the policy) keeps it.
    await t1.apply(unit, [service("web")], { prune: true, wait: false, timeoutMs: 10_000 });
    assert.deepEqual(t1.traffic(unit, "default", "web"), policy);
    const port = t1.serviceAddress(unit, "default", "web")!.port;
    await t1.close();
    const t2 = await target(dir);
    assert.equal(t2.serviceAddress(unit, "default", "web")?.port, port);
    assert.deepEqual(t2.traffic(unit, "default", "web"), policy, "restored from the state file");
    t2.setTraffic(unit, "default", "web", undefined);
    assert.equal(t2.traffic(unit, "default", "web"), undefined);
    await t2.close();
    const t3 = await target(dir);
    assert.equal(t3.traffic(unit, "default", "web"), undefined, "the clearing was saved too");
    await t3.destroy(unit);
  });
});
