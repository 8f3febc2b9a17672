/**
 * Sluice's own container image, built with podman from the local `node-base` image (no registry
 * is reachable): one esbuild bundle of the CLI (everything but the native better-sqlite3 module,
 * which is copied with its two small dependencies), bin/sluice.js as the entrypoint, the tools the
 * agent runs (git with its HTTP helper, ssh, kubectl for `kubectl kustomize`) and the libraries
 * `ldd` lists for them, a `sluice` user (uid 65532). The build is skipped when an image built from
 * the same inputs exists: the tag is a hash of the sources, the lockfile, the Containerfile, the
 * tools and the base image id.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { buildImage } from "../builds/index.js";
import { SluiceError } from "../core/index.js";
import { ensureBaseImages, NODE_BASE_IMAGE, Podman } from "../targets/local/index.js";

const run = promisify(execFile);

export const SLUICE_IMAGE_REPOSITORY = "localhost/sluice/sluice";
export const SLUICE_UID = 65532;

/** The checkout this module belongs to (from src/cluster or dist/cluster). */
export function checkoutRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "deploy", "sluice", "Containerfile")))
      return dir;
    dir = dirname(dir);
  }
  throw new SluiceError(
    "NotFound",
    "cannot find the Sluice checkout (deploy/sluice/Containerfile) to build from",
    {
      hint: "build the image from a clone of the Sluice repository",
    },
  );
}

/** Host tools copied into the image, with where they go. */
const TOOLS: { from: string[]; to: string; optional?: boolean }[] = [
  { from: ["/usr/bin/git"], to: "/usr/bin/git" },
  { from: ["/usr/lib/git-core/git-remote-http"], to: "/usr/lib/git-core/git-remote-http" },
  { from: ["/usr/bin/ssh"], to: "/usr/bin/ssh", optional: true },
  { from: ["/usr/local/bin/kustomize", "/usr/bin/kustomize", "/usr/bin/kubectl"], to: "", optional: true },
];

export interface SluiceImageOptions {
  /** The checkout to build from (default: this one). */
  root?: string;
  /** Repository to tag (default `localhost/sluice/sluice`); tags `<inputs hash>` and `latest`. */
  repository?: string;
  /** Rebuild even when an image of the same inputs exists. */
  force?: boolean;
  podman?: Podman;
  onProgress?: (line: string) => void;
}

export interface SluiceImage {
  /** `<repository>:<hash>`. */
  image: string;
  hash: string;
  /** False when an image of the same inputs existed. */
  built: boolean;
  ms: number;
  sizeBytes: number;
}

function walk(dir: string, out: string[], filter: (p: string) => boolean): void {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) walk(p, out, filter);
    else if (filter(p)) out.push(p);
  }
}

function toolPaths(): { src: string; to: string }[] {
  const out: { src: string; to: string }[] = [];
  for (const t of TOOLS) {
    const src = t.from.find((p) => existsSync(p));
    if (!src) {
      if (t.optional) continue;
      throw new SluiceError(
        "NotFound",
        `${t.from.join(" or ")} is needed in Sluice's image but missing on this host`,
        {
          hint: "apt-get install git",
        },
      );
    }
    out.push({ src: realpathSync(src), to: t.to || src });
  }
  return out;
}

/** The hash of everything the image is made of. */
export async function imageInputsHash(root: string, podman: Podman): Promise<string> {
  const h = createHash("sha256");
  const files: string[] = [];
  walk(join(root, "src"), files, (p) => p.endsWith(".ts") && !p.endsWith(".test.ts"));
  for (const f of [
    "package.json",
    "package-lock.json",
    "bin/sluice.js",
    "deploy/sluice/Containerfile",
    "scripts/podman/containers.conf",
  ]) {
    if (existsSync(join(root, f))) files.push(join(root, f));
  }
  if (existsSync(join(root, "dist", "web"))) walk(join(root, "dist", "web"), files, () => true);
  for (const f of files) h.update(relative(root, f)).update("\0").update(readFileSync(f)).update("\0");
  for (const t of toolPaths()) {
    const st = statSync(t.src);
    h.update(`${t.src}:${st.size}:${st.mtimeMs}\0`);
  }
  h.update(process.version);
  const base = await podman.run(["image", "inspect", "--format", "{{.Id}}", NODE_BASE_IMAGE]);
  h.update(base.stdout.trim());
  return h.digest("hex").slice(0, 16);
}

async function imageSize(podman: Podman, image: string): Promise<number> {
  const r = await podman.run(["image", "inspect", "--format", "{{.Size}}", image]);
  return Number(r.stdout.trim());
}

