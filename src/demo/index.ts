/** The end-to-end demo (`sluice demo`) and the local OCI registry it and the tests run. */
export { type Demo, type DemoOptions, startDemo, stopDemo } from "./demo.js";
export { freePort, type Registry, startRegistry } from "./registry.js";
