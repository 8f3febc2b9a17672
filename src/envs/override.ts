/**
 * The local override, as in the seed's `.override.hcl`: a file `.sluice/override.yaml` in the
 * working copy (ignored by Git) that selects a named configuration regardless of the branch, for
 * running one environment by hand:
 *
 *   config: staging          # the environment (rule name template or explicit name) to become
 *   branch: my-branch        # optional: the branch whose rule applies (default: the checkout's)
 *   vars: {REPLICAS: "1"}    # optional: extra variables, above the rule's
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { parseYamlOne, SluiceError } from "../core/index.js";

export const OVERRIDE_FILE = join(".sluice", "override.yaml");

const overrideSchema = z.strictObject({
  config: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
  branch: z.string().optional(),
  vars: z.record(z.string(), z.string()).optional(),
});
export type Override = z.infer<typeof overrideSchema>;

export function readOverride(workdir: string): Override | undefined {
  const p = join(workdir, OVERRIDE_FILE);
  if (!existsSync(p)) return undefined;
  const doc = parseYamlOne(readFileSync(p, "utf8"), OVERRIDE_FILE);
  const parsed = overrideSchema.safeParse(doc?.value ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field =
      issue.path.join(".") ||
      (issue.code === "unrecognized_keys" ? (issue as { keys: string[] }).keys.join(", ") : "");
    throw new SluiceError("ConfigInvalid", `${OVERRIDE_FILE}: ${field ? `${field}: ` : ""}${issue.message}`, {
      detail: { file: OVERRIDE_FILE, field },
    });
  }
  return parsed.data;
}
