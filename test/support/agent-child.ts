/**
 * An agent in its own process, for crash tests: `node --import tsx agent-child.ts STATE_DIR`.
 * Reads STATE_DIR/config, keeps state in STATE_DIR, runs until killed.
 */
import { openAgent } from "./agent.js";

const state = process.argv[2];
if (!state) throw new Error("usage: agent-child.ts STATE_DIR");
await openAgent(state);
process.stdout.write("started\n");
setInterval(() => {}, 1 << 30);
