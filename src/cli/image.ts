/**
 * `sluice image update`: one pass of every ImageUpdateAutomation in the configuration at --dir:
 * check out the automation's GitRepository, rewrite the marked fields to the policies' latest
 * images, commit with the configured author and message, and (with --push) push.
 *
 * The latest images come from scanning each ImagePolicy's ImageRepository (src/images:
 * `scanRepository` + `selectLatest`), with `--latest ns:policy=ref` and `--latest-file FILE` as
 * overrides (and the only source with `--no-scan`).
 *
 * `sluice image scan [NAME]` scans the repositories (and selects the policies) of the configuration
 * at --dir and prints what each policy would pick, without any agent.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import type { Command } from "commander";
import {
  type AutomationResult,
  compileMessageTemplate,
  type GitAuth,
  type LatestImages,
  parseImageRef,
  runAutomation,
} from "../automation/index.js";
import {
  byKind,
  type Config,
  type ConfigObject,
  findObject,
  loadConfig,
  parseDuration,
} from "../config/index.js";
import { errorMessage, SluiceError } from "../core/index.js";
import { type DockerConfig, scanRepository, selectLatest } from "../images/index.js";
import { collect, repositoryRoot } from "./common.js";

interface UpdateFlags {
  dir: string;
  scan?: boolean;
  push?: boolean;
  latest?: string[];
  latestFile?: string;
  workDir?: string;
  maxAttempts?: string;
}

export function registerImage(program: Command): void {
  const image = program
    .command("image")
    .description(
      "image scanning and update automation (Flux ImageRepository, ImagePolicy, ImageUpdateAutomation)",
    );
  image
    .command("scan")
    .description("scan the registries of the configuration at --dir and print what each ImagePolicy selects")
    .argument("[repository]", "only this ImageRepository (name or namespace/name)")
    .option("--dir <dir>", "configuration directory", ".")
    .action(async (only: string | undefined, flags: { dir: string }) => {
      const dir = resolve(flags.dir);
      const config = loadConfig(repositoryRoot(dir), dir);
      const res = await scanPolicies(config, only);
      if (!res.length) {
        process.stderr.write("no ImagePolicy found\n");
        process.exitCode = 2;
        return;
      }
      for (const p of res)
        process.stdout.write(
          p.error
            ? `✗ ImagePolicy ${p.key}: ${p.error}\n`
            : `✔ ImagePolicy ${p.key}: ${p.image} (of ${p.tags} tags in ${p.repository})\n`,
        );
      if (res.some((p) => p.error)) process.exitCode = 2;
    });
  image
    .command("update")
    .description(
      "run every ImageUpdateAutomation in the configuration once: rewrite marked fields, commit, and with --push push",
    )
    .option("--dir <dir>", "configuration directory holding the automations and their GitRepositories", ".")
    .option("--push", "push the commits (without it, nothing leaves the temporary working copy)")
    .option(
      "--latest <ns:policy=image>",
      "a policy's latest image, e.g. flux-system:app=ghcr.io/org/app:1.2.3 (repeatable)",
      collect,
    )
    .option(
      "--latest-file <file>",
      'JSON object of latest images: {"flux-system:app": "ghcr.io/org/app:1.2.3"}',
    )
    .option(
      "--work-dir <dir>",
      "keep the working copies here (default: a temporary directory, removed after)",
    )
    .option("--max-attempts <n>", "push attempts when the branch keeps moving", "5")
    .option("--no-scan", "do not scan registries; take the latest images from --latest/--latest-file only")
    .action(async (flags: UpdateFlags) => {
      const code = await imageUpdate(flags, (s) => process.stdout.write(s));
      if (code !== 0) process.exitCode = code;
    });
}

/**
 * The policies' latest images, keyed `namespace:policy`. Wiring in registry scanning replaces this
 * body: for each ImagePolicy in `config`, scan its ImageRepository (`scanRepository`) and select
 * (`selectLatest`), with the flags kept as overrides.
 */
