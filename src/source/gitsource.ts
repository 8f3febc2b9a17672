/**
 * Git sources: resolve a GitRepository's ref to a commit, fetch it with the real git into a per-source
 * bare cache (shallow, depth 1), and materialise the commit's tree as a read-only snapshot directory
 * `<cacheDir>/snapshots/<commit>` shared by every source and environment at that commit.
 *
 * The algorithm, per fetch:
 * 1. Check the URL (scheme, `<transport>::` helpers, host allow-list, link-local/metadata addresses).
 * 2. Resolve the ref with one `git ls-remote` (cheap: no objects move). A pinned commit needs no
 *    network at all when its snapshot exists.
 * 3. If the snapshot for that commit exists, return it: an unchanged branch costs one round trip.
 * 4. Otherwise fetch the ref at depth 1 into the cache (serialised per cache), list the tree, apply
 *    `spec.ignore` and `.sourceignore` files and the size limits, check the files out through a
 *    private index into a temporary directory, make the files read-only and rename the directory
 *    into place. A crash leaves a `.tmp-*` directory that `gc` removes, never a half snapshot.
 *
 * Every git call runs with an argument array, a scrubbed environment, hardened config (no `ext::`,
 * no submodules, no redirects, fsck on fetch) and a time limit; credentials go in an Authorization
 * header passed through the environment, and every message is stripped of URL userinfo and secrets.
 */
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SluiceError } from "../core/index.js";
import { GitRunError, type GitRunOptions, hardeningConfig, runGit } from "./_git.js";
import { IgnoreMatcher } from "./_ignore.js";
import { pickSemverTag } from "./_semver.js";
import { slugifyBranch } from "./_slug.js";
import { checkSourceUrl, type ParsedSourceUrl, redactUrl, redactUrls } from "./_url.js";

export interface GitRepositorySpec {
  url: string;
  /** Precedence as in Flux: commit > name > semver > tag > branch; none = the remote's default branch. */
  ref?: { branch?: string; tag?: string; semver?: string; commit?: string; name?: string };
  secret?: {
    username?: string;
    password?: string;
    bearerToken?: string;
    identity?: string;
    knownHosts?: string;
  };
  /** gitignore-syntax exclusions (Flux `spec.ignore`), applied with the repository's `.sourceignore` files. */
  ignore?: string;
  /** Per git call; default 60 s. */
  timeoutMs?: number;
}

export interface Artifact {
  /** `main@sha1:<40 hex>` for branches, `v1.2.3@sha1:…` for tags, `sha1:…` for a bare commit. */
  revision: string;
  commit: string;
  /** Read-only snapshot of the commit's tree (files are mode 0444/0555). */
  dir: string;
}

export interface FetchObservation {
  source: string;
  durationMs: number;
  ok: boolean;
  /** True when the snapshot already existed and nothing was downloaded. */
  cached: boolean;
}

export interface GitSourceOptions {
  cacheDir: string;
  /** When set, only these hosts (exact, or `*.example.com`) may be fetched from. */
  allowedHosts?: readonly string[];
  /** Allow link-local and cloud metadata addresses (refused by default: SSRF). */
  allowLinkLocal?: boolean;
  /** Allow `file://` URLs (off by default: a repository could otherwise read any local repository). */
  allowFileUrls?: boolean;
  /** Refuse a commit with more files than this (default 100 000). */
  maxFiles?: number;
  /** Refuse a commit whose files add up to more than this (default 1 GiB). */
  maxBytes?: number;
  /** Called after every fetch (for metrics). */
  onFetch?: (o: FetchObservation) => void;
}

const DEFAULT_TIMEOUT = 60_000;
const HEX40 = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

interface ResolvedRef {
  /** Ref to fetch (full name), or a commit id. */
  fetch: string;
  /** Revision label before `@sha1:`; empty for a bare commit. */
  label: string;
  /** Commit the ref points at (from ls-remote), when known before fetching. */
  commit?: string;
  /** For a pinned commit: what to fetch (with history) when the server refuses a want by id. */
  fallback?: string;
}

