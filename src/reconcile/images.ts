/**
 * The agent's image loop — Flux's image-reflector and image-automation controllers in one place:
 *
 * 1. every `ImageRepository` is scanned at its interval (tags after the exclusion list, stored);
 * 2. every `ImagePolicy` on it picks its latest image; a change is an event;
 * 3. every `ImageUpdateAutomation` whose policies moved (or whose interval came) rewrites the
 *    marked fields in its GitRepository, commits and pushes (rebasing when someone else pushed;
 *    a pull request instead with `push.pullRequest`), and the agent then lists that source so the
 *    environment runs the new image without waiting for the source's interval.
 *
 * Failures (registry down, push rejected) are events and statuses and are retried at the next
 * interval; nothing here ever blocks unit reconciles. State survives restarts in the store's KV
 * (`images`, `policies`, `automations` namespaces), so `sluice get images` and the dashboard show
 * the last results at once.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import {
  type AutomationObject,
  type GitAuth,
  type OpenPullRequest,
  runAutomation,
} from "../automation/index.js";
import { byKind, type Config, type ConfigObject, parseDuration } from "../config/index.js";
import { errorMessage } from "../core/index.js";
import { type DockerConfig, type ScanOptions, scanRepository, selectLatest } from "../images/index.js";
import { forgeFor, providerForRepository, resolveNotifications } from "../notify/index.js";
import type { GitRepositorySpec } from "../source/index.js";
import type { Store } from "../store/index.js";

export interface RepositoryStatus {
  name: string;
  image: string;
  ok: boolean;
  message: string;
  count: number;
  latestTags: string[];
  scannedAt: string | null;
}
export interface PolicyStatus {
  name: string;
  repository: string;
  ok: boolean;
  message: string;
  latestImage: string | null;
  previousImage: string | null;
}
export interface AutomationStatus {
  name: string;
  source: string;
  ok: boolean;
  message: string;
  lastRunAt: string | null;
  lastCommit: string | null;
  lastPushed: string | null;
}
export interface ImageStatus {
  repositories: RepositoryStatus[];
  policies: PolicyStatus[];
  automations: AutomationStatus[];
}

export interface ImageLoopOptions {
  store: Store;
  log: Logger;
  /** Where automations keep their working copies. */
  workDir: string;
  config: () => Config;
  /** The GitRepository spec (URL, credentials) by `namespace/name`. */
  source: (key: string) => GitRepositorySpec | undefined;
  /** Secret data by namespace/name from the configuration. */
  secret: (namespace: string, name: string) => Record<string, string> | undefined;
  event: (severity: "info" | "warning" | "error", reason: string, message: string) => void;
  /** An automation pushed to a source: list it now. */
  pushed: (sourceKey: string) => void;
  /** Registry options for tests (timeouts). */
  registry?: Partial<ScanOptions>;
}

const key = (o: { metadata: { namespace: string; name: string } }) =>
  `${o.metadata.namespace}/${o.metadata.name}`;

export class ImageLoop {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly busy = new Map<string, Promise<void>>();
  private readonly queued = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(private readonly opts: ImageLoopOptions) {}

