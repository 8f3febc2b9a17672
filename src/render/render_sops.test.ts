import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { generateIdentity, identityToRecipient } from "age-encryption";
import { tree } from "../../test/support/tmp.js";
import { isSluiceError } from "../core/index.js";
import { render } from "./index.js";

const SOPS = join(process.env.SLUICE_BIN ?? join(homedir(), ".cache", "sluice", "bin"), "sops");
const secret = `apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: s3cr3t-\${SUFFIX}
  user: app
`;

let identity: string;
let recipient: string;

/** Encrypts a file in place with the real sops binary (it must exist: run scripts/peers/sops.sh). */
function sopsEncrypt(path: string) {
  const out = execFileSync(
    SOPS,
    ["--encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$", path],
    {
      env: { ...process.env, SOPS_AGE_KEY: identity },
    },
  );
  writeFileSync(path, out);
}

describe("render decrypts SOPS files made by the real sops", () => {
  before(async () => {
    identity = await generateIdentity();
    recipient = await identityToRecipient(identity);
  });

  test("a plain directory: the Secret decrypts and is then substituted", async () => {
    const root = tree({ "app/secret.yaml": secret });
    sopsEncrypt(join(root, "app/secret.yaml"));
    assert.doesNotMatch(readFileSync(join(root, "app/secret.yaml"), "utf8"), /s3cr3t/);
    const { objects } = await render({
      root,
      path: "app",
      vars: { SUFFIX: "x" },
      ageIdentities: { identities: [identity] },
    });
    assert.deepEqual((objects[0] as any).stringData, { password: "s3cr3t-x", user: "app" });
  });

  test("a kustomization: encrypted resources are decrypted before the build", async () => {
    const root = tree({
      "base/kustomization.yaml": "resources: [secret.yaml]\n",
      "base/secret.yaml": secret,
      "overlay/kustomization.yaml": "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\n",
    });
    sopsEncrypt(join(root, "base/secret.yaml"));
    const { objects } = await render({
      root,
      path: "overlay",
      vars: { SUFFIX: "y" },
      ageIdentities: { identities: [identity] },
    });
    const s = objects[0] as any;
    assert.equal(s.metadata.name, "prod-db");
    assert.equal(s.metadata.namespace, "prod");
    assert.equal(s.stringData.password, "s3cr3t-y");
    assert.equal(s.sops, undefined);
  });

  test("a wrong key, a missing key and a tampered value each fail naming the file, without the secret", async () => {
    const root = tree({ "app/secret.yaml": secret });
    const file = join(root, "app/secret.yaml");
    sopsEncrypt(file);
    const other = await generateIdentity();
    const check = (code: string) => (e: unknown) => {
      assert.ok(isSluiceError(e), String(e));
      assert.equal(e.code, code);
      assert.match(e.message, /app\/secret\.yaml/);
      assert.doesNotMatch(e.message, /s3cr3t/);
      return true;
    };
    await assert.rejects(
      render({ root, path: "app", vars: { SUFFIX: "" }, ageIdentities: { identities: [other] } }),
      check("DecryptionFailed"),
    );
    await assert.rejects(render({ root, path: "app", vars: { SUFFIX: "" } }), check("DecryptionFailed"));
    const text = readFileSync(file, "utf8");
    const tampered = text.replace(
      /(password: ENC\[AES256_GCM,data:)(.)/,
      (_m, a: string, c: string) => a + (c === "A" ? "B" : "A"),
    );
    assert.notEqual(tampered, text);
    writeFileSync(file, tampered);
    await assert.rejects(
      render({ root, path: "app", vars: { SUFFIX: "" }, ageIdentities: { identities: [identity] } }),
      check("DecryptionFailed"),
    );
  });
});
