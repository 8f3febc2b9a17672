/**
 * Scanning real registries on 127.0.0.1: Debian's docker-registry (distribution 2.8, no
 * pagination), distribution v3 (pagination with Link headers) plain, behind Bearer token auth (a
 * token server issuing JWTs the registry verifies) and behind htpasswd Basic auth; the exclusion
 * list; policies over scanned tags; and the failures: unreachable, silent, unknown repository,
 * wrong credentials, limits.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ImageRepositorySpec } from "../src/config/index.js";
import { isSluiceError } from "../src/core/index.js";
import { freePort, startRegistry } from "../src/demo/registry.js";
import { listTags, parseImageRef, scanRepository, selectLatest } from "../src/images/index.js";
import {
  pushTags,
  type RunningRegistry,
  startRegistryV3,
  startTokenServer,
  type TokenServer,
  writeHtpasswd,
} from "./support/registries.js";

const work = mkdtempSync(join(tmpdir(), "sluice-images-"));
const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

const repoSpec = (image: string, extra: Partial<ImageRepositorySpec> = {}): ImageRepositorySpec => ({
  image,
  interval: "1m",
  ...extra,
});
const errorWith = (code: string, re: RegExp, secret?: string) => (e: unknown) => {
  assert.ok(isSluiceError(e), `expected a SluiceError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  assert.match(e.message, re);
  if (secret) {
    assert.ok(!e.message.includes(secret), "the message must not carry the secret");
    assert.ok(!(e.hint ?? "").includes(secret), "nor the hint");
  }
  return true;
};

const RELEASES = ["0.0.1", "0.0.2", "0.1.0", "1.0.0", "1.1.0-rc.1", "v1.0.1", "latest", "3f2a9c1b7d"];
const COSIGN = ["sha256-0123abcd.sig", "sha256-0123abcd.att", "sha256-0123abcd.sbom"];

describe("docker-registry (distribution 2.8)", () => {
  let reg: { host: string; url: string; stop(): Promise<void> };
  before(async () => {
    reg = await startRegistry({ dataDir: join(work, "v2") });
    stops.push(() => reg.stop());
    await pushTags(reg.url, "team/app", [...RELEASES, ...COSIGN]);
  });

  test("a scan lists every tag, drops cosign's .sig/.att/.sbom by default, and feeds a policy", async () => {
    const image = `${reg.host}/team/app`;
    const scan = await scanRepository(repoSpec(image));
    assert.deepEqual([...scan.tags].sort(), [...RELEASES].sort());
    assert.equal(scan.count, RELEASES.length);
    assert.equal(scan.excluded, 3);
    assert.equal(scan.canonicalImageName, image);
    assert.equal(scan.stats.auth, "none");
    assert.ok(scan.latestTags.length <= 10 && scan.latestTags[0] === "v1.0.1");
    assert.ok(!Number.isNaN(Date.parse(scan.scannedAt)));
    assert.deepEqual(
      selectLatest(
        { imageRepositoryRef: { name: "app" }, policy: { semver: { range: "0.0.x" } } },
        scan.tags,
        { image },
      ),
      {
        tag: "0.0.2",
        name: image,
        image: `${image}:0.0.2`,
      },
    );
    assert.equal(
      selectLatest(
        { imageRepositoryRef: { name: "app" }, policy: { semver: { range: ">=1.0.0" } } },
        scan.tags,
      ).tag,
      "v1.0.1",
    );
    assert.equal(
      selectLatest(
        { imageRepositoryRef: { name: "app" }, policy: { semver: { range: ">=1.0.0-0" } } },
        scan.tags,
      ).tag,
      "1.1.0-rc.1",
    );
  });

  test("an explicit exclusion list replaces the default (RE2, unanchored)", async () => {
    const scan = await scanRepository(repoSpec(`${reg.host}/team/app`, { exclusionList: ["^0\\.0", "rc"] }));
    assert.deepEqual(scan.exclusionList, ["^0\\.0", "rc"]);
    assert.ok(scan.tags.includes("sha256-0123abcd.sig"), "the default no longer applies");
    assert.ok(!scan.tags.some((t) => t.startsWith("0.0") || t.includes("rc")));
    const none = await scanRepository(repoSpec(`${reg.host}/team/app`, { exclusionList: [] }));
    assert.equal(none.count, RELEASES.length + COSIGN.length);
    await assert.rejects(
      scanRepository(repoSpec(`${reg.host}/team/app`, { exclusionList: ["(?<=x)y"] }), {
        subject: "ImageRepository/apps/app",
      }),
      errorWith("ConfigInvalid", /ImageRepository\/apps\/app: spec\.exclusionList\[0\].*lookbehind/),
    );
  });

  test("an unknown repository is NotFound; a tag in spec.image is a configuration error", async () => {
    await assert.rejects(
      scanRepository(repoSpec(`${reg.host}/team/nope`)),
      errorWith("NotFound", /team\/nope.*NAME_UNKNOWN/),
    );
    await assert.rejects(
      scanRepository(repoSpec(`${reg.host}/team/app:1.0.0`)),
      errorWith("ConfigInvalid", /without a tag/),
    );
  });
});

describe("distribution v3: pagination with Link headers", () => {
  let reg: RunningRegistry;
  const many = Array.from({ length: 57 }, (_, i) => `1.${Math.floor(i / 10)}.${i % 10}`);
  before(async () => {
    reg = await startRegistryV3({ dataDir: join(work, "v3") });
    stops.push(() => reg.stop());
    await pushTags(reg.url, "paged/app", [...many, ...COSIGN]);
  });

  test("the registry really paginates: a page of n tags carries a Link to the next", async () => {
    const r = await fetch(`${reg.url}/v2/paged/app/tags/list?n=10`, { signal: AbortSignal.timeout(5000) });
    const body = (await r.json()) as { tags: string[] };
    assert.equal(body.tags.length, 10);
    assert.match(r.headers.get("link") ?? "", /rel="next"/);
  });

  test("a scan follows every page and returns each tag once", async () => {
    const scan = await scanRepository(repoSpec(`${reg.host}/paged/app`), { pageSize: 10 });
    assert.deepEqual([...scan.tags].sort(), [...many].sort());
    assert.equal(scan.excluded, 3);
    assert.equal(
      scan.stats.pages,
      7,
      "60 tags in 6 full pages of 10, then the empty page the last Link points to",
    );
    const exact = await listTags(parseImageRef(`${reg.host}/paged/app`), { pageSize: 20 });
    assert.equal(exact.tags.length, 60);
    assert.equal(exact.stats.pages, 4, "3 full pages, then an empty one the last Link points to");
    assert.equal(
      selectLatest(
        { imageRepositoryRef: { name: "app" }, policy: { semver: { range: "~1.3.0" } } },
        scan.tags,
      ).tag,
      "1.3.9",
    );
  });

  test("limits: too many tags or pages is a clear LimitExceeded", async () => {
    const ref = parseImageRef(`${reg.host}/paged/app`);
    await assert.rejects(
      listTags(ref, { pageSize: 10, maxTags: 25 }),
      errorWith("LimitExceeded", /more than 25 tags/),
    );
    await assert.rejects(
      listTags(ref, { pageSize: 10, maxPages: 3 }),
      errorWith("LimitExceeded", /more than 3 pages/),
    );
  });
});

describe("distribution v3 behind Bearer token auth", () => {
  let reg: RunningRegistry;
  let tokens: TokenServer;
  const password = "Tr0ub4dor&3-secret";
  before(async () => {
    tokens = await startTokenServer({
      dir: join(work, "tokens"),
      users: { alice: password, pusher: "push-pw" },
    });
    stops.push(() => tokens.stop());
    reg = await startRegistryV3({
      dataDir: join(work, "v3-token"),
      auth: {
        token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, jwks: tokens.jwks },
      },
    });
    stops.push(() => reg.stop());
    await pushTags(reg.url, "private/app", ["1.0.0", "1.0.1", "2.0.0", "x.sig"], {
      username: "pusher",
      password: "push-pw",
    });
  });

  test("the registry refuses a request without a token and names the token service", async () => {
    const r = await fetch(`${reg.url}/v2/private/app/tags/list`, { signal: AbortSignal.timeout(5000) });
    await r.body?.cancel();
    assert.equal(r.status, 401);
    assert.match(
      r.headers.get("www-authenticate") ?? "",
      /^Bearer realm=".*\/token",service="sluice-test-registry",scope="repository:private\/app:pull"/,
    );
  });

  test("with credentials from a docker config: one token (basic auth, pull scope) serves every page", async () => {
    const before = tokens.requests.length;
    const b64 = Buffer.from(`alice:${password}`).toString("base64");
    const scan = await scanRepository(repoSpec(`${reg.host}/private/app`), {
      pageSize: 2,
      dockerConfig: { auths: { [`http://${reg.host}`]: { auth: b64 } } },
    });
    assert.deepEqual(scan.tags, ["1.0.0", "1.0.1", "2.0.0"]);
    assert.equal(scan.stats.auth, "bearer");
    assert.equal(scan.stats.pages, 3, "4 tags (x.sig excluded later) in pages of 2, then an empty one");
    const asked = tokens.requests.slice(before);
    assert.deepEqual(asked, [
      { user: "alice", scopes: ["repository:private/app:pull"], service: "sluice-test-registry" },
    ]);
  });

  test("anonymous and wrong credentials are Unauthorized, and no secret reaches the message", async () => {
    await assert.rejects(
      scanRepository(repoSpec(`${reg.host}/private/app`)),
      errorWith("Unauthorized", /refused anonymous access/),
    );
    const wrong = "wrong-Pa55word";
    await assert.rejects(
      scanRepository(repoSpec(`${reg.host}/private/app`), {
        dockerConfig: { auths: { [reg.host]: { username: "alice", password: wrong } } },
      }),
      errorWith("Unauthorized", /refused the credentials/, wrong),
    );
  });
});

describe("a token service answering access_token (OAuth2 style), anonymous pulls", () => {
  test("the client takes access_token when token is absent", async () => {
    const tokens = await startTokenServer({
      dir: join(work, "tokens2"),
      users: { pusher: "pw" },
      anonymous: true,
      field: "access_token",
    });
    stops.push(() => tokens.stop());
    const reg = await startRegistryV3({
      dataDir: join(work, "v3-token2"),
      auth: {
        token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, jwks: tokens.jwks },
      },
    });
    stops.push(() => reg.stop());
    await pushTags(reg.url, "public/app", ["a", "b"], { username: "pusher", password: "pw" });
    const r = await listTags(parseImageRef(`${reg.host}/public/app`));
    assert.deepEqual(r.tags, ["a", "b"]);
    assert.equal(r.stats.auth, "bearer");
    assert.equal(tokens.requests.at(-1)?.user, "", "an anonymous token");
  });
});

describe("distribution v3 behind htpasswd Basic auth", () => {
  let reg: RunningRegistry;
  const password = "b4sic-S3cret";
  before(async () => {
    const htpasswd = join(work, "htpasswd");
    writeHtpasswd(htpasswd, { bob: password });
    reg = await startRegistryV3({ dataDir: join(work, "v3-basic"), auth: { htpasswd: { path: htpasswd } } });
    stops.push(() => reg.stop());
    await pushTags(reg.url, "basic/app", ["20240101", "20240315", "20231231", "latest"], {
      username: "bob",
      password,
    });
  });

  test("credentials from the docker config answer the Basic challenge on every page", async () => {
    const scan = await scanRepository(repoSpec(`${reg.host}/basic/app`), {
      pageSize: 2,
      dockerConfig: { auths: { [reg.host]: { username: "bob", password } } },
    });
    assert.deepEqual(scan.tags, ["20231231", "20240101", "20240315", "latest"]);
    assert.equal(scan.stats.auth, "basic");
    assert.equal(scan.stats.pages, 3);
    const spec = {
      imageRepositoryRef: { name: "app" },
      policy: { numerical: { order: "asc" as const } },
      filterTags: { pattern: "^[0-9]+$" },
    };
    assert.equal(selectLatest(spec, scan.tags).tag, "20240315");
    assert.throws(
      () => selectLatest({ ...spec, filterTags: undefined }, scan.tags),
      errorWith("ConfigInvalid", /failed to parse invalid numeric value 'latest'/),
    );
  });

  test("no or wrong credentials are Unauthorized with a hint, never echoing the password", async () => {
    await assert.rejects(scanRepository(repoSpec(`${reg.host}/basic/app`)), (e: unknown) => {
      errorWith("Unauthorized", /refused anonymous access/)(e);
      assert.match((e as { hint?: string }).hint ?? "", /spec\.secretRef/);
      return true;
    });
    await assert.rejects(
      scanRepository(repoSpec(`${reg.host}/basic/app`), {
        dockerConfig: { auths: { [reg.host]: { username: "bob", password: "not-the-password" } } },
      }),
      errorWith("Unauthorized", /refused the credentials/, "not-the-password"),
    );
  });
});

describe("registries that fail", () => {
  test("a closed port: TargetUnavailable, unreachable, with the host", async () => {
    const port = await freePort();
    await assert.rejects(
      scanRepository(repoSpec(`127.0.0.1:${port}/team/app`)),
      errorWith("TargetUnavailable", new RegExp(`127\\.0\\.0\\.1:${port} is unreachable: ECONNREFUSED`)),
    );
  });

  test("a registry that accepts connections but never answers: bounded by the timeout", async () => {
    const sockets: Socket[] = [];
    const server: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const t0 = Date.now();
    try {
      await assert.rejects(
        scanRepository(repoSpec(`127.0.0.1:${port}/team/app`, { timeout: "800ms" })),
        errorWith("TargetUnavailable", /did not answer within/),
      );
      assert.ok(Date.now() - t0 < 5000, "the timeout bounds the wait");
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test("a Link to another host is refused (credentials would follow it)", async () => {
    const server = createHttpServer((req, res) => {
      res.writeHead(200, {
        "content-type": "application/json",
        link: '<http://127.0.0.2:1/v2/team/app/tags/list?n=1&last=a>; rel="next"',
      });
      res.end(JSON.stringify({ name: "team/app", tags: ["a"] }));
      void req;
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    try {
      await assert.rejects(
        listTags(parseImageRef(`127.0.0.1:${port}/team/app`)),
        errorWith("TargetUnavailable", /pagination link to another host/),
      );
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
