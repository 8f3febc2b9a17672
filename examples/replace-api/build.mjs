// Bundles app/server.ts into dist/server.mjs: one dependency-free ES module that the container image runs
// with plain `node` (the image holds only the node binary, no TypeScript loader).
// Usage: node build.mjs   (from any directory; esbuild comes from the Sluice checkout's node_modules)
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, "dist", "server.mjs");

await build({
  entryPoints: [join(here, "app", "server.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Node built-ins only; anything else would be bundled in, and the app has no other dependency.
  packages: "bundle",
  sourcemap: false,
  minify: false,
  legalComments: "none",
  logLevel: "warning",
});
process.stdout.write(`built ${outfile}\n`);
