/**
 * SOPS decryption against the real `sops` binary (built by scripts/peers/sops.sh): files are encrypted
 * by sops at test time with a freshly generated age key, decrypted by our port, and compared with the
 * plaintext and with `sops --decrypt`. The tests fail (never skip) when sops is missing.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { stringify } from "yaml";
import { isSluiceError, type KubeObject, parseYamlOne } from "../core/index.js";
import {
  type AgeIdentities,
  decryptResource,
  decryptSopsDocument,
  decryptSopsFile,
  decryptSopsFileBytes,
  encryptSopsDocument,
  isSopsDocument,
  loadAgeIdentities,
} from "./index.js";

function findSops(): string | null {
  const bin = process.env.SLUICE_BIN ?? join(homedir(), ".cache", "sluice", "bin");
  if (existsSync(join(bin, "sops"))) return join(bin, "sops");
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, "sops"))) return join(dir, "sops");
  }
  return null;
}

const SOPS = findSops();
let dir = "";
let keyFile = "";
let identity = "";
let recipient = "";
let otherIdentity = "";
let ids: AgeIdentities;

function sopsBin(): string {
  if (!SOPS)
    assert.fail("the sops binary is missing: run scripts/peers/sops.sh (builds it into ~/.cache/sluice/bin)");
  return SOPS;
}

function runSops(args: string[], opts: { cwd?: string; keyFile?: string } = {}) {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir };
  if (opts.keyFile) env.SOPS_AGE_KEY_FILE = opts.keyFile;
  return spawnSync(sopsBin(), args, {
    cwd: opts.cwd ?? dir,
    env,
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Encrypts `content` (written to `name`) with the real sops for our recipient; returns the encrypted text. */
function encrypt(
  name: string,
  content: string | Buffer,
  type: string,
  extra: string[] = [],
  cwd = dir,
): string {
  const path = join(cwd, name);
  writeFileSync(path, content);
  const args = ["--encrypt", ...(extra.includes("--config-rule") ? [] : ["--age", recipient])];
  const r = runSops(
    [
      ...args,
      ...extra.filter((a) => a !== "--config-rule"),
      "--input-type",
      type,
      "--output-type",
      type,
      path,
    ],
    { cwd },
  );
  assert.equal(r.status, 0, `sops --encrypt ${name} failed: ${r.stderr?.toString()}`);
  const out = r.stdout.toString("utf8");
  writeFileSync(`${path}.enc`, out);
  return out;
}

/** `sops --decrypt` of an encrypted text; returns status and output bytes. */
function sopsDecrypt(
  name: string,
  text: string,
  type: string,
): { status: number | null; out: Buffer; err: string } {
  const path = join(dir, `${name}.check`);
  writeFileSync(path, text);
  const r = runSops(["--decrypt", "--input-type", type, "--output-type", type, path], { keyFile });
  return { status: r.status, out: r.stdout, err: r.stderr.toString() };
}

/** Flips the first ciphertext byte of the ENC value on the first line matching `line`. */
function tamper(text: string, line: RegExp): string {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => line.test(l));
  assert.ok(i >= 0, `no line matches ${line}`);
  lines[i] = lines[i]!.replace(/data:([A-Za-z0-9+/=]+)/, (_m, b64: string) => {
    const buf = Buffer.from(b64, "base64");
    buf[0] = buf[0]! ^ 0x01;
    return `data:${buf.toString("base64")}`;
  });
  return lines.join("\n");
}

async function rejects(p: Promise<unknown>, check: (e: Error) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isSluiceError(e, "DecryptionFailed"), `expected DecryptionFailed, got ${String(e)}`);
    check(e as Error);
    return true;
  });
}