  /** Starts the scan and automation timers for the current configuration (a first pass at once). */
  start(): void {
    const config = this.opts.config();
    for (const r of byKind(config, "ImageRepository")) {
      if (r.spec.suspend) continue;
      this.every(`scan:${key(r)}`, parseDuration(r.spec.interval) ?? 300_000, () => this.scan(key(r)));
    }
    for (const a of byKind(config, "ImageUpdateAutomation")) {
      if (a.spec.suspend) continue;
      this.every(`auto:${key(a)}`, parseDuration(a.spec.interval) ?? 300_000, () => this.automate(key(a)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.busy.values()]);
  }

  /** Waits for scans and automation runs in flight. */
  async idle(): Promise<void> {
    while (this.busy.size || this.queued.size)
      await Promise.allSettled([...this.busy.values(), ...this.queued.values()]);
  }

  private every(id: string, ms: number, fn: () => Promise<void>): void {
    const tick = () => {
      if (this.stopped) return;
      void this.once(id, fn).finally(() => {
        if (this.stopped) return;
        const t = setTimeout(tick, ms);
        t.unref();
        this.timers.set(id, t);
      });
    };
    tick();
  }

  /**
   * Runs `fn`; while a run of `id` is in flight, one more run is queued after it (what it does may
   * already be stale: a scan finished meanwhile) and further calls share that one.
   */
  private once(id: string, fn: () => Promise<void>): Promise<void> {
    const cur = this.busy.get(id);
    if (cur) {
      const queued = this.queued.get(id);
      if (queued) return queued;
      const next = cur.then(() => {
        this.queued.delete(id);
        return this.once(id, fn);
      });
      this.queued.set(id, next);
      return next;
    }
    const p = fn()
      .catch((e) => this.opts.log.error({ id, err: errorMessage(e) }, "image loop step failed"))
      .finally(() => this.busy.delete(id));
    this.busy.set(id, p);
    return p;
  }

  // --- scanning and policies ------------------------------------------------------------------

  /** Scans one ImageRepository (`namespace/name`) now and re-evaluates its policies. */
  scan(repo: string): Promise<void> {
    return this.once(`scan-now:${repo}`, () => this.doScan(repo));
  }

  private async doScan(repoKey: string): Promise<void> {
    const config = this.opts.config();
    const repo = byKind(config, "ImageRepository").find((r) => key(r) === repoKey);
    if (!repo) return;
    const prior = this.read<RepositoryStatus>("images", repoKey);
    let tags: string[] = [];
    try {
      const dockerConfig = this.dockerConfig(repo);
      const timeout = repo.spec.timeout ? parseDuration(repo.spec.timeout) : undefined;
      const r = await scanRepository(repo.spec, {
        subject: `ImageRepository/${repoKey}`,
        ...(dockerConfig ? { dockerConfig } : {}),
        ...(timeout ? { timeoutMs: timeout } : {}),
        ...this.opts.registry,
      });
      tags = r.tags;
      this.write<RepositoryStatus>("images", repoKey, {
        name: repoKey,
        image: repo.spec.image,
        ok: true,
        message: `successful scan: found ${r.count} tags`,
        count: r.count,
        latestTags: r.latestTags,
        scannedAt: r.scannedAt,
      });
      this.opts.store.setKV("image-tags", repoKey, JSON.stringify(r.tags));
      if (!prior?.ok || prior.count !== r.count)
        this.opts.event("info", "ImageScanSucceeded", `ImageRepository ${repoKey}: found ${r.count} tags`);
    } catch (e) {
      const message = errorMessage(e);
      this.write<RepositoryStatus>("images", repoKey, {
        name: repoKey,
        image: repo.spec.image,
        ok: false,
        message,
        count: prior?.count ?? 0,
        latestTags: prior?.latestTags ?? [],
        scannedAt: prior?.scannedAt ?? null,
      });
      if (prior?.message !== message)
        this.opts.event("error", "ImageScanFailed", `ImageRepository ${repoKey}: ${message}`);
      return;
    }
    let moved = false;
    for (const pol of byKind(config, "ImagePolicy")) {
      const ref = `${pol.spec.imageRepositoryRef.namespace ?? pol.metadata.namespace}/${pol.spec.imageRepositoryRef.name}`;
      if (ref !== repoKey) continue;
      moved = this.evaluate(pol, repo.spec.image, tags) || moved;
    }
    // New images: run the automations now rather than at their next interval.
    if (moved)
      for (const a of byKind(config, "ImageUpdateAutomation"))
        if (!a.spec.suspend) void this.automate(key(a));
  }

  /** Picks a policy's latest image; true when it changed. */
  private evaluate(pol: ConfigObject<"ImagePolicy">, image: string, tags: string[]): boolean {
    const k = key(pol);
    const prior = this.read<PolicyStatus>("policies", k);
    try {
      const latest = selectLatest(pol.spec, tags, { image, subject: `ImagePolicy/${k}` });
      const changed = prior?.latestImage !== latest.image;
      this.write<PolicyStatus>("policies", k, {
        name: k,
        repository: `${pol.spec.imageRepositoryRef.namespace ?? pol.metadata.namespace}/${pol.spec.imageRepositoryRef.name}`,
        ok: true,
        message: `Latest image tag for ${image} resolved to ${latest.tag}`,
        latestImage: latest.image,
        previousImage: changed ? (prior?.latestImage ?? null) : (prior?.previousImage ?? null),
      });
      if (changed)
        this.opts.event(
          "info",
          "ImagePolicyUpdated",
          `ImagePolicy ${k}: latest image ${prior?.latestImage ? `changed from ${prior.latestImage} ` : ""}to ${latest.image}`,
        );
      return changed;
    } catch (e) {
      const message = errorMessage(e);
      this.write<PolicyStatus>("policies", k, {
        name: k,
        repository: `${pol.spec.imageRepositoryRef.namespace ?? pol.metadata.namespace}/${pol.spec.imageRepositoryRef.name}`,
        ok: false,
        message,
        latestImage: prior?.latestImage ?? null,
        previousImage: prior?.previousImage ?? null,
      });
      if (prior?.message !== message)
        this.opts.event("error", "ImagePolicyFailed", `ImagePolicy ${k}: ${message}`);
      return false;
    }
  }

  // --- automation -----------------------------------------------------------------------------

  /** Runs one ImageUpdateAutomation (`namespace/name`) now. */
  automate(name: string): Promise<void> {
    return this.once(`auto-now:${name}`, () => this.doAutomate(name));
  }

  private async doAutomate(name: string): Promise<void> {
    const config = this.opts.config();
    const a = byKind(config, "ImageUpdateAutomation").find((x) => key(x) === name);
    if (!a) return;
    const srcKey = `${a.spec.sourceRef.namespace ?? a.metadata.namespace}/${a.spec.sourceRef.name}`;
    const spec = this.opts.source(srcKey);
    const prior = this.read<AutomationStatus>("automations", name);
    const base: AutomationStatus = {
      name,
      source: srcKey,
      ok: false,
      message: "",
      lastRunAt: new Date().toISOString(),
      lastCommit: prior?.lastCommit ?? null,
      lastPushed: prior?.lastPushed ?? null,
    };
    try {
      if (!spec) throw new Error(`GitRepository ${srcKey} is not configured`);
      const latest = new Map<string, { image: string }>();
      const selector = a.spec.policySelector?.matchLabels;
      for (const pol of byKind(config, "ImagePolicy")) {
        if (selector && !Object.entries(selector).every(([k, v]) => pol.metadata.labels?.[k] === v)) continue;
        const st = this.read<PolicyStatus>("policies", key(pol));
        if (st?.latestImage)
          latest.set(`${pol.metadata.namespace}:${pol.metadata.name}`, { image: st.latestImage });
      }
      const auth: GitAuth = {};
      if (spec.secret?.username) auth.username = spec.secret.username;
      if (spec.secret?.password) auth.password = spec.secret.password;
      if (spec.secret?.bearerToken) auth.bearerToken = spec.secret.bearerToken;
      const openPullRequest = this.pullRequestOpener(config, spec.url);
      const r = await runAutomation({
        automation: a as AutomationObject,
        repoUrl: spec.url,
        ...(spec.ref?.branch ? { sourceBranch: spec.ref.branch } : {}),
        latest,
        workDir: join(this.opts.workDir, name.replace("/", "_")),
        ...(Object.keys(auth).length ? { auth } : {}),
        ...(openPullRequest ? { openPullRequest } : {}),
        log: {
          info: (o, m) => this.opts.log.info({ automation: name, ...o }, m),
          warn: (o, m) => this.opts.log.warn({ automation: name, ...o }, m),
        },
      });
      if (r.commit) {
        base.lastCommit = r.commit;
        if (r.pushed) base.lastPushed = new Date().toISOString();
        const images = [...new Set(r.updates.map((u) => u.to))].join(", ");
        this.opts.event(
          "info",
          "ImageUpdateCommitted",
          `ImageUpdateAutomation ${name}: committed ${r.commit.slice(0, 10)} to ${r.branch} (${images})${r.pullRequest ? `; pull request ${r.pullRequest.url}` : r.pushed ? "; pushed" : ""}`,
        );
        if (r.pushed) this.opts.pushed(srcKey);
      }
      base.ok = true;
      base.message = r.commit
        ? `committed and ${r.pushed ? "pushed" : "kept"} ${r.commit.slice(0, 10)}`
        : "no updates made";
      this.write("automations", name, base);
    } catch (e) {
      base.message = errorMessage(e);
      this.write("automations", name, base);
      if (prior?.message !== base.message)
        this.opts.event("error", "ImageUpdateFailed", `ImageUpdateAutomation ${name}: ${base.message}`);
    }
  }

  /** `push.pullRequest` goes through the `github`/`gitlab` Provider that names the repository. */
  private pullRequestOpener(config: Config, repoUrl: string): OpenPullRequest | undefined {
    let repository: string;
    try {
      repository = new URL(repoUrl).pathname.replace(/\.git$/, "").replace(/^\/+|\/+$/g, "");
    } catch {
      return undefined;
    }
    const providers = resolveNotifications(config).providers;
    const p =
      providerForRepository(providers, { forge: "github", repository }) ??
      providerForRepository(providers, { forge: "gitlab", repository });
    if (!p) return undefined;
    return async (req) => {
      const pr = await forgeFor(p).openOrUpdatePullRequest({
        head: req.head,
        base: req.base,
        title: req.title,
        body: req.body,
      });
      return { url: pr.url };
    };
  }

  // --- status -----------------------------------------------------------------------------------

  /** What `sluice get images` and the dashboard show (like `flux get image all`). */
  status(): ImageStatus {
    const config = this.opts.config();
    const list = <T>(
      ns: string,
      objs: { metadata: { namespace: string; name: string } }[],
      empty: (k: string) => T,
    ) => objs.map((o) => this.read<T>(ns, key(o)) ?? empty(key(o)));
    return {
      repositories: list<RepositoryStatus>("images", byKind(config, "ImageRepository"), (k) => ({
        name: k,
        image: byKind(config, "ImageRepository").find((r) => key(r) === k)?.spec.image ?? "",
        ok: false,
        message: "not scanned yet",
        count: 0,
        latestTags: [],
        scannedAt: null,
      })),
      policies: list<PolicyStatus>("policies", byKind(config, "ImagePolicy"), (k) => ({
        name: k,
        repository: "",
        ok: false,
        message: "waiting for a scan",
        latestImage: null,
        previousImage: null,
      })),
      automations: list<AutomationStatus>("automations", byKind(config, "ImageUpdateAutomation"), (k) => ({
        name: k,
        source: "",
        ok: false,
        message: "not run yet",
        lastRunAt: null,
        lastCommit: null,
        lastPushed: null,
      })),
    };
  }

  private dockerConfig(repo: ConfigObject<"ImageRepository">): DockerConfig | undefined {
    if (!repo.spec.secretRef) return undefined;
    const data = this.opts.secret(repo.metadata.namespace, repo.spec.secretRef.name);
    const text = data?.[".dockerconfigjson"];
    if (!text)
      throw new Error(
        `secretRef ${repo.spec.secretRef.name} has no .dockerconfigjson key (a kubernetes.io/dockerconfigjson Secret)`,
      );
    try {
      return JSON.parse(text) as DockerConfig;
    } catch {
      throw new Error(`secretRef ${repo.spec.secretRef.name}: .dockerconfigjson is not JSON`);
    }
  }

  private read<T>(ns: string, k: string): T | undefined {
    const v = this.opts.store.getKV(ns, k);
    return v ? (JSON.parse(v) as T) : undefined;
  }

  private write<T>(ns: string, k: string, v: T): void {
    this.opts.store.setKV(ns, k, JSON.stringify(v));
  }
}
