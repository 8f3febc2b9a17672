/**
 * Builds on push (seed 003), run by the agent: after each listing of a source, every `Build` on it
 * whose triggers match a branch that moved (event `push`) or a new tag (event `tag`) builds that
 * commit with podman and pushes its tags. One build per Build at a time; a commit is built once
 * (a later tag on an already built commit builds again, because the tag adds an image tag).
 *
 * Every build is recorded in the store (KV `builds`: commit, tags, result, the last log lines;
 * KV `build-logs`: the whole log, bounded), its output streams to listeners as it comes, and units
 * that depend on the Build (`dependsOn: [{kind: Build, name}]`) wait for the build of their
 * commit — a failed build holds them back with its last lines.
 */
import { join } from "node:path";
import { byKind, type Config, type ConfigObject } from "../config/index.js";
import { errorMessage, SluiceError } from "../core/index.js";
import { matchBranch } from "../envs/index.js";
import type { Artifact, GitRepositorySpec } from "../source/index.js";
import type { Store } from "../store/index.js";
import type { Podman } from "../targets/local/index.js";
import { buildImage } from "./build.js";
import { expandTags } from "./tags.js";

export type BuildResultState = "running" | "succeeded" | "failed";

export interface BuildRecord {
  build: string;
  commit: string;
  /** What started it: `push main`, `tag v1.0.2`, `manual`. */
  trigger: string;
  tags: string[];
  images: string[];
  result: BuildResultState;
  startedAt: string;
  endedAt: string | null;
  /** The last lines of the log (the reason when it failed). */
  lastLines: string[];
}

export interface BuildLoopOptions {
  store: Store;
  podman: () => Promise<Podman>;
  config: () => Config;
  source: (key: string) => GitRepositorySpec | undefined;
  /** Fetches a ref of a source into a snapshot. */
  fetch: (source: string, spec: GitRepositorySpec) => Promise<Artifact>;
  secret: (namespace: string, name: string) => Record<string, string> | undefined;
  event: (severity: "info" | "warning" | "error", reason: string, message: string) => void;
  /** A build finished (units waiting on it can go), or log output arrived. */
  changed: (r: BuildRecord, logChunk?: string) => void;
}

const LOG_LIMIT = 256 * 1024;
const LAST_LINES = 10;
const key = (o: { metadata: { namespace: string; name: string } }) =>
  `${o.metadata.namespace}/${o.metadata.name}`;

export class BuildLoop {
  private readonly running = new Map<string, Promise<BuildRecord>>();
  private readonly seenTags = new Map<string, Map<string, string>>();

  constructor(private readonly opts: BuildLoopOptions) {}

  /** The Builds of a source, for a listing. */
  buildsOf(source: string): ConfigObject<"Build">[] {
    return byKind(this.opts.config(), "Build").filter(
      (b) => !b.spec.suspend && `${b.metadata.namespace}/${b.spec.sourceRef.name}` === source,
    );
  }

  /** Whether any Build on the source has a `tag` trigger (then the agent lists tags too). */
  wantsTags(source: string): boolean {
    return this.buildsOf(source).some((b) => b.spec.triggers.some((t) => t.events.includes("tag")));
  }

  /**
   * A source was listed: start the builds its triggers ask for (in the background). `tags` is
   * undefined when tags were not listed.
   */
  onListing(source: string, branches: Map<string, string>, tags?: Map<string, string>): void {
    const firstTags = !this.seenTags.has(source);
    const priorTags = this.seenTags.get(source) ?? new Map<string, string>();
    if (tags) this.seenTags.set(source, tags);
    for (const b of this.buildsOf(source)) {
      for (const t of b.spec.triggers) {
        if (t.events.includes("push")) {
          for (const [branch, commit] of branches) {
            if (!matches(t.refs, branch) || this.record(key(b), commit)) continue;
            void this.start(b, commit, { branch }, `push ${branch}`);
          }
        }
        if (t.events.includes("tag") && tags) {
          for (const [tag, commit] of tags) {
            if (!matches(t.refs, tag) || priorTags.get(tag) === commit) continue;
            const rec = this.record(key(b), commit);
            // On the first listing after a start, only tags whose commit was never built with them.
            if (firstTags && rec?.trigger === `tag ${tag}`) continue;
            if (rec?.trigger === `tag ${tag}` && rec.result === "succeeded") continue;
            void this.start(b, commit, { tag }, `tag ${tag}`);
          }
        }
      }
    }
  }

