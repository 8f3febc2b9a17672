import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { gitCredentialData } from "./bootstrap.js";
import { components, type ManifestSpec, manifestFiles } from "./manifests.js";
import { generateSshKey } from "./sshkey.js";

const run = promisify(execFile);

test("the generated deploy key is an OpenSSH ed25519 key that ssh-keygen reads back", async () => {
  const k = generateSshKey("sluice@prod");
  const dir = mkdtempSync(join(tmpdir(), "sluice-key-"));
  try {
    writeFileSync(join(dir, "id"), k.privateKey, { mode: 0o600 });
    const { stdout } = await run("ssh-keygen", ["-y", "-f", join(dir, "id")]);
    const keyOnly = (line: string) => line.trim().split(" ").slice(0, 2).join(" ");
    assert.equal(keyOnly(stdout), keyOnly(k.publicKey));
    assert.match(k.publicKey, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA[A-Za-z0-9+/=]+ sluice@prod$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("SSH credentials: a key is made once and kept on re-runs; URLs must fit the credential kind", async () => {
  const url = "ssh://git@git.example.invalid/fleet.git";
  const first = await gitCredentialData(
    url,
    { kind: "ssh", knownHosts: "git.example.invalid ssh-ed25519 AAAA\n" },
    "prod",
    undefined,
  );
  assert.ok(first?.deployKey?.startsWith("ssh-ed25519 "));
  assert.match(first!.data.identity!, /BEGIN OPENSSH PRIVATE KEY/);
  const again = await gitCredentialData(url, { kind: "ssh" }, "prod", first!.data);
  assert.equal(again!.data.identity, first!.data.identity);
  assert.equal(again!.deployKey, first!.deployKey);
  assert.equal(again!.data.known_hosts, first!.data.known_hosts);
  await assert.rejects(
    gitCredentialData("https://h/r.git", { kind: "ssh" }, "prod", undefined),
    /ssh repository URL/,
  );
  await assert.rejects(gitCredentialData(url, { kind: "token", token: "t" }, "prod", undefined), /http\(s\)/);
  assert.equal(await gitCredentialData(url, { kind: "none" }, "prod", undefined), undefined);
});

const spec: ManifestSpec = {
  cluster: "prod",
  path: "clusters/prod",
  repo: "https://git.example.invalid/fleet.git",
  branch: "main",
  image: "registry.example.invalid/sluice:0.1.0",
  replicas: 3,
  clusterAdmin: false,
  withCredentials: true,
};

test("manifests are byte-for-byte deterministic and valid YAML; --cluster-admin binds cluster-admin only", () => {
  assert.deepEqual(manifestFiles(spec), manifestFiles({ ...spec }));
  for (const [name, text] of Object.entries(manifestFiles(spec))) {
    for (const d of parseAllDocuments(text)) assert.deepEqual(d.errors, [], name);
    assert.doesNotMatch(text, /\$\{/, `${name} has no substitution syntax`);
  }
  const least = components(spec) as { kind: string; roleRef?: { name: string } }[];
  assert.ok(least.some((o) => o.kind === "ClusterRole"));
  assert.equal(least.find((o) => o.kind === "ClusterRoleBinding")!.roleRef!.name, "sluice");
  const admin = components({ ...spec, clusterAdmin: true }) as { kind: string; roleRef?: { name: string } }[];
  assert.ok(!admin.some((o) => o.kind === "ClusterRole"));
  assert.equal(admin.find((o) => o.kind === "ClusterRoleBinding")!.roleRef!.name, "cluster-admin");
  const dep = least.find((o) => o.kind === "Deployment") as any;
  const c = dep.spec.template.spec.containers[0];
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
  assert.equal(dep.spec.replicas, 3);
});
