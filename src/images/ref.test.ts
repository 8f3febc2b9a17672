/**
 * Image references (Docker's normalization and Flux's canonical names), docker config credentials,
 * WWW-Authenticate challenges and Link headers.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isSluiceError } from "../core/index.js";
import { credentialsFor, parseChallenges } from "./auth.js";
import { isLoopbackHost, parseImageRef, registryBaseUrl } from "./index.js";
import { nextLink } from "./registry.js";

test("Docker Hub names: library/ prefix, docker.io and index.docker.io, registry-1 API host", () => {
  const nginx = parseImageRef("nginx");
  assert.equal(nginx.name, "docker.io/library/nginx");
  assert.equal(nginx.path, "library/nginx");
  assert.equal(nginx.canonical, "index.docker.io/library/nginx");
  assert.equal(nginx.apiHost, "registry-1.docker.io");
  assert.equal(registryBaseUrl(nginx), "https://registry-1.docker.io");
  assert.equal(parseImageRef("nbrown/nginxhello").canonical, "index.docker.io/nbrown/nginxhello");
  assert.equal(parseImageRef("index.docker.io/nginx").name, "docker.io/library/nginx");
  assert.equal(parseImageRef("docker.io/library/ubuntu:22.04").tag, "22.04");
});

test("registry hosts: a dot, a port, localhost or uppercase makes the first component a host", () => {
  const cases: [string, string, string][] = [
    ["ghcr.io/org/app", "ghcr.io", "org/app"],
    ["localhost:5000/a", "localhost:5000", "a"],
    ["localhost/a", "localhost", "a"],
    ["127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app"],
    ["Registry/app", "Registry", "app"],
    ["org/app", "docker.io", "org/app"],
    ["[::1]:5000/app", "[::1]:5000", "app"],
  ];
  for (const [ref, domain, path] of cases) {
    const r = parseImageRef(ref);
    assert.equal(r.domain, domain, ref);
    assert.equal(r.path, path, ref);
    assert.equal(r.apiHost, domain === "docker.io" ? "registry-1.docker.io" : domain, ref);
  }
  const full = parseImageRef(`ghcr.io/org/app:v1.2.3@sha256:${"a".repeat(64)}`);
  assert.equal(full.tag, "v1.2.3");
  assert.equal(full.digest, `sha256:${"a".repeat(64)}`);
});

test("invalid references are configuration errors", () => {
  for (const bad of [
    "",
    "https://ghcr.io/org/app",
    "ghcr.io/Org/app",
    "app:",
    "a//b",
    `${"a".repeat(64)}`,
    "-app",
  ]) {
    assert.throws(
      () => parseImageRef(bad),
      (e: unknown) => isSluiceError(e, "ConfigInvalid"),
      JSON.stringify(bad),
    );
  }
});

test("plain HTTP only for insecure registries and loopback hosts", () => {
  assert.equal(registryBaseUrl(parseImageRef("127.0.0.1:5000/a")), "http://127.0.0.1:5000");
  assert.equal(registryBaseUrl(parseImageRef("localhost:5000/a")), "http://localhost:5000");
  assert.equal(registryBaseUrl(parseImageRef("10.0.0.5:5000/a")), "https://10.0.0.5:5000");
  assert.equal(registryBaseUrl(parseImageRef("10.0.0.5:5000/a"), true), "http://10.0.0.5:5000");
  assert.ok(isLoopbackHost("127.3.2.1:80"));
  assert.ok(isLoopbackHost("[::1]:5000"));
  assert.ok(!isLoopbackHost("127.example.com"));
});

test("docker config credentials: auth or username/password, keys with scheme and path, Docker Hub aliases", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const config = {
    auths: {
      "https://index.docker.io/v1/": { auth: b64("hubuser:hub:pass") },
      "ghcr.io": { username: "gh", password: "tok" },
      "http://127.0.0.1:5000": { auth: b64("local:pw") },
      "broken.example": { auth: "not-base64-colonless" },
    },
  };
  assert.deepEqual(credentialsFor(config, "docker.io"), { username: "hubuser", password: "hub:pass" });
  assert.deepEqual(credentialsFor(config, "ghcr.io"), { username: "gh", password: "tok" });
  assert.deepEqual(credentialsFor(config, "127.0.0.1:5000"), { username: "local", password: "pw" });
  assert.equal(credentialsFor(config, "127.0.0.1:5001"), undefined);
  assert.equal(credentialsFor(config, "broken.example"), undefined);
  assert.equal(credentialsFor(undefined, "ghcr.io"), undefined);
});

test("WWW-Authenticate: Bearer with quoted, comma-bearing scope; Basic; several challenges", () => {
  const [bearer] = parseChallenges(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"',
  );
  assert.deepEqual(bearer, {
    scheme: "bearer",
    params: {
      realm: "https://auth.docker.io/token",
      service: "registry.docker.io",
      scope: "repository:samalba/my-app:pull,push",
    },
  });
  assert.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [
    { scheme: "basic", params: { realm: "Registry Realm" } },
  ]);
  const two = parseChallenges('Basic realm="x", Bearer realm="http://127.0.0.1:1/t", service=svc');
  assert.deepEqual(
    two.map((c) => c.scheme),
    ["basic", "bearer"],
  );
  assert.equal(two[1]!.params.service, "svc");
});

test("Link headers: rel=next among several links, quoted or bare, relative or absolute", () => {
  assert.equal(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"'), "/v2/a/tags/list?n=2&last=b");
  assert.equal(
    nextLink("<https://r.example/v2/a/tags/list?last=b>; rel=next"),
    "https://r.example/v2/a/tags/list?last=b",
  );
  assert.equal(nextLink('</prev>; rel="prev", </next?last=z>; rel="next"'), "/next?last=z");
  assert.equal(nextLink('</x>; title="a"; rel="last next"'), "/x");
  assert.equal(nextLink('</prev>; rel="prev"'), undefined);
  assert.equal(nextLink(null), undefined);
});
