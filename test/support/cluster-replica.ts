/**
 * One Sluice replica in its own process, for the sharding tests: a real Agent on the local
 * target (state in STATE_DIR) that acts only on the environments its Membership owns.
 * `node --import tsx cluster-replica.ts STATE_DIR ID KUBECONFIG NAMESPACE LEASE_MS`.
 * Prints one JSON line per ownership change: {"acting":…, "owned":[…], "members":[…]}.
 */
import { KubeApi, kubeconfigConnection, Membership, StateMirror } from "../../src/cluster/index.js";
import { openAgent } from "./agent.js";

const [state, id, kubeconfig, namespace, lease] = process.argv.slice(2);
if (!state || !id || !kubeconfig || !namespace)
  throw new Error("usage: cluster-replica.ts STATE ID KUBECONFIG NS [LEASE_MS]");
const leaseMs = Number(lease ?? 4000);
const api = new KubeApi(kubeconfigConnection(kubeconfig));
const m = new Membership({
  api,
  namespace,
  id,
  leaseDurationMs: leaseMs,
  renewIntervalMs: Math.round(leaseMs / 5),
  pollIntervalMs: 250,
});
const h = await openAgent(state, { owns: (env) => m.owns(env), concurrency: 6 });
// Run summaries and environment records in the cluster, written by each environment's owner.
new StateMirror({
  agent: h.agent,
  store: h.store,
  api,
  namespace,
  replica: id,
  owns: (env) => m.owns(env),
  debounceMs: 300,
}).start();
const report = () => {
  const owned = h.store
    .listEnvironments()
    .map((e) => e.name)
    .filter((e) => m.owns(e));
  process.stdout.write(
    `${JSON.stringify({ id, acting: m.acting(), members: m.members(), owned, at: Date.now() })}\n`,
  );
};
m.onChange(() => {
  report();
  h.agent.reshard().catch((e) => process.stderr.write(`reshard failed: ${(e as Error).message}\n`));
});
await m.start();
process.stdout.write("started\n");
setInterval(report, 1000);
