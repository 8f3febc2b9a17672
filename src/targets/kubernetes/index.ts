/**
 * The Kubernetes target: server-side apply (field manager `sluice`) in CRD → Namespace → wave/kind
 * order, a server-side dry-run decides created/configured/unchanged (unchanged objects are not
 * re-applied), a per-unit inventory ConfigMap in `sluice-system` bounds prune, health by
 * kstatus-like rules. Secret values never appear in diffs or messages.
 */
import type { Target } from "../types.js";
import { KubernetesTarget, type KubernetesTargetOptions } from "./target.js";

export {
  ANNOTATION_WAVE,
  applyOrder,
  inventoryName,
  type KubernetesTargetOptions,
  PRUNE_ANNOTATIONS,
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
