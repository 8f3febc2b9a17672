/** Image builds: the seed's tag rule and podman build/push. */
export { type BuildRequest, type BuildResult, buildImage } from "./build.js";
export { BuildLoop, type BuildLoopOptions, type BuildRecord, type BuildResultState } from "./controller.js";
export { expandTags, imageTags } from "./tags.js";
