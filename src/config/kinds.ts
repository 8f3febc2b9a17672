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
const stackUnitName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$/, { message: "must be lower-case letters, digits, - and _" })
  .max(63);
/** `substituteFrom` entry (Sluice): the outputs of a Stack unit as variables (see infra/). */
export const stackOutputsRef = z.strictObject({
  kind: z.literal("StackOutputs"),
  /** The Stack's name. */
  name,
  unit: stackUnitName,
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
  /** Kubernetes: apply, read and prune as this service account of the unit's namespace (impersonation). */
  serviceAccountName: name.optional(),
  /** Kubernetes: a remote cluster, from a kubeconfig in a Secret of the configuration (key `value`). */
  kubeConfig: z.strictObject({ secretRef: z.strictObject({ name, key: z.string().optional() }) }).optional(),
  /**
   * Units this one waits for. Sluice extension: `kind: Build` waits for the image build of the
   * environment's commit (a failed build holds the unit back with the build's last log lines).
   */
  dependsOn: z
    .array(
      z.strictObject({
        name,
        namespace: name.optional(),
        kind: z.enum(["Kustomization", "Build"]).optional(),
      }),
    )
    .optional(),
  postBuild: z
    .strictObject({
      substitute: z.record(z.string(), z.string()).optional(),
      substituteFrom: z.array(z.union([substituteFrom, stackOutputsRef])).optional(),
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
      author: z.strictObject({ name: z.string().optional(), email: z.string() }),
      messageTemplate: z.string().optional(),
      messageTemplateValues: z.record(z.string(), z.string()).optional(),
    }),
    push: z
      .strictObject({
        branch: z.string().optional(),
        refspec: z.string().optional(),
        /** Sluice: open (or update) a pull request from `branch` instead of pushing to the checkout branch. */
        pullRequest: z.boolean().optional(),
      })
      .optional(),
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
export const environmentRule = z
  .strictObject({
    /** Branch name or glob (`feature/*`). Exactly one of `branch` and `pullRequest`. */
    branch: z.string().min(1).optional(),
    /**
     * An environment per open pull/merge request (from the forge's webhook), following its head
     * branch; `base` (a glob) limits it to requests into matching branches.
     */
    pullRequest: z
      .union([z.literal(true), z.strictObject({ base: z.string().min(1).optional() })])
      .optional(),
    /**
     * Environment name: `{{branch}}`, `{{branch.slug}}`, `{{pr.number}}`. Two branches that give the
     * same name get distinct names (a hash suffix), deterministically.
     */
    name: z.string().min(1),
    protected: z.boolean().optional(),
    /** Time to live after the last push (`8h`); extended by each push and by `sluice env extend`. */
    ttl: duration.optional(),
    /** `local` (default) or `kubernetes:<context>`. */
    target: z.string().optional(),
    /**
     * Kubernetes isolation: every namespaced object of the environment goes into this namespace
     * (a template, e.g. `{{env.name}}`), which Sluice creates.
     */
    namespace: z.string().min(1).optional(),
    /** The environment's public URL (a template), shown by `env ls` and usable as `{{env.url}}`. */
    url: z.string().min(1).optional(),
    /** Variables; values may use every template (`{{sha.short}}`, `{{env.url}}`, …). */
    vars: z.record(z.string(), z.string()).optional(),
  })
  .refine((r) => (r.branch === undefined) !== (r.pullRequest === undefined), {
    message: "a rule has exactly one of branch and pullRequest",
  });
export const environmentsSpec = z.strictObject({
  /** The GitRepository whose branches map to environments. */
  sourceRef: localRef,
  rules: z.array(environmentRule).min(1),
  /**
   * Scheduled purge (cron, five fields, in `timeZone`, default UTC): at each time, every expired
   * environment (`scope: expired`, the default) or every unprotected one (`scope: unprotected`,
   * "after working hours") is destroyed. Without a schedule, environments go when they expire.
   */
  purge: z
    .strictObject({
      schedule: z.string().min(1),
      timeZone: z.string().min(1).optional(),
      scope: z.enum(["expired", "unprotected"]).optional(),
    })
    .optional(),
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

/**
 * A Terragrunt-style stack: OpenTofu units (directories of `.tf` files in the repository) in a
 * dependency graph, planned/applied in order, independent units in parallel (src/infra).
 */
const stackHook = z.strictObject({
  /** Argument array, run without a shell (write `["sh", "-c", "…"]` to get one). */
  command: z.array(z.string().min(1)).min(1),
  /** Actions the hook runs for; default plan, apply and destroy. */
  actions: z
    .array(z.enum(["plan", "apply", "destroy", "output"]))
    .min(1)
    .optional(),
  /** After-hooks only: run also when the action failed. */
  runOnError: z.boolean().optional(),
  timeout: duration.optional(),
});
export const stackUnitSpec = z.strictObject({
  name: stackUnitName,
  /** Directory of `.tf` files, relative to the repository root. */
  path: z.string().min(1),
  /** Units that must be applied first (ordering only). */
  dependsOn: z.array(stackUnitName).optional(),
  /** Units whose outputs this one reads, as `${dependency.<unit>.outputs.<name>}`; implies dependsOn. */
  dependencies: z
    .array(
      z.strictObject({
        name: stackUnitName,
        /** Used by plan (never apply or destroy) while the dependency has no state. */
        mockOutputs: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .optional(),
  /** OpenTofu variables; string values get `${VAR}` substitution. Wins over inputsFile. */
  inputs: z.record(z.string(), z.unknown()).optional(),
  /** An `inputs.tfvars.json`-style file, relative to the unit's path. */
  inputsFile: z.string().min(1).optional(),
  hooks: z
    .strictObject({ before: z.array(stackHook).optional(), after: z.array(stackHook).optional() })
    .optional(),
});
export const stackSpec = z.strictObject({
  units: z.array(stackUnitSpec).min(1),
  /** Most units run at once; default the number of cores. */
  parallelism: z.number().int().min(1).max(64).optional(),
  /** Variables for every unit's inputs (above the repository's variable files). */
  substitute: z.record(z.string(), z.string()).optional(),
});
/**
 * `postBuild.substituteFrom` entry naming a stack unit whose outputs become variables. Not yet in
 * `substituteFrom` above: the agent wires it (see src/infra/index.ts, stackOutputsAsVariables).
 */

const weight = z.number().int().min(0).max(100);
const nameValue = z.strictObject({ name: z.string().min(1), value: z.string() });
export const rolloutSpec = z
  .strictObject({
    /** The Deployment rendered with the Rollout that it delivers. */
    workloadRef: z.strictObject({
      apiVersion: z.literal("apps/v1").optional(),
      kind: z.literal("Deployment").optional(),
      name,
    }),
    /** The Service in front of it (same namespace), and the port whose traffic is shifted. */
    service: z.strictObject({
      name,
      port: z.union([z.number().int().min(1).max(65535), z.string().min(1)]),
      /** HTTP (default): routed per request (needed for A/B); TCP: per connection. */
      protocol: z.enum(["HTTP", "TCP"]).optional(),
    }),
    /** A SmokeTest rendered with the app, run against the new version before it gets traffic. */
    smokeTest: name.optional(),
    /** Kubernetes: the Gateways the HTTPRoute attaches to (default: the Service itself, GAMMA). */
    gatewayRefs: z
      .array(z.strictObject({ name, namespace: name.optional(), sectionName: z.string().optional() }))
      .optional(),
    strategy: z
      .strictObject({
        blueGreen: z
          .strictObject({
            /** Service reaching the new version before the switch (default `<service>-preview`). */
            previewService: name.optional(),
            /** Switch as soon as the new version is healthy and its smoke test passed (default true). */
            autoPromote: z.boolean().optional(),
            /** How long the old version keeps running after the switch, for an instant rollback (30s). */
            scaleDownDelay: duration.optional(),
          })
          .optional(),
        canary: z
          .strictObject({
            steps: z
              .array(
                z.union([
                  z.strictObject({ setWeight: weight }),
                  z.strictObject({ pause: z.strictObject({ duration: duration.optional() }) }),
                ]),
              )
              .min(1),
            scaleDownDelay: duration.optional(),
          })
          .optional(),
        abTest: z
          .strictObject({
            /** A request matching any entry goes to the new version. */
            match: z
              .array(
                z
                  .strictObject({ header: nameValue.optional(), cookie: nameValue.optional() })
                  .refine((m) => !!m.header !== !!m.cookie, {
                    message: "a match has exactly one of header or cookie",
                  }),
              )
              .min(1),
            scaleDownDelay: duration.optional(),
          })
          .optional(),
      })
      .refine((s) => [s.blueGreen, s.canary, s.abTest].filter(Boolean).length === 1, {
        message: "a strategy has exactly one of blueGreen, canary or abTest",
      }),
  })
  .refine((s) => !(s.strategy.abTest && s.service.protocol === "TCP"), {
    message: "an abTest routes by header or cookie and needs service.protocol HTTP",
    path: ["service", "protocol"],
  });

/**
 * An image build on push (seed 003): CodeBuild-style triggers (events with ref patterns), podman
 * on this machine, tags by the seed's rule (`v1.0.2` → `1.0.2`, else the first 10 characters of
 * the commit; plus `latest`) or by `tags` templates (`{{sha}}`, `{{sha.short}}`, `{{tag}}`,
 * `{{tag.semver}}`, `{{branch.slug}}`; a tag whose fields are empty is skipped).
 */
export const buildSpec = z.strictObject({
  sourceRef: localRef,
  /** The build context, a directory of the repository. */
  context: z.string().min(1).default("."),
  /** Relative to the context. */
  containerfile: z.string().min(1).optional(),
  /** Repository without tag, e.g. `127.0.0.1:5000/app`. */
  image: z.string().min(1),
  tags: z.array(z.string().min(1)).min(1).optional(),
  triggers: z
    .array(
      z.strictObject({
        events: z.array(z.enum(["push", "tag", "pull_request"])).min(1),
        /** Branch globs (push, pull_request base) or tag globs (tag); default every ref. */
        refs: z.array(z.string().min(1)).optional(),
      }),
    )
    .min(1),
  /** A `kubernetes.io/dockerconfigjson` Secret with push credentials. */
  secretRef: localRef.optional(),
  /** Plain HTTP for a registry on 127.0.0.1. */
  insecure: z.boolean().optional(),
  suspend: z.boolean().optional(),
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
  Build: { versions: ["sluice.dev/v1alpha1"], spec: buildSpec },
  Stack: { versions: ["sluice.dev/v1alpha1"], spec: stackSpec },
  Rollout: { versions: ["sluice.dev/v1alpha1"], spec: rolloutSpec },
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
export type BuildSpec = z.infer<typeof buildSpec>;
export type RolloutSpec = z.infer<typeof rolloutSpec>;
export type StackSpec = z.infer<typeof stackSpec>;
export type StackUnitSpec = z.infer<typeof stackUnitSpec>;
export type StackOutputsRef = z.infer<typeof stackOutputsRef>;
export type Metadata = z.infer<typeof metadataSchema>;