const y = (text: string) => parseYamlOne(text, "test.yaml")?.value;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sluice-sops-"));
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  otherIdentity = await generateX25519Identity();
  keyFile = join(dir, "keys.txt");
  writeFileSync(keyFile, `# created by sops.test.ts\n# public key: ${recipient}\n${identity}\n`);
  ids = await loadAgeIdentities({ keyFile });
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the real sops binary is available", () => {
  const r = runSops(["--version", "--disable-version-check"]);
  assert.equal(r.status, 0, r.stderr?.toString());
  assert.match(r.stdout.toString(), /^sops 3\./);
});

describe("YAML", () => {
  test("a Kubernetes Secret encrypted with --encrypted-regex '^(data|stringData)$'", async () => {
    const plain = `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
type: Opaque
stringData:
  username: admin
  password: s3cr3t-p@ss
data:
  token: dG9rZW4tdmFsdWU=
`;
    const enc = encrypt("secret.yaml", plain, "yaml", ["--encrypted-regex", "^(data|stringData)$"]);
    assert.ok(!enc.includes("s3cr3t-p@ss"));
    assert.match(enc, /name: db/); // metadata stays plain
    const doc = y(enc) as Record<string, unknown>;
    assert.equal(isSopsDocument(doc), true);
    assert.equal(isSopsDocument(y(plain)), false);
    const out = await decryptSopsDocument(doc, "secret.yaml", ids);
    assert.deepEqual(out, y(plain));
    const text = await decryptSopsFile(enc, "secret.yaml", "yaml", ids);
    const real = sopsDecrypt("secret.yaml", enc, "yaml");
    assert.equal(real.status, 0, real.err);
    assert.deepEqual(y(text), y(real.out.toString()));
    assert.deepEqual(y(text), y(plain));
  });

  test("nested maps, lists, ints, floats, bools, empty and null values, and an _unencrypted key", async () => {
    const plain = `apiVersion: example.com/v1
kind: Config
metadata:
  name: nested
spec:
  replicas: 3
  ratio: 0.25
  big: 1e3
  tiny: 0.000001
  negative: -17
  enabled: true
  disabled: false
  empty: ""
  nothing: null
  unicode: "grüße ✓ 日本"
  multiline: |
    line one
    line two
  password_unencrypted: visible
  list:
    - alpha
    - 2
    - 3.5
    - false
    - name: inner
      token: t0k3n
    - [nested, 1]
  deep:
    a:
      b:
        c: deepvalue
`;
    const enc = encrypt("nested.yaml", plain, "yaml");
    assert.match(enc, /password_unencrypted: visible/);
    assert.match(enc, /type:int\]/);
    assert.match(enc, /type:float\]/);
    assert.match(enc, /type:bool\]/);
    const out = await decryptSopsDocument(y(enc) as Record<string, unknown>, "nested.yaml", ids);
    assert.deepEqual(out, y(plain));
    const text = await decryptSopsFile(enc, "nested.yaml", "yaml", ids);
    const real = sopsDecrypt("nested.yaml", enc, "yaml");
    assert.equal(real.status, 0, real.err);
    assert.deepEqual(y(text), y(real.out.toString()));
  });

  test("document order with integer-like keys, several documents, and unencrypted timestamps (file API)", async () => {
    const plain = `"10": ten
"2": two
when: 2024-01-01
at: 2024-05-06T07:08:09.120+02:00
---
second: doc
list: [1, 2]
`;
    const enc = encrypt("multi.yaml", plain, "yaml", ["--encrypted-regex", "^(10|2|second|list)$"]);
    const text = await decryptSopsFile(enc, "multi.yaml", "yaml", ids);
    const real = sopsDecrypt("multi.yaml", enc, "yaml");
    assert.equal(real.status, 0, real.err);
    const docs = (t: string) => t.split(/^---$/m).map((d) => y(d));
    assert.deepEqual(docs(text), docs(real.out.toString()));
    assert.deepEqual(docs(text)[1], { second: "doc", list: [1, 2] });
  });

  test("mac_only_encrypted and encrypted_comment_regex from .sops.yaml", async () => {
    const sub = join(dir, "rules");
    mkdirSync(sub, { recursive: true });
    writeFileSync(
      join(sub, ".sops.yaml"),
      `creation_rules:\n  - age: ${recipient}\n    mac_only_encrypted: true\n    encrypted_comment_regex: "sops:enc"\n`,
    );
    const plain = "public: hello\n# sops:enc\nsecret: hidden-value\nother: 5\n";
    const enc = encrypt("rules.yaml", plain, "yaml", ["--config-rule"], sub);
    assert.match(enc, /mac_only_encrypted: true/);
    assert.match(enc, /public: hello/);
    assert.ok(!enc.includes("hidden-value"));
    const out = await decryptSopsDocument(y(enc) as Record<string, unknown>, "rules.yaml", ids);
    assert.deepEqual(out, { public: "hello", secret: "hidden-value", other: 5 });
    // With mac_only_encrypted, plain values are outside the MAC: changing one is not detected…
    const changed = enc.replace("public: hello", "public: changed");
    assert.equal(
      (await decryptSopsDocument(y(changed) as Record<string, unknown>, "rules.yaml", ids)).public,
      "changed",
    );
    // …but an encrypted one still is.
    await rejects(decryptSopsFile(tamper(enc, /^secret: ENC/), "rules.yaml", "yaml", ids), (e) => {
      assert.match(e.message, /rules\.yaml/);
    });
  });

  test("encrypted_suffix and unencrypted_regex", async () => {
    const plain = "user: admin\npassword_secret: pw1\nnested:\n  key_secret:\n    - a\n    - b\n  plain: x\n";
    const enc = encrypt("suffix.yaml", plain, "yaml", ["--encrypted-suffix", "_secret"]);
    assert.match(enc, /user: admin/);
    assert.deepEqual(
      await decryptSopsDocument(y(enc) as Record<string, unknown>, "suffix.yaml", ids),
      y(plain),
    );
    const enc2 = encrypt("unre.yaml", plain, "yaml", ["--unencrypted-regex", "^(user|plain)$"]);
    assert.match(enc2, /user: admin/);
    assert.deepEqual(
      await decryptSopsDocument(y(enc2) as Record<string, unknown>, "unre.yaml", ids),
      y(plain),
    );
  });
});