  /**
   * A pull request was opened, updated or reopened: Builds with a `pull_request` trigger whose
   * refs match its base build its head (fetched from the forge's pull-request ref).
   */
  onPullRequest(source: string, pr: { number: number; baseRef: string; headFetchRef: string }): void {
    for (const b of this.buildsOf(source)) {
      if (!b.spec.triggers.some((t) => t.events.includes("pull_request") && matches(t.refs, pr.baseRef)))
        continue;
      void this.start(b, undefined, { name: pr.headFetchRef }, `pull request ${pr.number}`);
    }
  }

  /** Builds a Build at a ref now (`sluice build NAME --ref REF`, the API). */
  async buildNow(name: string, ref: { branch: string } | { tag: string }): Promise<BuildRecord> {
    const b = byKind(this.opts.config(), "Build").find((x) => x.metadata.name === name || key(x) === name);
    if (!b) throw new SluiceError("NotFound", `Build ${name} is not configured`);
    return this.start(b, undefined, ref, "manual");
  }

  /** The latest build of a Build at a commit, if any. */
  record(build: string, commit: string): BuildRecord | undefined {
    const v = this.opts.store.getKV("builds", `${build}@${commit}`);
    return v ? (JSON.parse(v) as BuildRecord) : undefined;
  }

  /** The newest build of every Build. */
  list(): BuildRecord[] {
    return this.opts.store
      .listKV("builds")
      .map((e) => JSON.parse(e.value) as BuildRecord)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  log(build: string, commit: string): string | undefined {
    return this.opts.store.getKV("build-logs", `${build}@${commit}`);
  }

  /**
   * What a unit waiting on `build` at `commit` sees: ok, waiting (why), or failed (why). A Build
   * whose triggers never match the branch does not hold the unit back.
   */
  gate(
    build: string,
    branch: string | null,
    commit: string | null,
  ): { ok: true } | { ok: false; why: string; failed: boolean } {
    const b = byKind(this.opts.config(), "Build").find((x) => x.metadata.name === build || key(x) === build);
    if (!b) return { ok: false, why: `Build ${build} is not configured`, failed: true };
    if (!commit) return { ok: true };
    const rec = this.record(key(b), commit);
    const triggered = b.spec.triggers.some(
      (t) => t.events.includes("push") && branch !== null && matches(t.refs, branch),
    );
    if (!rec)
      return triggered
        ? { ok: false, why: `waiting for Build ${build} of ${commit.slice(0, 10)}`, failed: false }
        : { ok: true };
    if (rec.result === "running")
      return { ok: false, why: `Build ${build} of ${commit.slice(0, 10)} is running`, failed: false };
    if (rec.result === "failed")
      return {
        ok: false,
        why: `Build ${build} of ${commit.slice(0, 10)} failed: ${rec.lastLines.slice(-3).join(" | ")}`,
        failed: true,
      };
    return { ok: true };
  }

  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running.values()]);
  }

  private start(
    b: ConfigObject<"Build">,
    commit: string | undefined,
    ref: { branch: string } | { tag: string } | { name: string },
    trigger: string,
  ): Promise<BuildRecord> {
    const k = key(b);
    // One build per Build at a time: the next waits for the one running.
    const prior = this.running.get(k) ?? Promise.resolve(undefined);
    const p = prior
      .catch(() => undefined)
      .then(() => this.run(b, commit, ref, trigger))
      .finally(() => {
        if (this.running.get(k) === p) this.running.delete(k);
      });
    this.running.set(k, p);
    return p;
  }

  private async run(
    b: ConfigObject<"Build">,
    expected: string | undefined,
    ref: { branch: string } | { tag: string } | { name: string },
    trigger: string,
  ): Promise<BuildRecord> {
    const k = key(b);
    const srcKey = `${b.metadata.namespace}/${b.spec.sourceRef.name}`;
    const spec = this.opts.source(srcKey);
    const rec: BuildRecord = {
      build: k,
      commit: expected ?? "",
      trigger,
      tags: [],
      images: [],
      result: "running",
      startedAt: new Date().toISOString(),
      endedAt: null,
      lastLines: [],
    };
    let log = "";
    const append = (chunk: string) => {
      log = (log + chunk).slice(-LOG_LIMIT);
      this.opts.changed(rec, chunk);
    };
    const save = () => {
      if (!rec.commit) return;
      this.opts.store.setKV("builds", `${k}@${rec.commit}`, JSON.stringify(rec));
      this.opts.store.setKV("build-logs", `${k}@${rec.commit}`, log);
    };
    try {
      if (!spec)
        throw new SluiceError("ConfigInvalid", `Build ${k}: GitRepository ${srcKey} is not configured`);
      const artifact = await this.opts.fetch(srcKey, { ...spec, ref });
      rec.commit = artifact.commit;
      const tag = "tag" in ref ? ref.tag : undefined;
      const branch = "branch" in ref ? ref.branch : undefined;
      rec.tags = expandTags(b.spec.tags, {
        commit: artifact.commit,
        ...(tag ? { gitTag: tag } : {}),
        ...(branch ? { branch } : {}),
      });
      // A pull request's head is not a release: it never moves `latest`.
      if ("name" in ref) rec.tags = rec.tags.filter((t) => t !== "latest");
      if (!rec.tags.length) rec.tags = [artifact.commit.slice(0, 10)];
      save();
      this.opts.event(
        "info",
        "BuildStarted",
        `Build ${k}: building ${artifact.commit.slice(0, 10)} (${trigger}) as ${rec.tags.join(", ")}`,
      );
      const secret = b.spec.secretRef
        ? this.opts.secret(b.metadata.namespace, b.spec.secretRef.name)
        : undefined;
      if (b.spec.secretRef && !secret?.[".dockerconfigjson"])
        throw new SluiceError(
          "ConfigInvalid",
          `Build ${k}: Secret ${b.spec.secretRef.name} has no .dockerconfigjson key (a kubernetes.io/dockerconfigjson Secret)`,
        );
      const podman = await this.opts.podman();
      const contextDir = join(artifact.dir, b.spec.context);
      const r = await buildImage(podman, {
        contextDir,
        ...(b.spec.containerfile ? { containerfile: join(contextDir, b.spec.containerfile) } : {}),
        repository: b.spec.image,
        tags: rec.tags,
        push: true,
        tlsVerify: !b.spec.insecure,
        ...(secret?.[".dockerconfigjson"] ? { authFile: secret[".dockerconfigjson"] } : {}),
        onProgress: (line) => append(`${line}\n`),
        onOutput: append,
      });
      rec.images = r.images;
      rec.result = "succeeded";
      this.opts.event(
        "info",
        "BuildSucceeded",
        `Build ${k}: ${r.images.join(", ")} pushed (${Math.round(r.ms / 1000)} s)`,
      );
    } catch (e) {
      rec.result = "failed";
      append(`${errorMessage(e)}\n`);
      this.opts.event("error", "BuildFailed", `Build ${k} (${trigger}): ${errorMessage(e)}`);
    }
    rec.endedAt = new Date().toISOString();
    rec.lastLines = lastLines(log, LAST_LINES);
    save();
    this.opts.changed(rec);
    return rec;
  }
}

function matches(patterns: string[] | undefined, ref: string): boolean {
  return !patterns?.length || patterns.some((p) => matchBranch(p, ref));
}

function lastLines(text: string, n: number): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trimEnd())
    .filter(Boolean)
    .slice(-n);
}
