import assert from "node:assert/strict";
import { test } from "node:test";
import { isSluiceError } from "../core/index.js";
import { checkSourceUrl, isMetadataAddress, parseSourceUrl, redactUrl, redactUrls } from "./_url.js";

const opts = { allowFile: false, allowLinkLocal: false };

test("link-local and metadata addresses are refused in every spelling", async () => {
  for (const url of [
    "http://169.254.169.254/latest/meta-data.git",
    "http://2852039166/x.git", // 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/x.git",
    "http://[fd00:ec2::254]/x.git",
    "http://[fe80::1]/x.git",
    "http://[::ffff:169.254.169.254]/x.git",
    "https://metadata.google.internal/computeMetadata/v1.git",
    "ssh://git@169.254.1.1/repo.git",
    "git@169.254.1.1:repo.git",
  ]) {
    await assert.rejects(
      checkSourceUrl(url, opts),
      (e) => isSluiceError(e, "ArtifactFailed") && /refused/.test(e.message),
      url,
    );
  }
  assert.equal(isMetadataAddress("10.0.0.1"), false);
  assert.equal(isMetadataAddress("127.0.0.1"), false);
  // Explicitly allowed:
  const ok = await checkSourceUrl("http://169.254.169.254/x.git", { ...opts, allowLinkLocal: true });
  assert.equal(ok.host, "169.254.169.254");
});

test("ext:: and other transport helpers, odd schemes and option-like URLs are refused", () => {
  for (const url of [
    "ext::sh -c touch% /tmp/pwned",
    "fd::17",
    "-uhttp://x",
    "ftp://h/x.git",
    "http://h/a b.git",
    "",
  ]) {
    assert.throws(
      () => parseSourceUrl(url, opts),
      (e) => isSluiceError(e, "ArtifactFailed"),
      url,
    );
  }
});

test("file:// URLs are refused unless allowed", () => {
  assert.throws(() => parseSourceUrl("file:///srv/repo.git", opts), /file:\/\/ URLs are disabled/);
  assert.equal(parseSourceUrl("file:///srv/repo.git", { allowFile: true }).scheme, "file");
});

test("userinfo is moved out of the URL git sees, and redacted everywhere", () => {
  const p = parseSourceUrl("https://bob:s%40cret@git.example.com/org/repo.git", opts);
  assert.equal(p.gitUrl, "https://git.example.com/org/repo.git");
  assert.equal(p.username, "bob");
  assert.equal(p.password, "s@cret");
  assert.equal(
    redactUrls("fatal: unable to access 'https://bob:tok@git.example.com/r.git/': 401"),
    "fatal: unable to access 'https://***@git.example.com/r.git/': 401",
  );
  assert.equal(redactUrls("see https://git.example.com/a@b"), "see https://git.example.com/a@b");
  assert.equal(redactUrl("bob:pw@git.example.com:org/r.git"), "***@git.example.com:org/r.git");
  assert.equal(redactUrl("git@github.com:org/r.git"), "git@github.com:org/r.git");
});

test("an allow-list of hosts restricts sources", async () => {
  const allowedHosts = ["git.example.com", "*.corp.example"];
  await checkSourceUrl("https://git.example.com/r.git", { ...opts, allowedHosts });
  await checkSourceUrl("git@code.corp.example:r.git", { ...opts, allowedHosts });
  await assert.rejects(
    checkSourceUrl("https://evil.example.net/r.git", { ...opts, allowedHosts }),
    /not in the allowed hosts/,
  );
});
