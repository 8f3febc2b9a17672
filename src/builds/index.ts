/** Image builds: the seed's tag rule and podman build/push. */
export { type BuildRequest, type BuildResult, buildImage } from "./build.js";
export { imageTags } from "./tags.js";
