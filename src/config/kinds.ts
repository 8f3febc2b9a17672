/**
 * The kinds Sluice reads from Git: a subset of Flux's own (so a Flux user's repository mostly
 * just works) plus `sluice.dev/v1alpha1` kinds for what Flux lacks. Every schema is strict: an
 * unknown or unsupported field is an error naming the field, never silently ignored.
 */
import { z } from "zod";
import { parseDuration } from "../core/index.js";

const duration = z
  .string()
  .refine((s) => parseDuration(s) !== undefined, { message: "not a duration (e.g. 30s, 1m, 1h30m)" });
const name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { message: "must be a DNS-1123 name" })
  .max(253);
const localRef = z.strictObject({ name });
const crossRef = z.strictObject({ name, namespace: name.optional() });

export const metadataSchema = z.strictObject({
  name,
  namespace: name.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

// --- source.toolkit.fluxcd.io/v1 -------------------------------------------------------------
export const gitRepositorySpec = z.strictObject({
  url: z.string().min(1),
  interval: duration,
  timeout: duration.optional(),
  ref: z
    .strictObject({
      branch: z.string().optional(),
      tag: z.string().optional(),
      semver: z.string().optional(),
      name: z.string().optional(),
      commit: z
        .string()
        .regex(/^[0-9a-f]{7,40}$/)
        .optional(),
    })
    .optional(),
  secretRef: localRef.optional(),
  ignore: z.string().optional(),
  suspend: z.boolean().optional(),
});

// --- kustomize.toolkit.fluxcd.io/v1 ----------------------------------------------------------
const substituteFrom = z.strictObject({
  kind: z.enum(["ConfigMap", "Secret"]),
  name,
  optional: z.boolean().optional(),
});
export const kustomizationSpec = z.strictObject({
  sourceRef: z.strictObject({
    kind: z.literal("GitRepository"),
    name,
    namespace: name.optional(),
    apiVersion: z.string().optional(),
  }),
  path: z.string().optional(),
  interval: duration,
  retryInterval: duration.optional(),
  timeout: duration.optional(),
  prune: z.boolean(),
  wait: z.boolean().optional(),
  force: z.boolean().optional(),
  suspend: z.boolean().optional(),
  targetNamespace: name.optional(),
  dependsOn: z.array(crossRef).optional(),
  postBuild: z
    .strictObject({
      substitute: z.record(z.string(), z.string()).optional(),
      substituteFrom: z.array(substituteFrom).optional(),
      /** Sluice extension: Flux's empty-string behaviour for undefined variables. */
      allowUndefined: z.boolean().optional(),
    })
    .optional(),
  decryption: z.strictObject({ provider: z.literal("sops"), secretRef: localRef.optional() }).optional(),
});

// --- image.toolkit.fluxcd.io -----------------------------------------------------------------
export const imageRepositorySpec = z.strictObject({
  image: z.string().min(1),
  interval: duration,
  timeout: duration.optional(),
  secretRef: localRef.optional(),
  exclusionList: z.array(z.string()).optional(),
  insecure: z.boolean().optional(),
  suspend: z.boolean().optional(),
  provider: z.literal("generic").optional(),
});
export const imagePolicySpec = z.strictObject({
  imageRepositoryRef: crossRef,
  policy: z.union([
    z.strictObject({ semver: z.strictObject({ range: z.string().min(1) }) }),
    z.strictObject({ alphabetical: z.strictObject({ order: z.enum(["asc", "desc"]).optional() }) }),
    z.strictObject({ numerical: z.strictObject({ order: z.enum(["asc", "desc"]).optional() }) }),
  ]),
  filterTags: z.strictObject({ pattern: z.string().optional(), extract: z.string().optional() }).optional(),
  digestReflectionPolicy: z.enum(["Never", "IfNotPresent", "Always"]).optional(),
});
export const imageUpdateAutomationSpec = z.strictObject({
  sourceRef: z.strictObject({
    kind: z.literal("GitRepository"),
    name,
    namespace: name.optional(),
    apiVersion: z.string().optional(),
  }),
  interval: duration,
  git: z.strictObject({
    checkout: z.strictObject({ ref: z.strictObject({ branch: z.string() }) }).optional(),
    commit: z.strictObject({
      author: z.strictObject({ name: z.string(), email: z.string() }),
      messageTemplate: z.string().optional(),
      messageTemplateValues: z.record(z.string(), z.string()).optional(),
    }),
    push: z.strictObject({ branch: z.string().optional(), refspec: z.string().optional() }).optional(),
  }),
  update: z
    .strictObject({ path: z.string().optional(), strategy: z.literal("Setters").optional() })
    .optional(),
  policySelector: z.strictObject({ matchLabels: z.record(z.string(), z.string()) }).optional(),
  suspend: z.boolean().optional(),
});

// --- notification.toolkit.fluxcd.io ----------------------------------------------------------
const objectRef = z.strictObject({
  kind: z.string(),
  name: z.string(),
  namespace: name.optional(),
  apiVersion: z.string().optional(),
  matchLabels: z.record(z.string(), z.string()).optional(),
});
export const receiverSpec = z.strictObject({
  type: z.enum(["github", "gitlab", "generic", "generic-hmac"]),
  events: z.array(z.string()).optional(),
  resources: z.array(objectRef).min(1),
  secretRef: localRef,
  interval: duration.optional(),
  suspend: z.boolean().optional(),
});
export const providerSpec = z.strictObject({
  type: z.enum(["generic", "generic-hmac", "github", "gitlab", "slack"]),
  address: z.string().optional(),
  channel: z.string().optional(),
  username: z.string().optional(),
  timeout: duration.optional(),
  secretRef: localRef.optional(),
  suspend: z.boolean().optional(),
});
export const alertSpec = z.strictObject({
  providerRef: localRef,
  eventSeverity: z.enum(["info", "error"]).optional(),
  eventSources: z.array(objectRef).min(1),
  inclusionList: z.array(z.string()).optional(),
  exclusionList: z.array(z.string()).optional(),
  summary: z.string().optional(),
  suspend: z.boolean().optional(),
});

// --- sluice.dev/v1alpha1 ---------------------------------------------------------------------
export const environmentRule = z.strictObject({
  /** Branch name or glob (`feature/*`). */
  branch: z.string().min(1),
  /** Environment name, may use `{{branch}}` and `{{branch.slug}}`. */
  name: z.string().min(1),
  protected: z.boolean().optional(),
  ttl: duration.optional(),
  /** `local` (default) or `kubernetes:<context>`. */
  target: z.string().optional(),
  vars: z.record(z.string(), z.string()).optional(),
});
export const environmentsSpec = z.strictObject({
  /** The GitRepository whose branches map to environments. */
  sourceRef: localRef,
  rules: z.array(environmentRule).min(1),
  purge: z.strictObject({ schedule: z.string() }).optional(),
});
const httpCheck = z.strictObject({
  method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]).optional(),
  path: z.string().startsWith("/"),
  headers: z.record(z.string(), z.string()).optional(),
  body: z.string().optional(),
  expect: z.strictObject({
    status: z.number().int().optional(),
    json: z.unknown().optional(),
    body: z.string().optional(),
    contains: z.string().optional(),
  }),
});
export const smokeTestSpec = z.strictObject({
  service: z.strictObject({
    name: z.string(),
    port: z.union([z.number().int(), z.string()]),
    namespace: z.string().optional(),
  }),
  timeout: duration.optional(),
  checks: z
    .array(
      z
        .strictObject({ name: z.string(), tcp: z.strictObject({}).optional(), http: httpCheck.optional() })
        .refine((c) => !!c.tcp !== !!c.http, {
          message: "a check has exactly one of tcp or http",
        }),
    )
    .min(1),
});

