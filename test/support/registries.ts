/**
 * Real registries for the images tests and benchmarks, all on 127.0.0.1:
 *
 * - `startRegistryV3`: the CNCF distribution registry v3 (built by scripts/peers/registry3.sh),
 *   which paginates tag lists with `Link` headers, optionally behind `htpasswd` (Basic) or `token`
 *   (Bearer) auth;
 * - `startTokenServer`: a Docker token service issuing ES256 JWTs the registry verifies against a
 *   JWKS file (distribution's `auth.token.jwks`), with Basic-auth users and request records;
 * - `pushTags`: pushes a tiny OCI image (one config blob, one layer) under many tags through the
 *   registry API (answering Bearer or Basic challenges itself);
 * - `addTagsOnDisk`: adds thousands of tags pointing at an existing manifest directly in the
 *   registry's filesystem storage (distribution lists tags from those directories), for benchmarks.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { homedir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../src/demo/registry.js";
import { parseChallenges } from "../../src/images/auth.js";

export const REGISTRY_V3_VERSION = "v3.1.2";

export function registryV3Binary(): string {
  const bin = join(
    process.env.SLUICE_BIN ?? join(homedir(), ".cache", "sluice", "bin"),
    `registry-${REGISTRY_V3_VERSION}`,
  );
  if (!existsSync(bin)) {
    throw new Error(
      `${bin} is missing: build it with bash scripts/peers/registry3.sh (scripts/setup.sh --peers does)`,
    );
  }
  return bin;
}

export interface RunningRegistry {
  host: string;
  url: string;
  pid: number;
  /** Filesystem storage root (for addTagsOnDisk). */
  storage: string;
  stop(): Promise<void>;
}

export type RegistryAuth =
  | { htpasswd: { path: string; realm?: string } }
  | { token: { realm: string; service: string; issuer: string; jwks: string } };

