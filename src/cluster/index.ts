/**
 * Sluice inside the cluster: replicas that share environments (member Leases + rendezvous
 * hashing, see shards.ts for why no environment has two acting owners), Sluice's own image, and
 * `sluice bootstrap`/`uninstall`. README.md says what state lives where.
 */

export {
  type BootstrapOptions,
  type BootstrapResult,
  bootstrap,
  type GitCredentials,
  gitCredentialData,
  type UninstallOptions,
  type UninstallResult,
  uninstall,
} from "./bootstrap.js";
export {
  buildSluiceImage,
  checkoutRoot,
  imageInputsHash,
  SLUICE_IMAGE_REPOSITORY,
  SLUICE_UID,
  type SluiceImage,
  type SluiceImageOptions,
} from "./image.js";
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
export {
  CREDENTIALS_SECRET,
  CREDENTIALS_UNIT,
  clusterName,
  clusterRules,
  components,
  credentialsSecret,
  type ManifestSpec,
  manifestFiles,
  SELF_UNIT,
  SYSTEM_NAMESPACE,
  syncConfig,
} from "./manifests.js";
export { assign, ownerOf, score } from "./ring.js";
export {
  type MemberInfo,
  Membership,
  type MembershipOptions,
  type MembershipStatus,
  SAFETY_FRACTION,
} from "./shards.js";
export { generateSshKey, publicKeyOf, type SshKeyPair } from "./sshkey.js";
export {
  type EnvironmentSnapshot,
  LABEL_STATE,
  listEnvironmentStates,
  type RunSummary,
  readEnvironmentState,
  restoreEnvironment,
  STATE_PREFIX,
  StateMirror,
  type StateMirrorOptions,
  stateConfigMapName,
} from "./state.js";
