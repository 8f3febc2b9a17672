import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { openStore } from "../store/index.js";
import { type EnvironmentSnapshot, restoreEnvironment, stateConfigMapName } from "./state.js";

test("a new owner's store is seeded with the environment record (TTL, expiry, purge hold) once", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-state-"));
  const store = openStore(dir);
  try {
    const snap: EnvironmentSnapshot = {
      env: "pr-7",
      writtenBy: "sluice-0",
      writtenAt: "2026-01-01T00:00:00.000Z",
      environment: {
        name: "pr-7",
        branch: "feature/x",
        rule: "pullRequest",
        target: "local",
        protected: false,
        ttlSeconds: 3600,
        createdAt: "2026-01-01T00:00:00.000Z",
        expiresAt: "2026-01-01T01:00:00.000Z",
        state: "active",
        revision: "feature/x@sha1:0123456789012345678901234567890123456789",
        prNumber: 7,
        activeSince: "2026-01-01T00:00:00.000Z",
        uptimeSeconds: 0,
        destroyedAt: null,
        heldCommit: null,
      },
      units: [],
      runs: [],
      events: [],
    };
    assert.equal(restoreEnvironment(store, snap), true);
    const e = store.getEnvironment("pr-7")!;
    assert.equal(e.expiresAt, "2026-01-01T01:00:00.000Z");
    assert.equal(e.createdAt, "2026-01-01T00:00:00.000Z");
    assert.equal(e.prNumber, 7);
    assert.equal(e.ttlSeconds, 3600);
    assert.equal(restoreEnvironment(store, snap), false, "a known environment is left alone");
    assert.equal(stateConfigMapName("pr-7"), "sluice-state-pr-7");
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