describe("JSON, dotenv and binary", () => {
  test("a JSON file", async () => {
    const value = {
      name: "svc",
      port: 8080,
      weight: 0.5,
      on: true,
      tags: ["a", { k: "v" }],
      nested: { x: null, s: "" },
    };
    const enc = encrypt("conf.json", JSON.stringify(value, null, 2), "json");
    const text = await decryptSopsFile(enc, "conf.json", "json", ids);
    assert.deepEqual(JSON.parse(text), value);
    const real = sopsDecrypt("conf.json", enc, "json");
    assert.equal(real.status, 0, real.err);
    assert.deepEqual(JSON.parse(text), JSON.parse(real.out.toString()));
    assert.deepEqual(await decryptSopsDocument(JSON.parse(enc), "conf.json", ids), value);
  });

  test("a dotenv file, byte for byte as sops --decrypt writes it", async () => {
    const plain = "DB_USER=admin\n# a comment\nDB_URL=postgres://u:p@h/db?x=1\nEMPTY=\nMULTI=line1\\nline2\n";
    const enc = encrypt("app.env", plain, "dotenv");
    assert.match(enc, /^sops_mac=ENC\[/m);
    const text = await decryptSopsFile(enc, "app.env", "dotenv", ids);
    const real = sopsDecrypt("app.env", enc, "dotenv");
    assert.equal(real.status, 0, real.err);
    assert.equal(text, real.out.toString());
    assert.equal(text, plain);
  });

  test("binary files: text and non-UTF-8 bytes", async () => {
    const textContent = "just some\ntext with ümlauts\n";
    const enc = encrypt("note.txt", textContent, "binary");
    assert.match(enc, /"data": "ENC\[/);
    assert.equal(await decryptSopsFile(enc, "note.txt", "binary", ids), textContent);
    const real = sopsDecrypt("note.txt", enc, "binary");
    assert.equal(real.status, 0, real.err);
    assert.equal(real.out.toString(), textContent);

    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x7f, 10, 13, 0xc3]);
    const encB = encrypt("blob.bin", bytes, "binary");
    const out = await decryptSopsFileBytes(encB, "blob.bin", "binary", ids);
    assert.deepEqual(out, bytes);
    const realB = sopsDecrypt("blob.bin", encB, "binary");
    assert.equal(realB.status, 0, realB.err);
    assert.deepEqual(realB.out, bytes);
  });
});

