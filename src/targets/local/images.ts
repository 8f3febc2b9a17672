/**
 * Base images made on this machine, since no registry outside can be reached:
 * - `localhost/sluice/busybox:latest`: Debian's static busybox with one symlink per applet;
 * - `localhost/sluice/node-base:latest`: the host's `node` binary, the libraries `ldd` lists,
 *   CA certificates, and the same busybox (so a Containerfile's `RUN` and exec probes have a shell).
 * Both are `podman import`ed from a tarball built in a temporary directory; existing images are kept.
 */
import { execFile } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { SluiceError } from "../../core/index.js";
import { Podman } from "./podman.js";

const run = promisify(execFile);

export const BUSYBOX_IMAGE = "localhost/sluice/busybox:latest";
export const NODE_BASE_IMAGE = "localhost/sluice/node-base:latest";

const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface EnsureImagesOptions {
  podmanPath?: string;
  /** Progress lines; stderr by default. */
  log?: (msg: string) => void;
  /** Rebuild even when the images exist. */
  force?: boolean;
  /** Other names to build under (tests); default BUSYBOX_IMAGE and NODE_BASE_IMAGE. */
  names?: { busybox: string; nodeBase: string };
}

/** Creates the local base images when they are missing. */
export async function ensureBaseImages(opts: EnsureImagesOptions = {}): Promise<void> {
  const podman = new Podman(opts.podmanPath);
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  for (const [image, build] of [
    [opts.names?.busybox ?? BUSYBOX_IMAGE, buildBusyboxRoot],
    [opts.names?.nodeBase ?? NODE_BASE_IMAGE, buildNodeRoot],
  ] as const) {
    if (!opts.force && (await imageExists(podman, image))) continue;
    const dir = mkdtempSync(join(tmpdir(), "sluice-image-"));
    try {
      const root = join(dir, "root");
      mkdirSync(root);
      log(`sluice: building base image ${image}`);
      const cmd = await build(root);
      const tar = join(dir, "rootfs.tar");
      await run("tar", ["-C", root, "-cf", tar, "."], { maxBuffer: 16 * 1024 * 1024 });
      log(`sluice: importing ${image}`);
      await podman.run(
        [
          "import",
          "--quiet",
          "--change",
          `ENV ${PATH_ENV}`,
          "--change",
          `CMD ${JSON.stringify(cmd)}`,
          tar,
          image,
        ],
        { timeoutMs: 300_000 },
      );
      log(`sluice: ${image} is ready`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function imageExists(podman: Podman, image: string): Promise<boolean> {
  try {
    await podman.run(["image", "exists", image]);
    return true;
  } catch {
    return false;
  }
}

function findBusybox(): string {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) {
    if (existsSync(p)) return p;
  }
  throw new SluiceError(
    "TargetUnavailable",
    "busybox is not installed, so the local base images cannot be built",
    {
      hint: "apt-get install busybox-static",
    },
  );
}

/** /bin/busybox plus one symlink per applet, /tmp, and a minimal /etc. */
async function addBusybox(root: string): Promise<void> {
  const bb = findBusybox();
  const ldd = await run("ldd", [bb]).then(
    (r) => r.stdout + r.stderr,
    (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ""}${e.stderr ?? ""}`,
  );
  if (!/not a dynamic executable|statically linked/.test(ldd)) {
    throw new SluiceError(
      "TargetUnavailable",
      `${bb} is not statically linked, so it cannot run alone in an image`,
      {
        hint: "apt-get install busybox-static",
      },
    );
  }
  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "tmp", "etc", "root", "www"])
    mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, "tmp"), 0o1777);
  copyFileSync(bb, join(root, "bin/busybox"));
  chmodSync(join(root, "bin/busybox"), 0o755);
  const { stdout } = await run(bb, ["--list-full"]);
  for (const applet of stdout.split("\n").map((s) => s.trim())) {
    if (!applet || applet === "bin/busybox") continue;
    const target = join(root, applet);
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync("/bin/busybox", target);
  }
  writeFileSync(
    join(root, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  writeFileSync(join(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
}

async function buildBusyboxRoot(root: string): Promise<string[]> {
  await addBusybox(root);
  return ["/bin/sh"];
}

async function buildNodeRoot(root: string): Promise<string[]> {
  await addBusybox(root);
  const { stdout: which } = await run("sh", ["-c", "command -v node"]).catch(() => ({ stdout: "" }));
  const nodeBin = which.trim() || process.execPath;
  const node = realpathSync(nodeBin);
  mkdirSync(join(root, "usr/local/bin"), { recursive: true });
  copyFileSync(node, join(root, "usr/local/bin/node"));
  chmodSync(join(root, "usr/local/bin/node"), 0o755);
  // Every library ldd lists, at the path the loader looks for it (and its real file).
  const { stdout } = await run("ldd", [node]);
  for (const line of stdout.split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (!m?.[1]) continue;
    const lib = m[1];
    const dest = join(root, lib);
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(realpathSync(lib), dest);
  }
  // glibc's name-service libraries are loaded at run time, not listed by ldd.
  for (const extra of [
    "/lib/x86_64-linux-gnu/libnss_files.so.2",
    "/lib/x86_64-linux-gnu/libnss_dns.so.2",
    "/lib/x86_64-linux-gnu/libresolv.so.2",
  ]) {
    if (existsSync(extra)) {
      mkdirSync(dirname(join(root, extra)), { recursive: true });
      copyFileSync(realpathSync(extra), join(root, extra));
    }
  }
  if (existsSync("/etc/ssl/certs")) {
    mkdirSync(join(root, "etc/ssl"), { recursive: true });
    cpSync("/etc/ssl/certs", join(root, "etc/ssl/certs"), { recursive: true, dereference: true });
  }
  writeFileSync(join(root, "etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files dns\n");
  return ["node"];
}
