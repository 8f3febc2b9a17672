/**
 * The local target (the embedded default): rendered Kubernetes objects run as podman pods on this
 * machine, Services are served on 127.0.0.1 by Sluice's in-process proxy. See target.ts for the
 * design, images.ts for the locally built base images, podman.ts for how podman is run.
 */
export { BUSYBOX_IMAGE, type EnsureImagesOptions, ensureBaseImages, NODE_BASE_IMAGE } from "./images.js";
export { defaultContainersConf, Podman, type PodmanOptions, type PodmanResult } from "./podman.js";
export {
  createLocalTarget,
  type LocalTarget,
  type LocalTargetOptions,
  type RequestMatch,
  type ServiceAddress,
  type TrafficPolicy,
  type TrafficRule,
} from "./target.js";