async function latestImages(config: Config, flags: UpdateFlags): Promise<LatestImages> {
  const latest = new Map<string, { image: string }>();
  if (flags.scan !== false)
    for (const p of await scanPolicies(config)) if (p.image) latest.set(p.key, { image: p.image });
  const add = (key: string, image: string, where: string) => {
    if (!/^[^:\s]+:[^:\s]+$/.test(key)) {
      throw new SluiceError("ConfigInvalid", `${where}: ${JSON.stringify(key)} is not <namespace>:<policy>`, {
        hint: "e.g. --latest flux-system:app=ghcr.io/org/app:1.2.3",
      });
    }
    parseImageRef(image, `${where}: image for ${key}`);
    latest.set(key, { image });
  };
  if (flags.latestFile) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(resolve(flags.latestFile), "utf8"));
    } catch (e) {
      throw new SluiceError("ConfigInvalid", `--latest-file ${flags.latestFile}: ${(e as Error).message}`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new SluiceError("ConfigInvalid", `--latest-file ${flags.latestFile}: expected a JSON object`);
    }
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v !== "string")
        throw new SluiceError("ConfigInvalid", `--latest-file ${flags.latestFile}: ${k}: expected a string`);
      add(k, v, `--latest-file ${flags.latestFile}`);
    }
  }
  for (const kv of flags.latest ?? []) {
    const i = kv.indexOf("=");
    if (i <= 0)
      throw new SluiceError("ConfigInvalid", `--latest ${JSON.stringify(kv)}: expected ns:policy=image`);
    add(kv.slice(0, i), kv.slice(i + 1), "--latest");
  }
  return latest;
}

interface ScannedPolicy {
  /** `namespace:name`, as setters' markers name policies. */
  key: string;
  repository: string;
  image?: string;
  error?: string;
  tags?: number;
}

/** Scans every ImageRepository the configuration's policies use (each once) and selects. */
async function scanPolicies(config: Config, only?: string): Promise<ScannedPolicy[]> {
  const repos = new Map<string, Promise<{ tags: string[] } | { error: string }>>();
  const out: ScannedPolicy[] = [];
  for (const pol of byKind(config, "ImagePolicy")) {
    const ns = pol.spec.imageRepositoryRef.namespace ?? pol.metadata.namespace;
    const repoKey = `${ns}/${pol.spec.imageRepositoryRef.name}`;
    const repo = byKind(config, "ImageRepository").find(
      (r) => r.metadata.namespace === ns && r.metadata.name === pol.spec.imageRepositoryRef.name,
    );
    const key = `${pol.metadata.namespace}:${pol.metadata.name}`;
    if (only && only !== repo?.metadata.name && only !== repoKey) continue;
    if (!repo) {
      out.push({ key, repository: repoKey, error: `ImageRepository ${repoKey} is not defined` });
      continue;
    }
    if (!repos.has(repoKey)) {
      const dockerText = repo.spec.secretRef
        ? config.supporting.find(
            (o) =>
              o.kind === "Secret" &&
              o.metadata.namespace === ns &&
              o.metadata.name === repo.spec.secretRef!.name,
          )?.data[".dockerconfigjson"]
        : undefined;
      repos.set(
        repoKey,
        scanRepository(repo.spec, {
          subject: `ImageRepository/${repoKey}`,
          ...(dockerText ? { dockerConfig: JSON.parse(dockerText) as DockerConfig } : {}),
        }).then(
          (r) => ({ tags: r.tags }),
          (e) => ({ error: errorMessage(e) }),
        ),
      );
    }
    const scanned = await repos.get(repoKey)!;
    if ("error" in scanned) {
      out.push({ key, repository: repoKey, error: scanned.error });
      continue;
    }
    try {
      const l = selectLatest(pol.spec, scanned.tags, {
        image: repo.spec.image,
        subject: `ImagePolicy/${key}`,
      });
      out.push({ key, repository: repoKey, image: l.image, tags: scanned.tags.length });
    } catch (e) {
      out.push({ key, repository: repoKey, error: errorMessage(e), tags: scanned.tags.length });
    }
  }
  return out;
}

