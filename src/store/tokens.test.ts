import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { isSluiceError } from "../core/index.js";
import { openStore } from "./index.js";

const root = mkdtempSync(join(tmpdir(), "sluice-tokens-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `s${n++}`);

/** Every byte SQLite has on disk for this store: the database, its WAL and shared memory. */
function diskBytes(dir: string): Buffer {
  return Buffer.concat(
    ["sluice.db", "sluice.db-wal", "sluice.db-shm"]
      .map((f) => join(dir, f))
      .filter((p) => existsSync(p))
      .map((p) => readFileSync(p)),
  );
}

test("tokens are stored as SHA-256 only: the plaintext never reaches the database files", () => {
  const dir = freshDir();
  const s = openStore(dir);
  const tokens = [s.addToken("ci", "operator"), s.addToken("dashboard", "viewer")];
  for (const t of tokens) assert.match(t, /^sluice_[A-Za-z0-9_-]{43}$/, "256 random bits, URL-safe");
  assert.notEqual(tokens[0], tokens[1]);

  const check = () => {
    const bytes = diskBytes(dir);
    for (const t of tokens) {
      const secret = t.slice("sluice_".length);
      assert.equal(bytes.includes(Buffer.from(secret)), false, "plaintext token found in the database files");
      assert.equal(bytes.includes(Buffer.from(secret, "utf16le")), false);
      assert.ok(
        bytes.includes(createHash("sha256").update(t).digest()),
        "its SHA-256 digest is what is stored",
      );
    }
  };
  check(); // while open (the rows live in the WAL)
  s.close();
  check(); // after the checkpoint into the main file
  const again = openStore(dir);
  try {
    assert.deepEqual(
      again.listTokens().map((t) => [t.name, t.role]),
      [
        ["ci", "operator"],
        ["dashboard", "viewer"],
      ],
    );
    assert.ok(again.listTokens().every((t) => Object.keys(t).sort().join() === "createdAt,name,role"));
    assert.deepEqual(
      again.verifyToken(tokens[0]!),
      { name: "ci", role: "operator" },
      "verifies after restart",
    );
  } finally {
    again.close();
  }
});

test("a token verifies only itself, with its own role", () => {
  const s = openStore(freshDir());
  const other = openStore(freshDir());
  try {
    const op = s.addToken("deployer", "operator");
    const viewer = s.addToken("grafana", "viewer");
    const foreign = other.addToken("deployer", "operator");

    assert.deepEqual(s.verifyToken(op), { name: "deployer", role: "operator" });
    assert.deepEqual(s.verifyToken(viewer), { name: "grafana", role: "viewer" });

    const last = op.at(-1) === "A" ? "B" : "A";
    for (const wrong of [
      `${op.slice(0, -1)}${last}`,
      op.slice(0, -1),
      `${op}x`,
      ` ${op}`,
      op.toUpperCase(),
      "sluice_",
      "",
      foreign,
      createHash("sha256").update(op).digest("hex"),
      "x".repeat(5000),
    ]) {
      assert.equal(s.verifyToken(wrong), undefined, `accepted ${JSON.stringify(wrong.slice(0, 60))}`);
    }

    assert.throws(
      () => s.addToken("deployer", "viewer"),
      (e: unknown) => isSluiceError(e, "Conflict"),
    );
    assert.throws(
      () => s.addToken("bad name", "viewer"),
      (e: unknown) => isSluiceError(e, "ConfigInvalid"),
    );
    assert.throws(
      () => s.addToken("root", "admin" as never),
      (e: unknown) => isSluiceError(e, "ConfigInvalid"),
    );

    s.revokeToken("deployer");
    assert.equal(s.verifyToken(op), undefined, "a revoked token no longer verifies");
    assert.deepEqual(s.verifyToken(viewer), { name: "grafana", role: "viewer" }, "others are unaffected");
    assert.throws(
      () => s.revokeToken("deployer"),
      (e: unknown) => isSluiceError(e, "NotFound"),
    );

    const reissued = s.addToken("deployer", "viewer");
    assert.notEqual(reissued, op);
    assert.deepEqual(s.verifyToken(reissued), { name: "deployer", role: "viewer" });
    assert.equal(s.verifyToken(op), undefined);
  } finally {
    s.close();
    other.close();
  }
});
