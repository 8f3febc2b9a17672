#!/usr/bin/env node
// Entry point for `npx sluice`: runs the compiled CLI (`npm run build`, done by the README's
// commands, produces dist/), or the TypeScript sources through tsx in an unbuilt checkout.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const built = join(root, "dist", "cli", "main.js");
let entry = built;
if (!existsSync(built)) {
  const { register } = await import("tsx/esm/api");
  register();
  entry = join(root, "src", "cli", "main.ts");
}
const { main, exitAfterFlush } = await import(pathToFileURL(entry).href);
exitAfterFlush(await main(process.argv));
