/** Post-deploy checks: SmokeTest (tcp and http assertions) run against an environment's service. */
export { type Address, assertPassed, type CheckResult, runSmokeTest, type SmokeReport } from "./smoke.js";
