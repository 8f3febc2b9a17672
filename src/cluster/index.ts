/**
 * Sluice inside the cluster: replicas that share environments (member Leases + rendezvous
 * hashing, see shards.ts for why no environment has two acting owners), Sluice's own image, and
 * `sluice bootstrap`/`uninstall`. README.md says what state lives where.
 */
export {
  apiError,
  defaultConnection,
  inClusterConnection,
  KubeApi,
  type KubeConnection,
  type KubeRequester,
  type KubeResponse,
  kubeconfigConnection,
  SERVICE_ACCOUNT_DIR,
} from "./kube.js";
export { type LeaseObject, listMemberLeases, memberLeaseName } from "./leases.js";
export { assign, ownerOf, score } from "./ring.js";
export {
  type MemberInfo,
  Membership,
  type MembershipOptions,
  type MembershipStatus,
  SAFETY_FRACTION,
} from "./shards.js";