describe("integrity and keys", () => {
  const plain =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: top-secret-value\n  other: another-secret\n";
  let enc = "";
  before(() => {
    enc = encrypt("integrity.yaml", plain, "yaml", ["--encrypted-regex", "^(data|stringData)$"]);
  });

  test("one flipped ciphertext byte fails, naming the file and the key path but not the value", async () => {
    const bad = tamper(enc, /password: ENC/);
    await rejects(decryptSopsFile(bad, "secrets/integrity.yaml", "yaml", ids), (e) => {
      assert.match(e.message, /secrets\/integrity\.yaml/);
      assert.match(e.message, /stringData\.password/);
      assert.ok(!e.message.includes("top-secret-value") && !e.message.includes("another-secret"));
    });
    assert.notEqual(sopsDecrypt("tampered.yaml", bad, "yaml").status, 0, "real sops also rejects it");
  });

  test("a value moved to another key fails (the key path is authenticated)", async () => {
    const lines = enc.split("\n");
    const pw = lines.findIndex((l) => /password: ENC/.test(l));
    const ot = lines.findIndex((l) => /other: ENC/.test(l));
    const pwValue = lines[pw]!.split(": ")[1]!;
    lines[pw] = `${lines[pw]!.split(": ")[0]}: ${lines[ot]!.split(": ")[1]}`;
    lines[ot] = `${lines[ot]!.split(": ")[0]}: ${pwValue}`;
    await rejects(decryptSopsFile(lines.join("\n"), "integrity.yaml", "yaml", ids), (e) => {
      assert.match(e.message, /authentication failed/);
    });
  });

  test("a tampered MAC fails with a MAC mismatch", async () => {
    const bad = tamper(enc, /^\s+mac: ENC/);
    await rejects(decryptSopsFile(bad, "integrity.yaml", "yaml", ids), (e) => {
      assert.equal(e.message, "MAC mismatch in integrity.yaml: the file was modified after encryption");
    });
    assert.notEqual(sopsDecrypt("badmac.yaml", bad, "yaml").status, 0);
  });

  test("a changed plaintext field (covered by the MAC) fails with a MAC mismatch, like sops", async () => {
    const bad = enc.replace("name: s\n", "name: t\n");
    await rejects(decryptSopsDocument(y(bad) as Record<string, unknown>, "integrity.yaml", ids), (e) => {
      assert.match(e.message, /^MAC mismatch in integrity\.yaml/);
    });
    const real = sopsDecrypt("changed.yaml", bad, "yaml");
    assert.notEqual(real.status, 0);
    assert.match(real.err, /MAC mismatch/);
    // Flux skips the MAC after kustomize edits the object; so can we, on request.
    const out = await decryptSopsDocument(y(bad) as Record<string, unknown>, "integrity.yaml", ids, {
      verifyMac: false,
    });
    assert.equal((out.stringData as Record<string, string>).password, "top-secret-value");
  });

  test("a wrong key fails naming the file and the recipients", async () => {
    const wrong: AgeIdentities = { identities: [otherIdentity] };
    await rejects(decryptSopsFile(enc, "apps/db/secret.yaml", "yaml", wrong), (e) => {
      assert.equal(e.message, `no age identity can decrypt apps/db/secret.yaml; recipients: ${recipient}`);
    });
    await rejects(decryptSopsFile(enc, "apps/db/secret.yaml", "yaml", { identities: [] }), (e) => {
      assert.match(
        e.message,
        /no age identity can decrypt apps\/db\/secret\.yaml: no age identities are loaded/,
      );
    });
    // Several identities: the right one is found among them.
    const both: AgeIdentities = { identities: [otherIdentity, identity] };
    assert.equal(y(await decryptSopsFile(enc, "s.yaml", "yaml", both)) !== null, true);
  });

  test("SOPS_AGE_KEY_FILE, SOPS_AGE_KEY (several keys, comments) and --age-key-file", async () => {
    const fromFile = await loadAgeIdentities({ env: { SOPS_AGE_KEY_FILE: keyFile } });
    assert.deepEqual(fromFile.identities, [identity]);
    const fromEnv = await loadAgeIdentities({
      env: { SOPS_AGE_KEY: `# first\n${otherIdentity}\n\n  # second\n${identity}\n` },
    });
    assert.deepEqual(fromEnv.identities, [otherIdentity, identity]);
    for (const got of [fromFile, fromEnv]) {
      assert.deepEqual(y(await decryptSopsFile(enc, "i.yaml", "yaml", got)), y(plain));
    }
    // --age-key-file wins over the environment, SOPS_AGE_KEY_FILE over SOPS_AGE_KEY.
    const otherFile = join(dir, "other.txt");
    writeFileSync(otherFile, `${otherIdentity}\n`);
    assert.deepEqual(
      (await loadAgeIdentities({ keyFile: otherFile, env: { SOPS_AGE_KEY_FILE: keyFile } })).identities,
      [otherIdentity],
    );
    assert.deepEqual(
      (await loadAgeIdentities({ env: { SOPS_AGE_KEY_FILE: keyFile, SOPS_AGE_KEY: otherIdentity } }))
        .identities,
      [identity],
    );
    assert.deepEqual((await loadAgeIdentities({ env: {} })).identities, []);
    // A bad line is reported by number, without echoing it.
    await assert.rejects(loadAgeIdentities({ env: { SOPS_AGE_KEY: "not-a-key-XYZ" } }), (e: Error) => {
      assert.match(e.message, /SOPS_AGE_KEY: line 1 is not an age identity/);
      assert.ok(!e.message.includes("XYZ"));
      return true;
    });
    await assert.rejects(
      loadAgeIdentities({ keyFile: join(dir, "missing.txt") }),
      /cannot read age key file .*missing\.txt: ENOENT/,
    );
  });
});