function secretAuth(config: Config, repo: ConfigObject<"GitRepository">): GitAuth | undefined {
  const ref = repo.spec.secretRef;
  if (!ref) return undefined;
  const s = config.supporting.find(
    (o) =>
      o.kind === "Secret" && o.metadata.namespace === repo.metadata.namespace && o.metadata.name === ref.name,
  );
  if (!s) {
    throw new SluiceError(
      "ConfigInvalid",
      `${repo.origin}: Secret ${repo.metadata.namespace}/${ref.name} is referenced but not defined in the configuration`,
    );
  }
  const auth: GitAuth = {};
  if (s.data.username) auth.username = s.data.username;
  if (s.data.password) auth.password = s.data.password;
  if (s.data.bearerToken) auth.bearerToken = s.data.bearerToken;
  return auth;
}

function describe(a: ConfigObject<"ImageUpdateAutomation">, r: AutomationResult, push: boolean): string {
  const lines: string[] = [];
  const files = r.changedFiles.length;
  lines.push(
    `${a.metadata.namespace}/${a.metadata.name}: ${r.branch}: ${
      r.updates.length === 0 ? "up to date" : `${r.updates.length} field(s) in ${files} file(s)`
    }`,
  );
  for (const u of r.updates) lines.push(`  ${u.file}:${u.line}  ${u.from} -> ${u.to}  (${u.setter})`);
  for (const s of r.skipped) lines.push(`  skipped ${s.file}: ${s.reason}`);
  for (const i of r.ignored) lines.push(`  ignored ${i.file}:${i.line} ${i.setter}: ${i.reason}`);
  if (r.commit) {
    const short = r.commit.slice(0, 7);
    if (r.pushed) {
      lines.push(`  pushed ${short} to ${r.branch}${r.attempts > 1 ? ` after ${r.attempts} attempts` : ""}`);
    } else {
      lines.push(`  committed ${short}, not pushed${push ? "" : " (use --push)"}; message:`);
      for (const l of (r.message ?? "").replace(/\n$/, "").split("\n")) lines.push(`    | ${l}`);
    }
  }
  if (r.pullRequest) lines.push(`  pull request: ${r.pullRequest.url}`);
  return `${lines.join("\n")}\n`;
}

/** Runs the command; returns the exit code. */
async function imageUpdate(flags: UpdateFlags, out: (s: string) => void): Promise<number> {
  const dir = resolve(flags.dir);
  const root = repositoryRoot(dir);
  const config = loadConfig(root, relative(root, dir) || ".");
  const automations = byKind(config, "ImageUpdateAutomation").filter((a) => !a.spec.suspend);
  if (automations.length === 0) {
    out(`no ImageUpdateAutomation in ${flags.dir}\n`);
    return 0;
  }
  // Load-time checks for every automation before any of them touches Git.
  const prepared = automations.map((a) => {
    const template = compileMessageTemplate(a.spec.git.commit.messageTemplate);
    const srcNs = a.spec.sourceRef.namespace ?? a.metadata.namespace;
    const repo = findObject(config, "GitRepository", srcNs, a.spec.sourceRef.name);
    if (!repo) {
      throw new SluiceError(
        "ConfigInvalid",
        `${a.origin}: GitRepository ${srcNs}/${a.spec.sourceRef.name} (spec.sourceRef) is not defined in the configuration`,
      );
    }
    return { a, template, repo, auth: secretAuth(config, repo) };
  });
  const latest = await latestImages(config, flags);
  const maxAttempts = Number(flags.maxAttempts ?? 5);
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)
    throw new SluiceError(
      "ConfigInvalid",
      `--max-attempts ${flags.maxAttempts}: expected a positive whole number`,
    );

  const base = flags.workDir ? resolve(flags.workDir) : await mkdtemp(join(tmpdir(), "sluice-image-update-"));
  try {
    for (const { a, template, repo, auth } of prepared) {
      const timeout = repo.spec.timeout ? parseDuration(repo.spec.timeout) : undefined;
      const r = await runAutomation({
        automation: a,
        repoUrl: repo.spec.url,
        ...(repo.spec.ref?.branch ? { sourceBranch: repo.spec.ref.branch } : {}),
        latest,
        workDir: join(base, `${a.metadata.namespace}-${a.metadata.name}`),
        ...(auth ? { auth } : {}),
        template,
        push: flags.push === true,
        maxAttempts,
        ...(timeout ? { timeoutMs: timeout } : {}),
      });
      out(describe(a, r, flags.push === true));
    }
  } finally {
    if (!flags.workDir) await rm(base, { recursive: true, force: true });
  }
  return 0;
}