/** Starts distribution v3 with its own config and storage under dataDir; waits (≤20 s) for /v2/. */
export async function startRegistryV3(opts: {
  dataDir: string;
  auth?: RegistryAuth;
}): Promise<RunningRegistry> {
  const port = await freePort();
  const storage = join(opts.dataDir, "storage");
  mkdirSync(storage, { recursive: true });
  const lines = [
    "version: 0.1",
    "log: {level: error, accesslog: {disabled: true}}",
    `storage: {filesystem: {rootdirectory: ${JSON.stringify(storage)}}, delete: {enabled: true}}`,
    `http: {addr: "127.0.0.1:${port}"}`,
  ];
  if (opts.auth && "htpasswd" in opts.auth) {
    lines.push(
      `auth: {htpasswd: {realm: ${JSON.stringify(opts.auth.htpasswd.realm ?? "sluice-test")}, path: ${JSON.stringify(opts.auth.htpasswd.path)}}}`,
    );
  } else if (opts.auth && "token" in opts.auth) {
    const t = opts.auth.token;
    lines.push(
      `auth: {token: {realm: ${JSON.stringify(t.realm)}, service: ${JSON.stringify(t.service)}, issuer: ${JSON.stringify(t.issuer)}, jwks: ${JSON.stringify(t.jwks)}}}`,
    );
  }
  const config = join(opts.dataDir, "config.yml");
  writeFileSync(config, `${lines.join("\n")}\n`);
  const child: ChildProcess = spawn(registryV3Binary(), ["serve", config], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none" },
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`registry v3 exited (${child.exitCode}): ${stderr.slice(-1000)}`);
    try {
      const r = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await r.body?.cancel();
      if (r.status === 200 || r.status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`registry v3 did not answer on ${url} within 20 s: ${stderr.slice(-1000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    pid: child.pid!,
    storage,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    },
  };
}

/** Writes an htpasswd file (bcrypt, via apache2-utils' htpasswd). */
export function writeHtpasswd(path: string, users: Record<string, string>): void {
  let first = true;
  for (const [user, password] of Object.entries(users)) {
    execFileSync("htpasswd", [first ? "-Bbc" : "-Bb", path, user, password], { stdio: "ignore" });
    first = false;
  }
}

export interface TokenServer {
  /** The realm URL to configure in the registry. */
  realm: string;
  service: string;
  issuer: string;
  /** The JWKS file to configure in the registry. */
  jwks: string;
  /** Every token request: who asked (or "" for anonymous), for what scopes. */
  requests: { user: string; scopes: string[]; service: string }[];
  stop(): Promise<void>;
}

/**
 * A Docker token service: `GET /token?service=…&scope=…` with Basic auth of one of `users`
 * (anonymous requests get 401 unless `anonymous` is set) → `{token|access_token, expires_in}`.
 * The token grants the requested actions.
 */
export async function startTokenServer(opts: {
  dir: string;
  users: Record<string, string>;
  anonymous?: boolean;
  /** Answer with `access_token` (OAuth2 style) instead of `token`. */
  field?: "token" | "access_token";
  service?: string;
}): Promise<TokenServer> {
  const service = opts.service ?? "sluice-test-registry";
  const issuer = "sluice-test-token-issuer";
  const kid = "sluice-test-key";
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" });
  mkdirSync(opts.dir, { recursive: true });
  const jwks = join(opts.dir, "jwks.json");
  writeFileSync(jwks, JSON.stringify({ keys: [{ ...jwk, kid, alg: "ES256", use: "sig" }] }));
  const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");
  const requests: TokenServer["requests"] = [];
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://127.0.0.1");
    if (u.pathname !== "/token") {
      res.writeHead(404).end();
      return;
    }
    let user = "";
    const authz = req.headers.authorization ?? "";
    if (authz.startsWith("Basic ")) {
      const [name, ...rest] = Buffer.from(authz.slice(6), "base64").toString("utf8").split(":");
      if (name === undefined || opts.users[name] !== rest.join(":")) {
        requests.push({
          user: `!${name ?? ""}`,
          scopes: u.searchParams.getAll("scope"),
          service: u.searchParams.get("service") ?? "",
        });
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"wrong credentials"}');
        return;
      }
      user = name;
    } else if (!opts.anonymous) {
      requests.push({
        user: "",
        scopes: u.searchParams.getAll("scope"),
        service: u.searchParams.get("service") ?? "",
      });
      res.writeHead(401, { "content-type": "application/json" }).end('{"details":"authentication required"}');
      return;
    }
    const scopes = u.searchParams.getAll("scope");
    requests.push({ user, scopes, service: u.searchParams.get("service") ?? "" });
    const access = scopes.map((s) => {
      const [type, ...rest] = s.split(":");
      const actions = rest.pop() ?? "";
      return { type, name: rest.join(":"), actions: actions.split(",").filter((a) => a !== "") };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT", kid }));
    const claims = b64url(
      JSON.stringify({
        iss: issuer,
        sub: user,
        aud: service,
        exp: now + 300,
        nbf: now - 5,
        iat: now,
        jti: randomUUID(),
        access,
      }),
    );
    const signature = sign("sha256", Buffer.from(`${header}.${claims}`), {
      key: privateKey,
      dsaEncoding: "ieee-p1363",
    });
    const token = `${header}.${claims}.${b64url(signature)}`;
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        [opts.field ?? "token"]: token,
        expires_in: 300,
        issued_at: new Date().toISOString(),
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    jwks,
    requests,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** fetch that answers a registry's Bearer or Basic challenge with `creds` (test pushes only). */
async function authFetch(
  url: string,
  init: RequestInit,
  state: { creds?: { username: string; password: string }; authorization?: string; scope: string },
): Promise<Response> {
  const withAuth = (): RequestInit => ({
    ...init,
    headers: {
      ...(init.headers as Record<string, string>),
      ...(state.authorization ? { authorization: state.authorization } : {}),
    },
    signal: AbortSignal.timeout(20_000),
  });
  let res = await fetch(url, withAuth());
  if (res.status !== 401) return res;
  await res.body?.cancel();
  const basic = state.creds
    ? `Basic ${Buffer.from(`${state.creds.username}:${state.creds.password}`).toString("base64")}`
    : undefined;
  const ch = parseChallenges(res.headers.get("www-authenticate") ?? "")[0];
  if (ch?.scheme === "basic" && basic) state.authorization = basic;
  else if (ch?.scheme === "bearer" && ch.params.realm) {
    const t = new URL(ch.params.realm);
    if (ch.params.service) t.searchParams.set("service", ch.params.service);
    t.searchParams.set("scope", state.scope);
    const tr = await fetch(t, {
      headers: basic ? { authorization: basic } : {},
      signal: AbortSignal.timeout(20_000),
    });
    if (tr.status !== 200) throw new Error(`token request for a push failed: HTTP ${tr.status}`);
    const body = (await tr.json()) as { token?: string; access_token?: string };
    state.authorization = `Bearer ${body.token ?? body.access_token}`;
  } else return res;
  res = await fetch(url, withAuth());
  return res;
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/**
 * Pushes one tiny OCI image to `registryUrl` under `repo` and every tag in `tags` (blobs once,
 * the manifest once per tag). Returns the manifest digest.
 */
export async function pushTags(
  registryUrl: string,
  repo: string,
  tags: string[],
  creds?: { username: string; password: string },
): Promise<string> {
  const state = { creds, scope: `repository:${repo}:pull,push` } as Parameters<typeof authFetch>[2];
  const config = Buffer.from(
    JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
  );
  const layer = Buffer.from(`sluice test layer for ${repo}`);
  for (const blob of [config, layer]) {
    const start = await authFetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: "POST" }, state);
    await start.body?.cancel();
    const location = start.headers.get("location");
    if (start.status !== 202 || !location) throw new Error(`blob upload to ${repo}: HTTP ${start.status}`);
    const put = new URL(location, registryUrl);
    put.searchParams.set("digest", sha256(blob));
    const res = await authFetch(
      put.href,
      { method: "PUT", body: blob, headers: { "content-type": "application/octet-stream" } },
      state,
    );
    await res.body?.cancel();
    if (res.status !== 201) throw new Error(`blob upload to ${repo}: HTTP ${res.status}`);
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: sha256(config),
        size: config.length,
      },
      layers: [
        { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha256(layer), size: layer.length },
      ],
    }),
  );
  for (const tag of tags) {
    const res = await authFetch(
      `${registryUrl}/v2/${repo}/manifests/${encodeURIComponent(tag)}`,
      {
        method: "PUT",
        body: manifest,
        headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
      },
      state,
    );
    const text = await res.text();
    if (res.status !== 201)
      throw new Error(`manifest PUT ${repo}:${tag}: HTTP ${res.status} ${text.slice(0, 200)}`);
  }
  return sha256(manifest);
}

/**
 * Adds tags to `repo` directly in a filesystem-backed registry's storage, each pointing at the
 * existing manifest `digest` (as a manifest PUT would record it). For benchmark-sized repositories.
 */
export function addTagsOnDisk(storage: string, repo: string, digest: string, tags: string[]): void {
  const base = join(storage, "docker", "registry", "v2", "repositories", repo, "_manifests", "tags");
  const hex = digest.replace(/^sha256:/, "");
  for (const tag of tags) {
    mkdirSync(join(base, tag, "current"), { recursive: true });
    writeFileSync(join(base, tag, "current", "link"), digest);
    mkdirSync(join(base, tag, "index", "sha256", hex), { recursive: true });
    writeFileSync(join(base, tag, "index", "sha256", hex, "link"), digest);
  }
}