/** Copies `bin` and every library `ldd` lists for it into `rootfs` (at their paths). */
async function addBinary(rootfs: string, src: string, to: string, libs: Set<string>): Promise<void> {
  const dest = join(rootfs, to);
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(src, dest);
  chmodSync(dest, 0o755);
  const ldd = await run("ldd", [src]).then(
    (r) => r.stdout,
    () => "",
  );
  for (const line of ldd.split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
}

/** esbuild is only used by `sluice demo` (and this builder), on a workstation: not in the image. */
const workstationOnly = {
  name: "workstation-only",
  setup(b: {
    onResolve(o: { filter: RegExp }, cb: (a: { path: string }) => { path: string; namespace: string }): void;
    onLoad(o: { filter: RegExp; namespace: string }, cb: () => { contents: string; loader: "js" }): void;
  }) {
    b.onResolve({ filter: /^esbuild$/ }, (a) => ({ path: a.path, namespace: "workstation-only" }));
    b.onLoad({ filter: /.*/, namespace: "workstation-only" }, () => ({
      contents:
        "const no = () => { throw new Error('not available in the Sluice image (a workstation command)'); };" +
        " export const build = no; export default { build: no };",
      loader: "js",
    }));
  },
};

async function stage(root: string, ctx: string, say: (l: string) => void): Promise<void> {
  const app = join(ctx, "app");
  mkdirSync(join(app, "bin"), { recursive: true });
  mkdirSync(join(app, "dist", "cli"), { recursive: true });
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  say("bundling the CLI with esbuild");
  const { build } = await import("esbuild");
  await build({
    entryPoints: [join(root, "src", "cli", "main.ts")],
    outfile: join(app, "dist", "cli", "main.js"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minifySyntax: true,
    legalComments: "none",
    logLevel: "error",
    // Native: copied next to the bundle.
    external: ["better-sqlite3"],
    plugins: [workstationOnly],
    banner: {
      js: "import { createRequire as __sluiceRequire } from 'node:module'; const require = __sluiceRequire(import.meta.url);",
    },
  });
  copyFileSync(join(root, "bin", "sluice.js"), join(app, "bin", "sluice.js"));
  writeFileSync(
    join(app, "package.json"),
    `${JSON.stringify({ name: "sluice", version: pkg.version, type: "module", private: true }, null, 2)}\n`,
  );
  if (existsSync(join(root, "dist", "web")))
    cpSync(join(root, "dist", "web"), join(app, "dist", "web"), { recursive: true });
  // better-sqlite3: its JavaScript, the built addon, and `bindings` (+ file-uri-to-path).
  const nm = join(root, "node_modules");
  const bs = join(app, "node_modules", "better-sqlite3");
  cpSync(join(nm, "better-sqlite3", "lib"), join(bs, "lib"), { recursive: true });
  copyFileSync(join(nm, "better-sqlite3", "package.json"), join(bs, "package.json"));
  mkdirSync(join(bs, "build", "Release"), { recursive: true });
  copyFileSync(
    join(nm, "better-sqlite3", "build", "Release", "better_sqlite3.node"),
    join(bs, "build", "Release", "better_sqlite3.node"),
  );
  for (const dep of ["bindings", "file-uri-to-path"]) {
    if (existsSync(join(nm, dep))) cpSync(join(nm, dep), join(app, "node_modules", dep), { recursive: true });
  }
  // Tools and their libraries; the addon's libraries too (libstdc++ is not in node-base).
  const rootfs = join(ctx, "rootfs");
  const libs = new Set<string>();
  for (const t of toolPaths()) await addBinary(rootfs, t.src, t.to, libs);
  const addon = await run("ldd", [join(bs, "build", "Release", "better_sqlite3.node")]).then(
    (r) => r.stdout,
    () => "",
  );
  for (const line of addon.split("\n")) {
    const m = /=>\s*(\/\S+)\s+\(0x/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  for (const lib of libs) {
    const dest = join(rootfs, lib);
    if (existsSync(dest)) continue;
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(realpathSync(lib), dest);
  }
  if (existsSync(join(rootfs, "usr/lib/git-core/git-remote-http")))
    copyFileSync(
      join(rootfs, "usr/lib/git-core/git-remote-http"),
      join(rootfs, "usr/lib/git-core/git-remote-https"),
    );
  mkdirSync(join(rootfs, "etc"), { recursive: true });
  writeFileSync(
    join(rootfs, "etc", "passwd"),
    `root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nsluice:x:${SLUICE_UID}:${SLUICE_UID}:sluice:/var/lib/sluice:/bin/false\n`,
  );
  writeFileSync(join(rootfs, "etc", "group"), `root:x:0:\nnogroup:x:65534:\nsluice:x:${SLUICE_UID}:\n`);
  mkdirSync(join(ctx, "state", "state"), { recursive: true });
  writeFileSync(join(ctx, "state", ".keep"), "");
  copyFileSync(join(root, "deploy", "sluice", "Containerfile"), join(ctx, "Containerfile"));
}

/** Builds `localhost/sluice/sluice:<hash>` (and `:latest`) unless it exists already. */
export async function buildSluiceImage(opts: SluiceImageOptions = {}): Promise<SluiceImage> {
  const t0 = Date.now();
  const root = opts.root ?? checkoutRoot();
  const podman = opts.podman ?? new Podman();
  const say = opts.onProgress ?? (() => {});
  const repository = opts.repository ?? SLUICE_IMAGE_REPOSITORY;
  await ensureBaseImages({ log: say });
  const hash = await imageInputsHash(root, podman);
  const image = `${repository}:${hash}`;
  const exists = await podman.run(["image", "exists", image]).then(
    () => true,
    () => false,
  );
  if (exists && !opts.force) {
    await podman.run(["tag", image, `${repository}:latest`]);
    return { image, hash, built: false, ms: Date.now() - t0, sizeBytes: await imageSize(podman, image) };
  }
  const ctx = mkdtempSync(join(tmpdir(), "sluice-image-ctx-"));
  try {
    await stage(root, ctx, say);
    await buildImage(podman, {
      contextDir: ctx,
      repository,
      tags: [hash, "latest"],
      push: false,
      onProgress: say,
    });
  } finally {
    rmSync(ctx, { recursive: true, force: true });
  }
  // Older builds of this repository are untagged (their layers go with the next `podman image prune`).
  const tags = await podman.run(["images", "--filter", `reference=${repository}`, "--format", "{{.Tag}}"]);
  for (const t of tags.stdout.split("\n").map((l) => l.trim())) {
    if (t && t !== hash && t !== "latest" && t !== "<none>")
      await podman.run(["untag", `${repository}:${t}`]).catch(() => {});
  }
  return { image, hash, built: true, ms: Date.now() - t0, sizeBytes: await imageSize(podman, image) };
}
