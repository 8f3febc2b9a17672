/**
 * The Kubernetes target: server-side apply (field manager `sluice`) in CRD → Namespace → wave/kind
 * order. The unit's live objects are listed in bulk (by the `sluice.dev/owner` label); an object
 * whose fields applied by Sluice already equal the desired ones is unchanged without any request,
 * others are classified by a server-side dry-run (unchanged objects are never re-applied). Field
 * conflicts with another applier are errors naming manager and field (taken over with `force`);
 * objects annotated reconcile-disabled are never written, their drift reported. A per-unit
 * inventory ConfigMap in `sluice-system` bounds prune; health by kstatus-like rules. Secret values
 * never appear in diffs or messages.
 */
import type { Target } from "../types.js";

export { type KubeconfigConnection, parseKubeconfig } from "./client.js";

import { KubernetesTarget, type KubernetesTargetOptions } from "./target.js";

export {
  ANNOTATION_WAVE,
  applyOrder,
  type FieldConflict,
  inventoryName,
  type KubernetesTargetOptions,
  kubeconfigFromSecret,
  PRUNE_ANNOTATIONS,
  RECONCILE_ANNOTATIONS,
  serviceAccountUser,
} from "./target.js";

/** Connects (checks that the API answers) and returns the target. */
export async function createKubernetesTarget(opts: KubernetesTargetOptions): Promise<Target> {
  const t = new KubernetesTarget(opts);
  try {
    await t.connect();
  } catch (e) {
    await t.close();
    throw e;
  }
  return t;
}