function invalidRef(field: string, value: string): SluiceError {
  return new SluiceError("ConfigInvalid", `invalid spec.ref.${field} ${JSON.stringify(value)}`, {
    hint: "Use a valid Git ref name (no spaces, '..', '~', '^', ':', '?', '*', '[', '\\', and not starting with '-').",
  });
}

/** A subset of `git check-ref-format`: enough to keep names from being read as options or patterns. */
export function isSafeRefName(value: string): boolean {
  return !(
    value === "" ||
    value.length > 255 ||
    value.startsWith("-") ||
    value.startsWith("/") ||
    value.endsWith("/") ||
    value.endsWith(".") ||
    value.endsWith(".lock") ||
    value.includes("..") ||
    value.includes("//") ||
    value.includes("@{") ||
    /[\x00-\x20\x7f~^:?*[\\]/.test(value)
  );
}

function checkRefName(field: string, value: string): string {
  if (!isSafeRefName(value)) throw invalidRef(field, value);
  return value;
}

function parseLsRemote(out: string): { refs: Map<string, string>; symrefs: Map<string, string> } {
  const refs = new Map<string, string>();
  const symrefs = new Map<string, string>();
  for (const line of out.split("\n")) {
    if (line.startsWith("ref: ")) {
      const [target = "", name = ""] = line.slice(5).split("\t");
      symrefs.set(name, target);
      continue;
    }
    const tab = line.indexOf("\t");
    if (tab <= 0) continue;
    const sha = line.slice(0, tab);
    if (HEX40.test(sha)) refs.set(line.slice(tab + 1), sha);
  }
  return { refs, symrefs };
}

function hashOf(s: string, n = 12): string {
  return createHash("sha256").update(s).digest("hex").slice(0, n);
}

interface Auth {
  secretConfig: [string, string][];
  env: Record<string, string>;
  secrets: string[];
  cleanup: () => Promise<void>;
}

export class GitSource {
  private readonly cacheDir: string;
  private readonly snapshotsDir: string;
  private readonly reposDir: string;
  private readonly tmpDir: string;
  private readonly opts: GitSourceOptions;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly inflight = new Set<string>();

  constructor(opts: GitSourceOptions) {
    this.opts = opts;
    this.cacheDir = opts.cacheDir;
    this.snapshotsDir = join(this.cacheDir, "snapshots");
    this.reposDir = join(this.cacheDir, "repos");
    this.tmpDir = join(this.cacheDir, "tmp");
  }

  /**
   * Fetches the spec's ref and returns its snapshot (reused when it exists).
   * @throws SluiceError ArtifactFailed (unreachable, auth, missing ref, limits), ConfigInvalid (bad ref).
   */
  async fetch(name: string, spec: GitRepositorySpec): Promise<Artifact> {
    const started = performance.now();
    try {
      return await this.fetchInner(name, spec, started);
    } catch (e) {
      this.observe(name, started, false, false);
      throw e;
    }
  }

  /** The repository's branches and their head commits (`git ls-remote --heads`, no objects fetched). */
  async listBranches(name: string, spec: GitRepositorySpec): Promise<Map<string, string>> {
    const url = await this.check(spec);
    const out = await this.withAuth(url, spec, (auth) =>
      this.git(["ls-remote", "--heads", "--", url.gitUrl], spec, auth, { maxStdout: 32 * 1024 * 1024 }),
    ).catch((e) => {
      throw this.wrap(e, "ls-remote", name, spec);
    });
    const branches = new Map<string, string>();
    for (const [ref, sha] of parseLsRemote(out.toString("utf8")).refs) {
      if (ref.startsWith("refs/heads/")) branches.set(ref.slice("refs/heads/".length), sha);
    }
    return branches;
  }

  /** The repository's tags and the commits they point at (annotated tags peeled; `git ls-remote --tags`). */
  async listTags(name: string, spec: GitRepositorySpec): Promise<Map<string, string>> {
    const url = await this.check(spec);
    const out = await this.withAuth(url, spec, (auth) =>
      this.git(["ls-remote", "--tags", "--", url.gitUrl], spec, auth, { maxStdout: 32 * 1024 * 1024 }),
    ).catch((e) => {
      throw this.wrap(e, "ls-remote", name, spec);
    });
    const tags = new Map<string, string>();
    const peeled = new Map<string, string>();
    for (const [ref, sha] of parseLsRemote(out.toString("utf8")).refs) {
      if (!ref.startsWith("refs/tags/")) continue;
      const t = ref.slice("refs/tags/".length);
      if (t.endsWith("^{}")) peeled.set(t.slice(0, -3), sha);
      else tags.set(t, sha);
    }
    for (const [t, sha] of peeled) tags.set(t, sha);
    return tags;
  }

  /** Snapshot of one branch's head (for branch environments); other ref fields of the spec are ignored. */
  checkout(name: string, spec: GitRepositorySpec, branch: string): Promise<Artifact> {
    return this.fetch(name, { ...spec, ref: { branch } });
  }

  /**
   * Removes snapshots not named in `keep` (commit ids, revisions such as `main@sha1:…`, or snapshot
   * directories), leftovers of interrupted snapshots, and prunes unreachable objects in the caches.
   */
  async gc(keep: Set<string>): Promise<void> {
    const keepCommits = new Set<string>();
    for (const k of keep) {
      const m = /([0-9a-f]{40}(?:[0-9a-f]{24})?)(?:-[0-9a-f]+)?\/?$/.exec(k);
      if (m?.[1]) keepCommits.add(m[1]);
      keepCommits.add(k.replace(/\/+$/, "").split("/").pop() ?? k);
    }
    let entries: string[] = [];
    try {
      entries = await readdir(this.snapshotsDir);
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(this.snapshotsDir, entry);
      if (this.inflight.has(path)) continue;
      const commit = entry.split("-")[0] ?? entry;
      if (!entry.startsWith(".tmp-") && (keepCommits.has(entry) || keepCommits.has(commit))) continue;
      await rm(path, { recursive: true, force: true });
    }
    // Private index files and SSH key copies of running fetches live in tmp/: only stale ones go.
    for (const t of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const p = join(this.tmpDir, t);
      const st = await stat(p).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 15 * 60_000) await rm(p, { recursive: true, force: true });
    }
    let repos: string[] = [];
    try {
      repos = await readdir(this.reposDir);
    } catch {
      return;
    }
    for (const r of repos) {
      const dir = join(this.reposDir, r);
      await this.locked(dir, () =>
        runGit(["--git-dir", dir, ...hardeningConfig(false), "gc", "--quiet", "--prune=now"], {
          timeoutMs: 5 * 60_000,
        }).catch(() => {}),
      );
    }
  }

  // ---------------------------------------------------------------------------------------------

  private observe(source: string, started: number, ok: boolean, cached: boolean): void {
    try {
      this.opts.onFetch?.({ source, durationMs: performance.now() - started, ok, cached });
    } catch {
      // metrics must never break a fetch
    }
  }

  private async fetchInner(name: string, spec: GitRepositorySpec, started: number): Promise<Artifact> {
    const url = await this.check(spec);
    const ignoreKey = spec.ignore ? `-${hashOf(spec.ignore, 8)}` : "";
    return this.withAuth(url, spec, async (auth) => {
      let resolved: ResolvedRef;
      try {
        resolved = await this.resolve(url, spec, auth);
      } catch (e) {
        throw this.wrap(e, "fetch", name, spec, auth.secrets);
      }
      const revision = (commit: string) =>
        resolved.label ? `${resolved.label}@sha1:${commit}` : `sha1:${commit}`;
      if (resolved.commit) {
        const dir = join(this.snapshotsDir, `${resolved.commit}${ignoreKey}`);
        if (await exists(dir)) {
          this.observe(name, started, true, true);
          return { revision: revision(resolved.commit), commit: resolved.commit, dir };
        }
      }
      const repoDir = join(this.reposDir, `${slugifyBranch(name).slice(0, 40)}-${hashOf(url.gitUrl)}.git`);
      const commit = await this.locked(repoDir, async () => {
        try {
          return await this.fetchInto(repoDir, url, resolved, spec, auth);
        } catch (e) {
          throw this.wrap(e, "fetch", name, spec, auth.secrets);
        }
      });
      const dir = await this.snapshot(repoDir, commit, ignoreKey, spec);
      this.observe(name, started, true, false);
      return { revision: revision(commit), commit, dir };
    });
  }

  private check(spec: GitRepositorySpec): Promise<ParsedSourceUrl> {
    return checkSourceUrl(spec.url, {
      allowFile: this.opts.allowFileUrls === true,
      allowLinkLocal: this.opts.allowLinkLocal === true,
      ...(this.opts.allowedHosts ? { allowedHosts: this.opts.allowedHosts } : {}),
    });
  }

  private async resolve(url: ParsedSourceUrl, spec: GitRepositorySpec, auth: Auth): Promise<ResolvedRef> {
    const ref = spec.ref ?? {};
    const lsRemote = async (flags: string[], patterns: string[] = []) => {
      const out = await this.git(["ls-remote", ...flags, "--", url.gitUrl, ...patterns], spec, auth, {
        maxStdout: 32 * 1024 * 1024,
      });
      return parseLsRemote(out.toString("utf8"));
    };
    const missing = (what: string) =>
      new GitRunError(
        `couldn't find remote ref ${what}`,
        `fatal: couldn't find remote ref ${what}`,
        128,
        false,
      );

    if (ref.commit !== undefined) {
      const c = ref.commit.toLowerCase();
      if (!HEX40.test(c)) {
        throw new SluiceError(
          "ConfigInvalid",
          `spec.ref.commit ${JSON.stringify(ref.commit)} is not a full commit id`,
          {
            hint: "Give the full 40-character SHA-1.",
          },
        );
      }
      if (ref.branch !== undefined) {
        const b = checkRefName("branch", ref.branch);
        return { fetch: c, label: b, commit: c, fallback: `refs/heads/${b}` };
      }
      if (ref.name !== undefined) {
        const n = checkRefName("name", ref.name);
        return { fetch: c, label: n, commit: c, fallback: n };
      }
      return { fetch: c, label: "", commit: c, fallback: "refs/heads/*" };
    }
    if (ref.name !== undefined) {
      const n = checkRefName("name", ref.name);
      const { refs } = await lsRemote([], [n]);
      const sha = refs.get(`${n}^{}`) ?? refs.get(n);
      if (!sha) throw missing(n);
      return { fetch: n, label: n, commit: sha };
    }
    if (ref.semver !== undefined) {
      const { refs } = await lsRemote(["--tags"]);
      const tags = [...refs.keys()]
        .filter((r) => !r.endsWith("^{}"))
        .map((r) => r.slice("refs/tags/".length));
      const tag = pickSemverTag(tags, ref.semver);
      if (!tag) {
        throw new GitRunError(
          `no tag matches semver range ${ref.semver}`,
          `fatal: no tag matches semver range ${ref.semver}`,
          128,
          false,
        );
      }
      const full = `refs/tags/${tag}`;
      return { fetch: full, label: tag, commit: refs.get(`${full}^{}`) ?? refs.get(full) ?? "" };
    }
    if (ref.tag !== undefined) {
      const full = `refs/tags/${checkRefName("tag", ref.tag)}`;
      const { refs } = await lsRemote(["--tags"]);
      const sha = refs.get(`${full}^{}`) ?? refs.get(full);
      if (!sha) throw missing(full);
      return { fetch: full, label: ref.tag, commit: sha };
    }
    if (ref.branch !== undefined) {
      const full = `refs/heads/${checkRefName("branch", ref.branch)}`;
      const { refs } = await lsRemote([], [full]);
      const sha = refs.get(full);
      if (!sha) throw missing(full);
      return { fetch: full, label: ref.branch, commit: sha };
    }
    // No ref: the remote's default branch (HEAD).
    const { refs, symrefs } = await lsRemote(["--symref"], ["HEAD"]);
    const target = symrefs.get("HEAD");
    const sha = refs.get("HEAD");
    if (!sha) throw missing("HEAD");
    if (target?.startsWith("refs/heads/")) {
      return { fetch: target, label: target.slice("refs/heads/".length), commit: sha };
    }
    return { fetch: "HEAD", label: "HEAD", commit: sha };
  }

  private async fetchInto(
    repoDir: string,
    url: ParsedSourceUrl,
    resolved: ResolvedRef,
    spec: GitRepositorySpec,
    auth: Auth,
  ): Promise<string> {
    if (!(await exists(join(repoDir, "HEAD")))) {
      await mkdir(this.reposDir, { recursive: true });
      await runGit(["init", "--quiet", "--bare", repoDir], { timeoutMs: DEFAULT_TIMEOUT });
    }
    const local = "refs/sluice/fetched";
    const fetchArgs = (src: string, depth: boolean, dst = local) => [
      "--git-dir",
      repoDir,
      "fetch",
      "--quiet",
      "--no-tags",
      "--no-write-fetch-head",
      "--no-recurse-submodules",
      ...(depth ? ["--depth=1"] : []),
      "--",
      url.gitUrl,
      `+${src}:${dst}`,
    ];
    if (resolved.fallback !== undefined && resolved.commit) {
      // Already present (fetched earlier, e.g. as a branch head)?
      const have = await runGit(["--git-dir", repoDir, "cat-file", "-e", `${resolved.commit}^{commit}`], {
        timeoutMs: DEFAULT_TIMEOUT,
      }).then(
        () => true,
        () => false,
      );
      if (!have) {
        try {
          await this.git(fetchArgs(resolved.commit, true), spec, auth);
        } catch {
          // Servers that refuse a want by id: fetch the branch (or all heads) with history instead.
          const src = resolved.fallback;
          const args = fetchArgs(src, false, src.endsWith("*") ? "refs/sluice/heads/*" : local);
          const shallow = await runGit(["--git-dir", repoDir, "rev-parse", "--is-shallow-repository"], {
            timeoutMs: DEFAULT_TIMEOUT,
          });
          if (shallow.stdout.toString("utf8").trim() === "true")
            args.splice(args.indexOf("--"), 0, "--unshallow");
          await this.git(args, spec, auth);
        }
      }
      await runGit(["--git-dir", repoDir, "cat-file", "-e", `${resolved.commit}^{commit}`], {
        timeoutMs: DEFAULT_TIMEOUT,
      }).catch(() => {
        throw new GitRunError(
          `commit ${resolved.commit} not found`,
          `fatal: commit ${resolved.commit} not found in the repository`,
          128,
          false,
        );
      });
      await runGit(["--git-dir", repoDir, "update-ref", local, resolved.commit], {
        timeoutMs: DEFAULT_TIMEOUT,
      });
      return resolved.commit;
    }
    await this.git(fetchArgs(resolved.fetch, true), spec, auth);
    const out = await runGit(["--git-dir", repoDir, "rev-parse", "--verify", `${local}^{commit}`], {
      timeoutMs: DEFAULT_TIMEOUT,
    });
    return out.stdout.toString("utf8").trim();
  }

  private async snapshot(
    repoDir: string,
    commit: string,
    ignoreKey: string,
    spec: GitRepositorySpec,
  ): Promise<string> {
    const final = join(this.snapshotsDir, `${commit}${ignoreKey}`);
    if (await exists(final)) return final;
    await mkdir(this.snapshotsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    const tmp = join(this.snapshotsDir, `.tmp-${commit.slice(0, 12)}-${randomBytes(6).toString("hex")}`);
    const index = join(this.tmpDir, `${randomBytes(8).toString("hex")}.index`);
    this.inflight.add(tmp);
    const timeoutMs = spec.timeoutMs ?? DEFAULT_TIMEOUT;
    try {
      await mkdir(tmp);
      const ls = await runGit(["--git-dir", repoDir, "ls-tree", "-r", "-z", "-l", "--full-tree", commit], {
        timeoutMs,
        maxStdout: 256 * 1024 * 1024,
      });
      const entries = parseLsTree(ls.stdout);
      const maxFiles = this.opts.maxFiles ?? 100_000;
      const maxBytes = this.opts.maxBytes ?? 1024 * 1024 * 1024;
      if (entries.length > maxFiles) {
        throw new SluiceError(
          "LimitExceeded",
          `commit ${commit} has ${entries.length} files, over the limit of ${maxFiles}`,
          {
            hint: "Exclude files with spec.ignore or .sourceignore, or raise the agent's maxFiles.",
          },
        );
      }
      const ignore = new IgnoreMatcher();
      if (spec.ignore) ignore.add(spec.ignore);
      const sourceIgnores = entries
        .filter((e) => e.type === "blob" && (e.path === ".sourceignore" || e.path.endsWith("/.sourceignore")))
        .sort((a, b) => a.path.split("/").length - b.path.split("/").length);
      for (const f of sourceIgnores) {
        if (f.size > 1024 * 1024) continue;
        const blob = await runGit(["--git-dir", repoDir, "cat-file", "blob", f.sha], { timeoutMs });
        ignore.add(blob.stdout.toString("utf8"), f.path.slice(0, -".sourceignore".length));
      }
      // Submodules (gitlinks) are never fetched or recursed into.
      const selected = entries.filter(
        (e) => e.type === "blob" && (ignore.size === 0 || !ignore.ignores(e.path)),
      );
      const total = selected.reduce((n, e) => n + e.size, 0);
      if (total > maxBytes) {
        throw new SluiceError(
          "LimitExceeded",
          `commit ${commit} holds ${total} bytes of files, over the limit of ${maxBytes}`,
          {
            hint: "Exclude large files with spec.ignore or .sourceignore, or raise the agent's maxBytes.",
          },
        );
      }
      const env = { GIT_INDEX_FILE: index };
      await runGit(["--git-dir", repoDir, "read-tree", commit], { timeoutMs, env });
      await runGit(
        [
          "--git-dir",
          repoDir,
          "--work-tree",
          tmp,
          ...hardeningConfig(false),
          "checkout-index",
          "--force",
          "-z",
          "--stdin",
        ],
        { timeoutMs, env, input: Buffer.from(selected.map((e) => `${e.path}\0`).join(""), "utf8") },
      );
      for (const e of selected) {
        if (e.mode === "120000") continue; // symlinks have no mode of their own
        await chmod(join(tmp, e.path), e.mode === "100755" ? 0o555 : 0o444);
      }
      try {
        await rename(tmp, final);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
        // Another fetch made the same snapshot first; theirs is identical.
      }
      return final;
    } catch (e) {
      if (e instanceof SluiceError) throw e;
      throw new SluiceError(
        "ArtifactFailed",
        `snapshot of commit ${commit} failed: ${redactUrls(errMessage(e))}`,
        {
          hint: "Check free disk space and permissions of the cache directory.",
          cause: e,
        },
      );
    } finally {
      this.inflight.delete(tmp);
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      await rm(index, { force: true }).catch(() => {});
    }
  }

  private async git(args: string[], spec: GitRepositorySpec, auth: Auth, extra: Partial<GitRunOptions> = {}) {
    const allowFile = this.opts.allowFileUrls === true;
    const r = await runGit([...hardeningConfig(allowFile), ...args], {
      timeoutMs: spec.timeoutMs ?? DEFAULT_TIMEOUT,
      secretConfig: auth.secretConfig,
      env: auth.env,
      ...extra,
    });
    return r.stdout;
  }

  private async withAuth<T>(
    url: ParsedSourceUrl,
    spec: GitRepositorySpec,
    fn: (a: Auth) => Promise<T>,
  ): Promise<T> {
    const s = spec.secret ?? {};
    const auth: Auth = { secretConfig: [], env: {}, secrets: [], cleanup: async () => {} };
    const username = s.username ?? url.username;
    const password = s.password ?? url.password;
    if (url.scheme === "http" || url.scheme === "https") {
      if (s.bearerToken) {
        auth.secretConfig.push(["http.extraHeader", `Authorization: Bearer ${s.bearerToken}`]);
        auth.secrets.push(s.bearerToken);
      } else if (username !== undefined || password !== undefined) {
        const basic = Buffer.from(`${username ?? ""}:${password ?? ""}`, "utf8").toString("base64");
        auth.secretConfig.push(["http.extraHeader", `Authorization: Basic ${basic}`]);
        auth.secrets.push(basic);
        if (password) auth.secrets.push(password);
      }
    } else if (url.scheme === "ssh") {
      const dir = join(this.tmpDir, `ssh-${randomBytes(8).toString("hex")}`);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const kh = join(dir, "known_hosts");
      await writeFile(kh, s.knownHosts ?? "", { mode: 0o600 });
      const sshArgs = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        `UserKnownHostsFile='${kh}'`,
      ];
      if (s.identity) {
        const key = join(dir, "identity");
        await writeFile(key, s.identity.endsWith("\n") ? s.identity : `${s.identity}\n`, { mode: 0o600 });
        sshArgs.push("-o", "IdentitiesOnly=yes", "-i", `'${key}'`);
        auth.secrets.push(s.identity);
      }
      // Only our own temp paths (hex names) reach this shell-interpreted variable.
      auth.env.GIT_SSH_COMMAND = sshArgs.join(" ");
      auth.cleanup = () => rm(dir, { recursive: true, force: true });
    }
    try {
      return await fn(auth);
    } finally {
      await auth.cleanup().catch(() => {});
    }
  }

  private wrap(
    e: unknown,
    op: "fetch" | "ls-remote",
    name: string,
    spec: GitRepositorySpec,
    secrets: string[] = [],
  ) {
    if (e instanceof SluiceError) return e;
    const raw = e instanceof GitRunError ? e.message : errMessage(e);
    let detail = redactUrls(raw);
    if (/could not read (Username|Password)|terminal prompts disabled/.test(detail)) {
      detail = "authentication failed: the server requires credentials and none (or wrong ones) were given";
    }
    for (const s of [...secrets, spec.secret?.password, spec.secret?.bearerToken]) {
      if (s && s.length >= 3) detail = detail.split(s).join("***");
    }
    const url = redactUrl(spec.url);
    const timedOut = e instanceof GitRunError && e.timedOut;
    return new SluiceError("ArtifactFailed", `git ${op} of ${url} failed: ${detail}`, {
      hint: hintFor(detail, timedOut),
      detail: { source: name, url },
      cause: e instanceof GitRunError ? undefined : e,
    });
  }

  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }
}

function hintFor(detail: string, timedOut: boolean): string {
  if (timedOut) return "The Git server did not answer in time; check it, or raise spec.timeout.";
  if (/\b(401|403)\b|authentication failed|Permission denied/i.test(detail)) {
    return "Check the credentials in spec.secretRef (username/password, bearerToken or SSH identity).";
  }
  if (/couldn't find remote ref|no tag matches|not found in the repository/i.test(detail)) {
    return "Check spec.ref: the branch, tag or commit does not exist in the repository.";
  }
  if (/Host key verification failed/i.test(detail)) {
    return "Add the server's host key to known_hosts in spec.secretRef.";
  }
  return "Check that the Git server is reachable and the URL is right; the fetch is retried with backoff.";
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

interface TreeEntry {
  mode: string;
  type: string;
  sha: string;
  size: number;
  path: string;
}

function parseLsTree(buf: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  for (const rec of buf.toString("utf8").split("\0")) {
    if (rec === "") continue;
    const tab = rec.indexOf("\t");
    const [mode = "", type = "", sha = "", size = "0"] = rec.slice(0, tab).trim().split(/\s+/);
    out.push({ mode, type, sha, size: Number.parseInt(size, 10) || 0, path: rec.slice(tab + 1) });
  }
  return out;
}