describe("Flux semantics for Kubernetes objects (decryptResource)", () => {
  test("Secret entries that are sops files are decrypted in place, in the format their key names", async () => {
    const envPlain = "A=1\nB=two words\n";
    const yamlPlain = "server:\n  host: db.internal\n  port: 5432\n";
    const jsonPlain = { user: "u", pass: "p" };
    const blob = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 1]);
    const encEnv = encrypt("r.env", envPlain, "dotenv");
    const encYaml = encrypt("r.yaml", yamlPlain, "yaml");
    const encJson = encrypt("r.json", JSON.stringify(jsonPlain), "json");
    const encBlob = encrypt("r.bin", blob, "binary");
    const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
    const secret: KubeObject = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "app", namespace: "prod" },
      data: {
        "app.env": b64(encEnv),
        "config.yaml": b64(encYaml),
        "env-as.yaml": b64(encEnv),
        "blob.bin": b64(encBlob),
        plain: b64("hello"),
        "not-base64": "%%%",
      },
      stringData: { "creds.json": encJson, note: "plain text" },
    };
    const before = structuredClone(secret);
    const out = await decryptResource(secret, "apps/secret.yaml", ids);
    assert.deepEqual(secret, before, "the input is not modified");
    const data = out.data as Record<string, string>;
    const unb64 = (s: string) => Buffer.from(s, "base64");
    assert.equal(unb64(data["app.env"]!).toString(), envPlain);
    assert.deepEqual(y(unb64(data["config.yaml"]!).toString()), y(yamlPlain));
    assert.deepEqual(y(unb64(data["env-as.yaml"]!).toString()), { A: "1", B: "two words" });
    assert.deepEqual(unb64(data["blob.bin"]!), blob);
    assert.equal(data.plain, b64("hello"));
    assert.equal(data["not-base64"], "%%%");
    const sd = out.stringData as Record<string, string>;
    assert.deepEqual(JSON.parse(sd["creds.json"]!), jsonPlain);
    assert.equal(sd.note, "plain text");
  });

  test("whole-object encryption, other kinds, and the decrypt: disabled annotation", async () => {
    const plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: whole\nstringData:\n  k: v\n";
    const enc = y(
      encrypt("whole.yaml", plain, "yaml", ["--encrypted-regex", "^(data|stringData)$"]),
    ) as KubeObject;
    assert.deepEqual(await decryptResource(enc, "whole.yaml", ids), y(plain));
    const disabled = structuredClone(enc);
    disabled.metadata.annotations = { "kustomize.toolkit.fluxcd.io/decrypt": "Disabled" };
    assert.deepEqual(await decryptResource(disabled, "whole.yaml", ids), disabled);
    const cm: KubeObject = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c" }, data: { a: "b" } };
    assert.deepEqual(await decryptResource(cm, "cm.yaml", ids), cm);
    // A Secret entry encrypted for someone else fails, naming the file, object and field.
    const foreign: KubeObject = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "f", namespace: "ns" },
      stringData: { "x.env": encrypt("f.env", "X=1\n", "dotenv") },
    };
    await rejects(decryptResource(foreign, "apps/f.yaml", { identities: [otherIdentity] }), (e) => {
      assert.match(
        e.message,
        /^no age identity can decrypt apps\/f\.yaml \(Secret\/ns\/f stringData\.x\.env\); recipients: age1/,
      );
    });
  });
});

