/**
 * Infrastructure stacks against the real OpenTofu (issue 9). scripts/peers/tofu.sh builds `tofu`
 * and the hashicorp/local provider into ~/.cache/sluice; without them these tests FAIL (never
 * skip). The stack is a diamond plus a tail:
 *
 *        a (network)
 *       / \
 *      b   c        b and c run in parallel
 *       \ /
 *        d (uses a local module)
 *        |
 *        e
 *
 * Resources: OpenTofu's built-in `terraform_data` (null_resource's replacement; its id is random,
 * unknown until apply) and hashicorp/local's `local_file`.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  formatEvent,
  formatSummary,
  loadStacks,
  resolveTofu,
  runStack,
  type StackDefinition,
  type StackEvent,
  type StackRunOptions,
  type StackRunResult,
  stackOutputsAsVariables,
  type UnitResult,
} from "../src/infra/index.js";
import { render } from "../src/render/index.js";

const run = promisify(execFile);
const CACHE = join(homedir(), ".cache", "sluice");
// The mirror-only CLI configuration scripts/peers/tofu.sh writes (whatever TF_CLI_CONFIG_FILE says).
const RC = join(CACHE, "tofu.rc");
// The OpenTofu scripts/peers/tofu.sh builds, explicitly (never a tofu or terraform found on PATH).
const TOFU = join(process.env.SLUICE_BIN ?? join(CACHE, "bin"), "tofu");
const REPO = resolve(join(dirname(new URL(import.meta.url).pathname), ".."));

function resolve(p: string): string {
  return p.replace(/\/+$/, "");
}

function write(root: string, files: Record<string, string>) {
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
}

function fixture(root: string, hookLog: string) {
  write(root, {
    "replace.json": JSON.stringify({ PREFIX: "demo", C_OK: "true" }),
    // A directory layer below the root wins over the root's file (render's layering).
    "infra/replace.json": JSON.stringify({ PREFIX: "plat" }),
    "infra/network/main.tf": `
variable "name" { type = string }
resource "terraform_data" "net" { input = var.name }
output "network_id" { value = "net-\${terraform_data.net.id}" }
output "name" { value = var.name }
output "zones" { value = ["z1", "z2"] }
output "token" {
  value     = "tok-\${terraform_data.net.id}"
  sensitive = true
}
`,
    "infra/app-b/main.tf": `
variable "network_id" { type = string }
variable "zones" { type = list(string) }
variable "out_dir" { type = string }
resource "local_file" "b" {
  filename = "\${var.out_dir}/b.txt"
  content  = "b on \${var.network_id} in \${join(",", var.zones)}"
}
output "b_ref" { value = "b-\${var.network_id}" }
`,
    "infra/app-c/main.tf": `
variable "network_id" { type = string }
variable "region" { type = string }
variable "ok" { type = bool }
variable "secret" { type = string }
resource "terraform_data" "c" {
  input = "\${var.region}/\${var.network_id}"
  lifecycle {
    precondition {
      condition     = var.ok
      error_message = "c refused to run with secret \${var.secret}"
    }
  }
}
output "c_ref" { value = "c-\${var.region}-\${var.network_id}" }
`,
    "infra/app-c/inputs.tfvars.json": JSON.stringify({
      network_id: "${dependency.a.outputs.network_id}",
      secret: "${dependency.a.outputs.token}",
      region: "${REGION}",
      ok: "${C_OK}",
    }),
    "infra/modules/label/main.tf": `
variable "parts" { type = list(string) }
output "text" { value = join("+", var.parts) }
`,
    "infra/app-d/main.tf": `
variable "b_ref" { type = string }
variable "c_ref" { type = string }
variable "out_dir" { type = string }
module "label" {
  source = "../modules/label"
  parts  = [var.b_ref, var.c_ref]
}
resource "local_file" "d" {
  filename = "\${var.out_dir}/d.txt"
  content  = module.label.text
}
output "summary" { value = module.label.text }
`,
    "infra/edge/main.tf": `
variable "summary" { type = string }
resource "terraform_data" "e" { input = var.summary }
output "edge" { value = "edge:\${var.summary}" }
`,
    "stacks/platform.yaml": `apiVersion: sluice.dev/v1alpha1
kind: Stack
metadata: {name: platform}
spec:
  parallelism: 2
  substitute: {REGION: eu-west-1}
  units:
    - name: a
      path: infra/network
      inputs: {name: "\${PREFIX}-net"}
    - name: b
      path: infra/app-b
      dependencies:
        - {name: a, mockOutputs: {network_id: mock-network, zones: [m1]}}
      inputs:
        network_id: "\${dependency.a.outputs.network_id}"
        zones: "\${dependency.a.outputs.zones}"
        out_dir: "\${OUT_DIR}"
      hooks:
        before:
          - command: [sh, -c, 'echo "before $SLUICE_UNIT $SLUICE_ENV $SLUICE_STACK $SLUICE_ACTION" >> ${hookLog}']
        after:
          - command: [sh, -c, 'echo "after $SLUICE_UNIT $SLUICE_ENV $SLUICE_STACK $SLUICE_ACTION" >> ${hookLog}']
            actions: [apply]
    - name: c
      path: infra/app-c
      dependencies:
        - {name: a, mockOutputs: {network_id: mock-network, token: mock-token}}
      inputsFile: inputs.tfvars.json
    - name: d
      path: infra/app-d
      dependencies:
        - {name: b, mockOutputs: {b_ref: mock-b}}
        - {name: c, mockOutputs: {c_ref: mock-c}}
      inputs:
        b_ref: "\${dependency.b.outputs.b_ref}"
        c_ref: "\${dependency.c.outputs.c_ref}"
        out_dir: "\${OUT_DIR}"
    - name: e
      path: infra/edge
      dependencies:
        - {name: d, mockOutputs: {summary: mock-summary}}
      inputs: {summary: "\${dependency.d.outputs.summary}"}
      hooks:
        before:
          - command: [sh, -c, 'test "$SLUICE_ENV" != hookfail']
`,
  });
}

const tmp = mkdtempSync(join(tmpdir(), "sluice-infra-"));
const root = join(tmp, "repo");
const stateDir = join(tmp, "state");
const hookLog = join(tmp, "hooks.log");
let stack: StackDefinition;

function by(r: StackRunResult): Record<string, UnitResult> {
  return Object.fromEntries(r.units.map((u) => [u.unit, u]));
}

async function stackRun(
  action: StackRunOptions["action"],
  env: string,
  extra: Partial<StackRunOptions> = {},
): Promise<{ result: StackRunResult; lines: string[] }> {
  const lines: string[] = [];
  const result = await runStack({
    root,
    stack,
    action,
    env,
    stateDir,
    environmentVars: { OUT_DIR: join(tmp, "out", env) },
    onEvent: (e: StackEvent) => lines.push(formatEvent(e)),
    tofu: { binary: TOFU, cliConfigFile: RC },
    ...extra,
  });
  lines.push(formatSummary(result));
  return { result, lines };
}

function stateOf(
  env: string,
  unit: string,
): { resources: unknown[]; outputs: Record<string, unknown> } | undefined {
  const p = join(stateDir, "infra", env, "platform", unit, "terraform.tfstate");
  return existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : undefined;
}

describe("infra stacks with the real OpenTofu", () => {
  before(() => {
    try {
      resolveTofu({ binary: TOFU, cliConfigFile: RC });
    } catch (e) {
      throw new Error(
        `OpenTofu is not available (${(e as Error).message}): run scripts/peers/tofu.sh (or scripts/setup.sh --peers) first`,
      );
    }
    const provider = join(CACHE, "tofu-mirror", "registry.opentofu.org", "hashicorp", "local");
    if (!existsSync(provider) || !existsSync(RC))
      throw new Error(
        `the hashicorp/local provider mirror or ${RC} is missing: run scripts/peers/tofu.sh first`,
      );
    fixture(root, hookLog);
    stack = loadStacks(root, "stacks")[0]!;
    assert.equal(stack.name, "platform");
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test("plan on empty state works through mock outputs and creates no state", async () => {
    const { result, lines } = await stackRun("plan", "dev");
    const u = by(result);
    assert.ok(result.ok, lines.join("\n"));
    assert.ok(result.changes);
    for (const name of ["a", "b", "c", "d", "e"]) assert.equal(u[name]!.status, "changes", lines.join("\n"));
    assert.equal(u.a!.adds, 1);
    assert.equal(u.b!.adds, 1);
    assert.deepEqual(u.b!.mocked, ["a"]);
    assert.deepEqual(u.d!.mocked, ["b", "c"]);
    assert.deepEqual(u.e!.mocked, ["d"]);
    // The mocks reached the plan's variables, typed (a list stays a list)...
    const tfvars = JSON.parse(
      readFileSync(join(stateDir, "infra/dev/platform/b/src/infra/app-b/sluice.auto.tfvars.json"), "utf8"),
    );
    assert.deepEqual(tfvars.zones, ["m1"]);
    assert.equal(tfvars.network_id, "mock-network");
    // ... layered variables too: infra/replace.json's PREFIX beats the root's, the Stack's REGION applies.
    const aVars = JSON.parse(
      readFileSync(join(stateDir, "infra/dev/platform/a/src/infra/network/sluice.auto.tfvars.json"), "utf8"),
    );
    assert.equal(aVars.name, "plat-net");
    // ... and a plan writes no state.
    for (const name of ["a", "b", "c", "d", "e"])
      assert.equal(stateOf("dev", name)?.resources.length ?? 0, 0);
    assert.match(lines.join("\n"), /mock outputs: b, c/);
  });

  test("apply runs in dependency order, b and c in parallel, with real outputs, hooks and masking", async () => {
    writeFileSync(hookLog, "");
    const events: StackEvent[] = [];
    const { result, lines } = await stackRun("apply", "dev", { onEvent: (e) => events.push(e) });
    const text = [...lines, ...events.map(formatEvent), formatSummary(result)].join("\n");
    const u = by(result);
    assert.ok(result.ok, text);
    for (const name of ["a", "b", "c", "d", "e"]) {
      assert.equal(u[name]!.status, "ok", text);
      assert.equal(u[name]!.mocked, undefined, "apply never uses mocks");
    }
    // Order: every unit starts after its dependencies ended.
    assert.ok(u.b!.startedAt >= u.a!.endedAt && u.c!.startedAt >= u.a!.endedAt);
    assert.ok(u.d!.startedAt >= u.b!.endedAt && u.d!.startedAt >= u.c!.endedAt);
    assert.ok(u.e!.startedAt >= u.d!.endedAt);
    // b and c overlap in time.
    assert.ok(
      u.b!.startedAt < u.c!.endedAt && u.c!.startedAt < u.b!.endedAt,
      `b [${u.b!.startedAt}, ${u.b!.endedAt}] and c [${u.c!.startedAt}, ${u.c!.endedAt}] did not overlap`,
    );
    // Real outputs flowed: a's random id reached b's file and d's file (through b and c and a module).
    const network = stateOf("dev", "a")!.outputs.network_id as { value: string };
    assert.match(network.value, /^net-[0-9a-f-]{36}$/);
    const bFile = readFileSync(join(tmp, "out", "dev", "b.txt"), "utf8");
    assert.equal(bFile, `b on ${network.value} in z1,z2`);
    const dFile = readFileSync(join(tmp, "out", "dev", "d.txt"), "utf8");
    assert.equal(dFile, `b-${network.value}+c-eu-west-1-${network.value}`);
    assert.equal((u.e!.outputs!.edge as { value: string }).value, `edge:${dFile}`);
    // Hooks: before and after with the unit, environment, stack and action.
    assert.deepEqual(readFileSync(hookLog, "utf8").trim().split("\n"), [
      "before b dev platform apply",
      "after b dev platform apply",
    ]);
    // The sensitive output: kept in state, masked in results, events and the summary.
    const token = (stateOf("dev", "a")!.outputs.token as { value: string }).value;
    assert.match(token, /^tok-/);
    assert.deepEqual(u.a!.outputs!.token, { value: "(sensitive)", sensitive: true });
    assert.ok(!JSON.stringify(result).includes(token));
    assert.ok(!text.includes(token));
  });

  test("a second plan reads real outputs (no mocks), finds no changes, and does not init again", async () => {
    const steps: string[] = [];
    const { result, lines } = await stackRun("plan", "dev", {
      onEvent: (e) => {
        if (e.type === "step") steps.push(`${e.unit}:${e.step}`);
      },
    });
    assert.ok(result.ok, lines.join("\n"));
    assert.deepEqual(
      steps.filter((x) => x.endsWith(":init")),
      [],
      "the working copies' .terraform is reused",
    );
    assert.equal(result.changes, false, lines.join("\n"));
    for (const r of result.units) {
      assert.equal(r.status, "ok");
      assert.equal(r.mocked, undefined);
    }
  });

  test("outputs of a unit appear as variables in a Kubernetes unit's render", async () => {
    const layer = stackOutputsAsVariables(stateDir, "dev", "platform", "a");
    const network = (stateOf("dev", "a")!.outputs.network_id as { value: string }).value;
    assert.equal(layer.vars.network_id, network);
    assert.equal(layer.vars.zones, '["z1","z2"]');
    assert.deepEqual(layer.sensitive, ["token"]);
    write(root, {
      "k8s/app/cm.yaml":
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: net}\ndata:\n  network: ${network_id}\n  name: ${name}\n",
    });
    const r = await render({ root, path: "k8s/app", unitVars: [layer] });
    const cm = r.objects[0] as unknown as { data: Record<string, string> };
    assert.deepEqual(cm.data, { network, name: "plat-net" });
    assert.throws(
      () => stackOutputsAsVariables(stateDir, "nowhere", "platform", "a"),
      /has not been applied/,
    );
  });

  test("apply never uses a mock: a dependency without state fails loudly, naming it", async () => {
    const { result, lines } = await stackRun("apply", "ghost", { units: ["b"] });
    const b = by(result).b!;
    assert.equal(result.ok, false);
    assert.equal(b.status, "failed");
    assert.match(b.message!, /dependency a has no state in environment ghost; apply never uses mockOutputs/);
    assert.equal(stateOf("ghost", "b"), undefined, "nothing was applied");
    assert.ok(!existsSync(join(tmp, "out", "ghost", "b.txt")));
    assert.match(lines.join("\n"), /b\s+apply\s+failed/);
  });

  test("a unit failing mid-graph stops only its dependents; the summary shows which; secrets stay masked", async () => {
    const { result, lines } = await stackRun("apply", "broken", { vars: { C_OK: "false" } });
    const u = by(result);
    const text = lines.join("\n");
    assert.equal(result.ok, false);
    assert.equal(u.a!.status, "ok");
    assert.equal(u.b!.status, "ok", "the unrelated branch finishes");
    assert.equal(u.c!.status, "failed");
    assert.equal(u.d!.status, "skipped");
    assert.equal(u.d!.message, "dependency c failed");
    assert.equal(u.e!.status, "skipped");
    assert.equal(u.e!.message, "dependency d was skipped");
    assert.match(text, /c\s+apply\s+failed.*c refused to run with secret \*\*\*/);
    assert.match(text, /d\s+apply\s+skipped.*dependency c failed/);
    // OpenTofu printed the (not sensitive in c) variable; Sluice masked a's sensitive output in it.
    const token = (stateOf("broken", "a")!.outputs.token as { value: string }).value;
    assert.ok(!text.includes(token) && !JSON.stringify(result).includes(token));
    await stackRun("destroy", "broken", { vars: { C_OK: "false" } });
  });

  test("a failing before-hook stops the unit before OpenTofu runs", async () => {
    const { result, lines } = await stackRun("apply", "hookfail");
    const u = by(result);
    assert.deepEqual(
      result.units.map((r) => [r.unit, r.status]),
      [
        ["a", "ok"],
        ["b", "ok"],
        ["c", "ok"],
        ["d", "ok"],
        ["e", "failed"],
      ],
      lines.join("\n"),
    );
    assert.match(u.e!.message!, /before-hook .* failed \(exit code 1\)/);
    assert.equal(stateOf("hookfail", "e"), undefined);
    await stackRun("destroy", "hookfail");
  });

  test("runs of a unit never overlap: a held lock makes the run wait, then fail", async () => {
    const lock = join(stateDir, "infra", "dev", "platform", "a", "lock");
    writeFileSync(lock, JSON.stringify({ pid: process.pid, since: "test" }));
    try {
      const { result } = await stackRun("plan", "dev", { units: ["a"], lockTimeoutMs: 300 });
      assert.equal(result.units[0]!.status, "failed");
      assert.match(result.units[0]!.message!, /unit a is locked by another run \(pid \d+/);
    } finally {
      rmSync(lock, { force: true });
    }
  });

  test("the CLI: plan exit codes, progress lines and the summary table", async () => {
    const cli = (args: string[]) =>
      run(
        process.execPath,
        ["--import", "tsx", join(REPO, "src/cli/main.ts"), "stack", ...args, "--root", root],
        {
          cwd: REPO,
          env: { ...process.env, SLUICE_STATE_DIR: stateDir, SLUICE_TOFU_RC: RC, SLUICE_TOFU: TOFU },
        },
      ).then(
        (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({
          code: e.code,
          out: e.stdout,
          err: e.stderr,
        }),
      );
    const same = await cli([
      "plan",
      "--dir",
      join(root, "stacks"),
      "--env",
      "dev",
      "--var",
      `OUT_DIR=${join(tmp, "out", "dev")}`,
    ]);
    assert.equal(same.code, 0, same.out + same.err);
    assert.match(same.out, /UNIT\s+ACTION\s+RESULT\s+ADD\s+CHANGE\s+DESTROY\s+DURATION/);
    assert.match(same.out, /a: plan done \+0 ~0 -0/);
    const fresh = await cli([
      "plan",
      "--dir",
      join(root, "stacks"),
      "--env",
      "fresh",
      "--var",
      "OUT_DIR=/tmp/x",
      "a",
      "b",
    ]);
    assert.equal(fresh.code, 2, fresh.out + fresh.err);
    assert.match(fresh.out, /b\s+plan\s+changes\s+1\s+0\s+0/);
    const out = await cli(["output", "--dir", join(root, "stacks"), "--env", "dev", "a"]);
    assert.equal(out.code, 0, out.out + out.err);
    assert.match(out.out, /token = \(sensitive\)/);
    const bad = await cli([
      "apply",
      "--dir",
      join(root, "stacks"),
      "--env",
      "ghost2",
      "--var",
      "OUT_DIR=/tmp/x",
      "b",
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /dependency a has no state/);
  });

  test("a backend declared by the unit is respected; its outputs are read once per run", async () => {
    const remote = join(tmp, "remote-state");
    write(root, {
      "remote/x/main.tf": `
terraform {
  backend "local" {
    path = "${remote}/x.tfstate"
  }
}
resource "terraform_data" "x" { input = "x" }
output "endpoint" { value = "x-\${terraform_data.x.id}" }
`,
      "remote/y/main.tf": `
variable "endpoint" { type = string }
resource "terraform_data" "y" { input = var.endpoint }
output "seen" { value = var.endpoint }
`,
      "stacks-remote/remote.yaml": `apiVersion: sluice.dev/v1alpha1
kind: Stack
metadata: {name: remote}
spec:
  units:
    - {name: x, path: remote/x}
    - name: y
      path: remote/y
      dependencies: [{name: x, mockOutputs: {endpoint: mock-endpoint}}]
      inputs: {endpoint: "\${dependency.x.outputs.endpoint}"}
    - name: z
      path: remote/y
      dependencies: [{name: x, mockOutputs: {endpoint: mock-endpoint}}]
      inputs: {endpoint: "\${dependency.x.outputs.endpoint}"}
`,
    });
    const rstack = loadStacks(root, "stacks-remote")[0]!;
    const go = async (action: StackRunOptions["action"]) => {
      const steps: string[] = [];
      const result = await runStack({
        root,
        stack: rstack,
        action,
        env: "dev",
        stateDir,
        tofu: { binary: TOFU, cliConfigFile: RC },
        onEvent: (e) => {
          if (e.type === "step") steps.push(`${e.unit}:${e.step}`);
        },
      });
      assert.ok(result.ok, formatSummary(result));
      return { result, steps };
    };
    const plan0 = await go("plan");
    assert.deepEqual(
      by(plan0.result).y!.mocked,
      ["x"],
      "no state in the declared backend yet: mocks for plan",
    );
    const applied = await go("apply");
    const endpoint = JSON.parse(readFileSync(join(remote, "x.tfstate"), "utf8")).outputs.endpoint
      .value as string;
    assert.match(endpoint, /^x-[0-9a-f-]{36}$/);
    assert.ok(
      !existsSync(join(stateDir, "infra/dev/remote/x/terraform.tfstate")),
      "state stays in the unit's backend",
    );
    assert.equal((by(applied.result).y!.outputs!.seen as { value: string }).value, endpoint);
    assert.equal((by(applied.result).z!.outputs!.seen as { value: string }).value, endpoint);
    const plan = await go("plan");
    assert.equal(plan.result.changes, false);
    assert.deepEqual(
      plan.steps.filter((x) => x.endsWith(":output")),
      ["x:output"],
      "y and z share one `tofu output` of x",
    );
    assert.equal(stackOutputsAsVariables(stateDir, "dev", "remote", "x").vars.endpoint, endpoint);
    await go("destroy");
    assert.equal(JSON.parse(readFileSync(join(remote, "x.tfstate"), "utf8")).resources.length, 0);
  });

  test("destroy runs in reverse dependency order", async () => {
    const { result, lines } = await stackRun("destroy", "dev");
    const u = by(result);
    assert.ok(result.ok, lines.join("\n"));
    assert.deepEqual(
      result.units.map((r) => r.unit),
      ["e", "d", "c", "b", "a"],
    );
    assert.ok(u.d!.startedAt >= u.e!.endedAt);
    assert.ok(u.b!.startedAt >= u.d!.endedAt && u.c!.startedAt >= u.d!.endedAt);
    assert.ok(u.a!.startedAt >= u.b!.endedAt && u.a!.startedAt >= u.c!.endedAt);
    assert.equal(u.a!.destroys, 1);
    assert.equal(u.d!.destroys, 1);
    for (const name of ["a", "b", "c", "d", "e"]) assert.equal(stateOf("dev", name)!.resources.length, 0);
    assert.ok(!existsSync(join(tmp, "out", "dev", "b.txt")));
    assert.throws(() => stackOutputsAsVariables(stateDir, "dev", "platform", "a"), /has not been applied/);
  });
});
