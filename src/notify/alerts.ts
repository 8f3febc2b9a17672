/**
 * Flux `Provider` and `Alert` objects resolved from the configuration, and Flux's matching rules:
 *
 * - an Alert sees events of its own namespace unless an event source names another;
 * - `eventSeverity: info` (the default) passes every event, `error` only errors;
 * - an event source matches on `kind`, `namespace` (default the Alert's) and `name`, where `*`
 *   is any run of characters (`name: '*'` is every object, and only then `matchLabels` applies,
 *   all labels of the involved object);
 * - `inclusionList` (when given) must match the message with one of its regular expressions,
 *   `exclusionList` must match with none;
 * - suspended Alerts and Providers send nothing.
 */
import {
  type AlertSpec,
  byKind,
  type Config,
  type ConfigObject,
  type ProviderSpec,
  parseDuration,
} from "../config/index.js";
import { SluiceError } from "../core/index.js";
import type { NotifyInput } from "./types.js";

export type ProviderType = ProviderSpec["type"];

export interface ResolvedProvider {
  /** `namespace/name`. */
  key: string;
  type: ProviderType;
  /** Secret `address` over `spec.address`. */
  address: string;
  channel?: string;
  username?: string;
  /** Secret `token` (generic-hmac's key, slack's bot token, the forges' API token). */
  token?: string;
  /** Secret `headers`: `Name: value` lines, sent with every request. */
  headers: Record<string, string>;
  timeoutMs: number;
  suspended: boolean;
}

export interface EventSource {
  kind: string;
  name: string;
  namespace: string;
  matchLabels?: Record<string, string>;
}

export interface ResolvedAlert {
  key: string;
  provider: string;
  severity: "info" | "error";
  sources: EventSource[];
  inclusion: RegExp[];
  exclusion: RegExp[];
  summary?: string;
  suspended: boolean;
}

const DEFAULT_TIMEOUT_MS = 15_000;

function secretOf(config: Config, namespace: string, name: string, origin: string): Record<string, string> {
  const s = config.supporting.find(
    (x) => x.kind === "Secret" && x.metadata.namespace === namespace && x.metadata.name === name,
  );
  if (!s)
    throw new SluiceError(
      "ConfigInvalid",
      `${origin}: Secret ${namespace}/${name} is referenced but not defined`,
      {
        hint: "define the Secret (address, token, headers) next to the Provider",
      },
    );
  return s.data;
}