describe("encryptSopsDocument", () => {
  test("real sops --decrypt reads what we encrypt (YAML and JSON), and we read it back", async () => {
    const plain = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "ours", labels: { app: "x" } },
      stringData: {
        password: "pw-ours",
        port: 5432,
        ratio: 0.75,
        on: false,
        list: ["a", { b: "c" }],
        empty: "",
      },
    };
    for (const opts of [
      { recipients: [recipient], encryptedRegex: "^(data|stringData)$" },
      { recipients: [await identityToRecipient(otherIdentity), recipient] },
      { recipients: [recipient], unencryptedSuffix: "_unencrypted", macOnlyEncrypted: true },
    ]) {
      const enc = await encryptSopsDocument(plain, "ours.yaml", opts);
      assert.ok(!JSON.stringify(enc).includes("pw-ours"));
      assert.equal(isSopsDocument(enc), true);
      // sops quotes lastmodified: unquoted, its YAML reader would take the timestamp for a time.Time.
      const yamlText = stringify(enc, { defaultStringType: "QUOTE_DOUBLE" });
      const real = sopsDecrypt("ours.yaml", yamlText, "yaml");
      assert.equal(real.status, 0, real.err);
      assert.deepEqual(y(real.out.toString()), plain);
      const realJson = sopsDecrypt("ours.json", JSON.stringify(enc), "json");
      assert.equal(realJson.status, 0, realJson.err);
      assert.deepEqual(JSON.parse(realJson.out.toString()), plain);
      assert.deepEqual(await decryptSopsDocument(enc, "ours.yaml", ids), plain);
    }
  });
});
