/**
 * An agent in its own process, for crash tests: `node --import tsx agent-child.ts STATE_DIR`.
 * Reads STATE_DIR/config, keeps state in STATE_DIR, runs until killed.
 */
import { join } from "node:path";
import pino from "pino";
import { Agent } from "../../src/reconcile/index.js";
import { GitSource } from "../../src/source/index.js";
import { openStore } from "../../src/store/index.js";
import { createLocalTarget } from "../../src/targets/local/index.js";

const state = process.argv[2];
if (!state) throw new Error("usage: agent-child.ts STATE_DIR");
const store = openStore(state);
const local = await createLocalTarget({ stateDir: join(state, "local") });
const agent = new Agent({
  configPath: join(state, "config"),
  configRoot: join(state, "config"),
  store,
  source: new GitSource({ cacheDir: join(state, "git") }),
  target: () => local,
  log: pino({ level: "silent" }),
});
await agent.start();
process.stdout.write("started\n");
setInterval(() => {}, 1 << 30);