/** Parses the Secret's `headers` value: one `Name: value` per line (Flux reads it as YAML). */
export function parseHeaders(text: string | undefined, origin: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim() || line.trim().startsWith("#")) continue;
    const i = line.indexOf(":");
    const name = i > 0 ? line.slice(0, i).trim() : "";
    if (!/^[A-Za-z0-9-]+$/.test(name))
      throw new SluiceError(
        "ConfigInvalid",
        `${origin}: the secret's headers: a line is not \`Name: value\``,
      );
    out[name] = line
      .slice(i + 1)
      .trim()
      .replace(/^(["'])(.*)\1$/, "$2");
  }
  return out;
}

export function resolveProvider(config: Config, p: ConfigObject<"Provider">): ResolvedProvider {
  const spec = p.spec as ProviderSpec;
  const key = `${p.metadata.namespace}/${p.metadata.name}`;
  const secret = spec.secretRef ? secretOf(config, p.metadata.namespace, spec.secretRef.name, p.origin) : {};
  const address = secret.address ?? spec.address ?? "";
  const where = `${p.origin}: Provider ${key}`;
  if (!address)
    throw new SluiceError("ConfigInvalid", `${where}: no address (spec.address or the secret's address)`);
  try {
    const u = new URL(address);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
  } catch {
    throw new SluiceError("ConfigInvalid", `${where}: the address is not an http(s) URL`);
  }
  if ((spec.type === "generic-hmac" || spec.type === "github" || spec.type === "gitlab") && !secret.token)
    throw new SluiceError("ConfigInvalid", `${where}: type ${spec.type} needs a token in its secret`, {
      hint: "add a Secret with the key `token` and reference it in spec.secretRef",
    });
  const timeoutMs = spec.timeout ? (parseDuration(spec.timeout) ?? DEFAULT_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
  const channel = spec.channel;
  const username = secret.username ?? spec.username;
  return {
    key,
    type: spec.type,
    address,
    ...(channel ? { channel } : {}),
    ...(username ? { username } : {}),
    ...(secret.token ? { token: secret.token } : {}),
    headers: parseHeaders(secret.headers, where),
    timeoutMs,
    suspended: spec.suspend ?? false,
  };
}

/** Flux's lists are Go (RE2) expressions: a leading `(?i)`, `(?s)`, `(?m)` group becomes a flag. */
function compile(list: string[] | undefined, where: string): RegExp[] {
  return (list ?? []).map((src, i) => {
    try {
      const m = /^\(\?([ims]+)\)/.exec(src);
      return m ? new RegExp(src.slice(m[0].length), [...new Set(m[1])].join("")) : new RegExp(src);
    } catch (e) {
      throw new SluiceError(
        "ConfigInvalid",
        `${where}[${i}]: not a regular expression: ${(e as Error).message}`,
      );
    }
  });
}

export function resolveAlert(a: ConfigObject<"Alert">): ResolvedAlert {
  const spec = a.spec as AlertSpec;
  const ns = a.metadata.namespace;
  const where = `${a.origin}: Alert ${ns}/${a.metadata.name}`;
  return {
    key: `${ns}/${a.metadata.name}`,
    provider: `${ns}/${spec.providerRef.name}`,
    severity: spec.eventSeverity ?? "info",
    sources: spec.eventSources.map((s) => ({
      kind: s.kind,
      name: s.name,
      namespace: s.namespace ?? ns,
      ...(s.matchLabels ? { matchLabels: s.matchLabels } : {}),
    })),
    inclusion: compile(spec.inclusionList, `${where}: spec.inclusionList`),
    exclusion: compile(spec.exclusionList, `${where}: spec.exclusionList`),
    ...(spec.summary ? { summary: spec.summary } : {}),
    suspended: spec.suspend ?? false,
  };
}

/** Every Provider and Alert of a configuration; an Alert whose Provider is missing is an error. */
export function resolveNotifications(config: Config): {
  providers: ResolvedProvider[];
  alerts: ResolvedAlert[];
} {
  const providers = byKind(config, "Provider").map((p) => resolveProvider(config, p));
  const alerts = byKind(config, "Alert").map((a) => {
    const r = resolveAlert(a);
    if (!providers.some((p) => p.key === r.provider))
      throw new SluiceError(
        "ConfigInvalid",
        `${a.origin}: Alert ${r.key} refers to Provider ${r.provider}, which is not defined`,
      );
    return r;
  });
  return { providers, alerts };
}

function glob(pattern: string, value: string): boolean {
  if (pattern === "*") return true;
  if (!pattern.includes("*")) return pattern === value;
  const re = new RegExp(
    `^${pattern
      .split("*")
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
  return re.test(value);
}

export function sourceMatches(s: EventSource, ev: NotifyInput): boolean {
  const o = ev.involvedObject;
  if (s.kind !== o.kind && s.kind !== "*") return false;
  if (s.namespace !== o.namespace && s.namespace !== "*") return false;
  if (!glob(s.name, o.name)) return false;
  if (s.name === "*" && s.matchLabels) {
    const labels = ev.objectLabels ?? {};
    return Object.entries(s.matchLabels).every(([k, v]) => labels[k] === v);
  }
  return true;
}

/** Why an alert does not take an event, or undefined when it does. */
export function alertRejects(a: ResolvedAlert, ev: NotifyInput): string | undefined {
  if (a.suspended) return "alert suspended";
  if (a.severity === "error" && ev.severity !== "error") return "severity";
  if (!a.sources.some((s) => sourceMatches(s, ev))) return "source";
  if (a.inclusion.length && !a.inclusion.some((r) => r.test(ev.message))) return "inclusionList";
  if (a.exclusion.some((r) => r.test(ev.message))) return "exclusionList";
  return undefined;
}

/**
 * The `github`/`gitlab` Provider whose address is this repository (`owner/repo`, a GitLab
 * project path, or its numeric id): where pull-request plans are posted with that Provider's token.
 */
export function providerForRepository(
  providers: readonly ResolvedProvider[],
  repo: { forge: "github" | "gitlab"; repository: string; projectId?: number },
): ResolvedProvider | undefined {
  return providers.find((p) => {
    if (p.type !== repo.forge || p.suspended) return false;
    let path: string;
    try {
      path = new URL(p.address).pathname.replace(/\.git$/, "").replace(/^\/+|\/+$/g, "");
    } catch {
      return false;
    }
    return (
      decodeURIComponent(path).toLowerCase() === repo.repository.toLowerCase() ||
      (repo.projectId !== undefined && path === String(repo.projectId))
    );
  });
}
