import assert from "node:assert/strict";
import { after, test } from "node:test";
import { ensureBaseImages, Podman } from "./index.js";

const podman = new Podman();
// Built under test-only names, so the test really builds and leaves the shared images alone.
const names = {
  busybox: `localhost/sluice-test/busybox:${process.pid}`,
  nodeBase: `localhost/sluice-test/node-base:${process.pid}`,
};

after(async () => {
  await podman.run(["rmi", "-f", names.busybox, names.nodeBase]).catch(() => {});
});

test("base images are built locally, once, and run busybox httpd and node", async () => {
  const lines: string[] = [];
  await ensureBaseImages({ log: (m) => lines.push(m), names });
  assert.ok(
    lines.some((l) => l.includes(`building base image ${names.nodeBase}`)),
    lines.join("\n"),
  );
  await podman.run(["image", "exists", names.busybox]);
  await podman.run(["image", "exists", names.nodeBase]);
  // A second call finds both and builds nothing.
  const again: string[] = [];
  await ensureBaseImages({ log: (m) => again.push(m), names });
  assert.deepEqual(again, []);

  const node = await podman.run(["run", "--rm", names.nodeBase, "node", "--version"]);
  assert.equal(node.stdout.trim(), process.version);
  const certs = await podman.run([
    "run",
    "--rm",
    names.nodeBase,
    "node",
    "-e",
    "console.log(require('node:tls').rootCertificates.length > 0)",
  ]);
  assert.equal(certs.stdout.trim(), "true");
  const bb = await podman.run(["run", "--rm", names.busybox, "sh", "-c", "command -v httpd && echo ok"]);
  assert.match(bb.stdout, /httpd\nok/);
});