/** apiVersion + kind → spec schema. Versions listed are the ones we accept. */
export const KINDS = {
  GitRepository: { versions: ["source.toolkit.fluxcd.io/v1"], spec: gitRepositorySpec },
  Kustomization: { versions: ["kustomize.toolkit.fluxcd.io/v1"], spec: kustomizationSpec },
  ImageRepository: { versions: ["image.toolkit.fluxcd.io/v1beta2"], spec: imageRepositorySpec },
  ImagePolicy: { versions: ["image.toolkit.fluxcd.io/v1beta2"], spec: imagePolicySpec },
  ImageUpdateAutomation: {
    versions: ["image.toolkit.fluxcd.io/v1beta1", "image.toolkit.fluxcd.io/v1beta2"],
    spec: imageUpdateAutomationSpec,
  },
  Receiver: { versions: ["notification.toolkit.fluxcd.io/v1"], spec: receiverSpec },
  Provider: {
    versions: ["notification.toolkit.fluxcd.io/v1beta3", "notification.toolkit.fluxcd.io/v1beta2"],
    spec: providerSpec,
  },
  Alert: {
    versions: ["notification.toolkit.fluxcd.io/v1beta3", "notification.toolkit.fluxcd.io/v1beta2"],
    spec: alertSpec,
  },
  Environments: { versions: ["sluice.dev/v1alpha1"], spec: environmentsSpec },
  SmokeTest: { versions: ["sluice.dev/v1alpha1"], spec: smokeTestSpec },
} as const;

export type KindName = keyof typeof KINDS;
export type GitRepositorySpec = z.infer<typeof gitRepositorySpec>;
export type KustomizationSpec = z.infer<typeof kustomizationSpec>;
export type ImageRepositorySpec = z.infer<typeof imageRepositorySpec>;
export type ImagePolicySpec = z.infer<typeof imagePolicySpec>;
export type ImageUpdateAutomationSpec = z.infer<typeof imageUpdateAutomationSpec>;
export type ReceiverSpec = z.infer<typeof receiverSpec>;
export type ProviderSpec = z.infer<typeof providerSpec>;
export type AlertSpec = z.infer<typeof alertSpec>;
export type EnvironmentsSpec = z.infer<typeof environmentsSpec>;
export type EnvironmentRule = z.infer<typeof environmentRule>;
export type SmokeTestSpec = z.infer<typeof smokeTestSpec>;
export type Metadata = z.infer<typeof metadataSchema>;
