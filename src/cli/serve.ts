/**
 * `sluice serve`: the long-running agent. Opens the state store (one agent per state directory),
 * starts the reconciler on the local target and the HTTP API, and on first start creates an
 * operator token in `<state-dir>/operator-token` (mode 0600; never printed or logged).
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import pino, { type Logger } from "pino";
import { assertPassed, runSmokeTest } from "../checks/index.js";
import {
  defaultConnection,
  KubeApi,
  listEnvironmentStates,
  Membership,
  restoreEnvironment,
  StateMirror,
} from "../cluster/index.js";
import { parseDuration, SluiceError } from "../core/index.js";
import { eventFromAgent, Notifier } from "../notify/index.js";
import type { AgentEvent } from "../reconcile/index.js";
import { Agent, type PostApplyHook, type TargetAccess } from "../reconcile/index.js";
import type { RenderLimits } from "../render/index.js";
import { createApiServer, makeScrubber } from "../server/index.js";
import { loadAgeIdentities } from "../sops/index.js";
import { GitSource } from "../source/index.js";
import { openStore, type Store } from "../store/index.js";
import { LazyTarget, type Target } from "../targets/index.js";
import { createLocalTarget, type LocalTarget } from "../targets/local/index.js";

export interface ServeOptions {
  config: string;
  stateDir: string;
  listen: string;
  concurrency?: number;
  /** Resource bounds of every render (defaults: render/'s `defaultRenderLimits`). */
  renderLimits?: Partial<RenderLimits>;
  ageKeyFile?: string;
  /** For environments whose target is a Kubernetes cluster (and the shard Leases). */
  kubeconfig?: string;
  /**
   * Run as one of several replicas sharing the environments: member Leases in this namespace,
   * environments assigned by rendezvous hashing (src/cluster). Unset: this process owns everything.
   */
  shard?: { namespace: string; replicaId: string; leaseDurationMs?: number };
  /** The local podman target (default true); off in a cluster, where there is no podman. */
  localTarget?: boolean;
  log?: Logger;
  /** Reported after each smoke-test check (the demo prints them like the seed's test.sh). */
  onCheck?: (env: string, unit: string, line: string) => void;
}

export interface Running {
  agent: Agent;
  store: Store;
  /** Absent with `localTarget: false`. */
  local: LocalTarget | undefined;
  url: string;
  tokenFile: string;
  stop(): Promise<void>;
}

export function defaultStateDir(): string {
  return resolve(process.env.SLUICE_STATE_DIR ?? ".sluice/state");
}

/** Starts everything `sluice serve` runs; used by the command, the demo and the tests. */
export async function startServe(opts: ServeOptions): Promise<Running> {
  const log = opts.log ?? pino({ level: process.env.SLUICE_LOG_LEVEL ?? "info" });
  mkdirSync(opts.stateDir, { recursive: true });
  const store = openStore(opts.stateDir);
  for (const w of store.warnings) log.warn(w);
  try {
    const tokenFile = join(opts.stateDir, "operator-token");
    if (store.listTokens().length === 0 || !existsSync(tokenFile)) {
      try {
        store.revokeToken("operator");
      } catch {
        // there was none
      }
      writeFileSync(tokenFile, `${store.addToken("operator", "operator")}\n`, { mode: 0o600 });
    }
    const local =
      opts.localTarget === false
        ? undefined
        : await createLocalTarget({
            stateDir: join(opts.stateDir, "local"),
            log: (m: string) => log.debug(m),
          });
    // `kubernetes` or `kubernetes:<context>` (Environments rule `target`): one connection per
    // context, made on first use, from --kubeconfig, $KUBECONFIG or ~/.kube/config.
    const clusters = new Map<string, Target>();
    const target = (name: string, access?: TargetAccess): Target => {
      if (name === "local") {
        if (!local)
          throw new SluiceError(
            "TargetUnavailable",
            "the local target is off in this process (--no-local-target)",
            {
              hint: "give the environment a kubernetes target, or run sluice serve with podman",
            },
          );
        return local;
      }
      const m = /^kubernetes(?::(.+))?$/.exec(name);
      if (!m) {
        throw new SluiceError("TargetUnavailable", `unknown target ${name}`, {
          hint: "use local, kubernetes or kubernetes:<context>",
        });
      }
      // One connection per context and unit access (service account, remote cluster).
      const cacheKey = access ? `${name}|${access.key}` : name;
      let t = clusters.get(cacheKey);
      if (!t) {
        const kubeconfig = opts.kubeconfig ?? process.env.KUBECONFIG ?? join(homedir(), ".kube", "config");
        t = new LazyTarget("kubernetes", async () =>
          (await import("../targets/kubernetes/index.js")).createKubernetesTarget({
            kubeconfig: access?.kubeconfigData ? `kubeConfig.secretRef (${access.key})` : kubeconfig,
            ...(access?.kubeconfigData ? { kubeconfigData: access.kubeconfigData } : {}),
            ...(m[1] ? { context: m[1] } : {}),
            ...(access?.serviceAccount ? { serviceAccount: access.serviceAccount } : {}),
          }),
        );
        clusters.set(cacheKey, t);
      }
      return t;
    };
    const ids = await loadAgeIdentities({ keyFile: opts.ageKeyFile, env: process.env });
    // Smoke tests declared next to the configuration run after a unit is healthy.
    const postApply: PostApplyHook = async ({ env, unit, smokeTests, record }) => {
      for (const st of smokeTests) {
        const ns = st.spec.service.namespace ?? st.namespace ?? "default";
        const want = st.spec.service;
        const ports = (local?.serviceAddresses({ env: env.name, unit }) ?? []).filter(
          (a) => a.namespace === ns && a.name === want.name,
        );
        const addr = (ports.find((a) => a.port === Number(want.port)) ?? ports[0])?.address;
        if (!addr) {
          throw new SluiceError(
            "SmokeTestFailed",
            `smoke test ${st.name}: Service ${ns}/${st.spec.service.name} has no local address`,
          );
        }
        const report = await runSmokeTest(st.spec, addr, (r) =>
          opts.onCheck?.(env.name, unit, `${r.ok ? "✓" : "✗"} ${r.name}: ${r.detail}`),
        );
        record(st.name, report);
        assertPassed(st.name, report);
      }
    };
    // Sharding: which environments this replica owns, from the member Leases.
    let membership: Membership | undefined;
    let kubeApi: KubeApi | undefined;
    let agentStopped: Promise<void> | undefined;
    if (opts.shard) {
      kubeApi = new KubeApi(defaultConnection(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}));
      membership = new Membership({
        api: kubeApi,
        namespace: opts.shard.namespace,
        id: opts.shard.replicaId,
        ...(opts.shard.leaseDurationMs ? { leaseDurationMs: opts.shard.leaseDurationMs } : {}),
        beforeRelease: () => {
          agentStopped ??= agent.stop();
          return agentStopped;
        },
        log: (m: string) => log.info(m),
      });
    }
    const agent: Agent = new Agent({
      configPath: resolve(opts.config),
      // Everything the configuration reads stays inside its directory (or the file's directory).
      configRoot: statSync(opts.config).isDirectory() ? resolve(opts.config) : dirname(resolve(opts.config)),
      store,
      source: new GitSource({ cacheDir: join(opts.stateDir, "git") }),
      target,
      log,
      concurrency: opts.concurrency ?? 4,
      ...(opts.renderLimits ? { renderLimits: opts.renderLimits } : {}),
      workDir: join(opts.stateDir, "automation"),
      infraStateDir: opts.stateDir,
      ...(ids.identities.length ? { ageIdentities: ids } : {}),
      postApply,
      ...(membership ? { owns: (e: string) => membership.owns(e) } : {}),
    });
    const [host, port] = parseListen(opts.listen);
    await agent.start();
    let mirror: StateMirror | undefined;
    if (membership && kubeApi && opts.shard) {
      const m = membership;
      const api = kubeApi;
      const ns = opts.shard.namespace;
      m.onChange(async () => {
        // Environments this replica takes over come with what their last owner recorded.
        for (const snap of await listEnvironmentStates(api, ns))
          if (m.owns(snap.env)) restoreEnvironment(store, snap);
        await agent.reshard();
        m.publish(store.listEnvironments().filter((e) => m.owns(e.name)).length);
      });
      await m.start();
      mirror = new StateMirror({ agent, store, api, namespace: ns, replica: m.id, owns: (e) => m.owns(e) });
      mirror.start();
    }
    // Notifications (Flux Provider + Alert): every agent event an Alert takes, delivered with
    // retries in the background; secrets of the configuration masked.
    const scrub = makeScrubber(agent.configuration);
    const notifier = Notifier.fromConfig(agent.configuration, { scrub: (t) => scrub(t), log });
    const onChange = (e: AgentEvent) => {
      const input = eventFromAgent(e, { config: agent.configuration });
      if (input) notifier.notify(input);
    };
    agent.on("change", onChange);
    const api = await createApiServer({
      agent,
      store,
      log,
      host,
      port,
      dashboard: {
        objectHealth: (env, unit, refs) => target(env.target).health({ env: env.name, unit }, refs),
        urls: (env, unit) =>
          env.target === "local"
            ? (local?.serviceAddresses({ env: env.name, unit }) ?? []).map((a) => ({
                name: `${a.name}:${a.port}`,
                url: `http://127.0.0.1:${a.address.port}/`,
              }))
            : [],
      },
    });
    log.info({ url: api.url, tokenFile }, "sluice is serving");
    return {
      agent,
      store,
      local,
      url: api.url,
      tokenFile,
      stop: async () => {
        await api.close();
        agent.off("change", onChange);
        await mirror?.stop();
        await membership?.stop();
        agentStopped ??= agent.stop();
        await agentStopped;
        kubeApi?.close();
        await notifier.close();
        await local?.close();
        for (const c of clusters.values()) await c.close();
        store.close();
      },
    };
  } catch (e) {
    store.close();
    throw e;
  }
}

function parseListen(s: string): [string, number] {
  const m = /^(?:([0-9.]+|localhost):)?(\d+)$/.exec(s);
  if (!m) throw new SluiceError("ConfigInvalid", `--listen ${s}: expected HOST:PORT or PORT`);
  return [m[1] ?? "127.0.0.1", Number(m[2])];
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("run the agent: reconcile every environment, serve the API, webhooks and metrics")
    .requiredOption(
      "--config <path>",
      "directory or file with GitRepository/Kustomization/Environments/… objects",
    )
    .option(
      "--state-dir <dir>",
      "state directory (SQLite store, caches, local target state)",
      defaultStateDir(),
    )
    .option("--listen <addr>", "API address", "127.0.0.1:7070")
    .option("--concurrency <n>", "units reconciled at once", "4")
    .option("--max-objects <n>", "most objects one unit may render to", "20000")
    .option("--max-file-bytes <n>", "largest file a render reads from a repository", String(4 * 1024 * 1024))
    .option("--render-timeout <duration>", "longest a kustomize build may run", "2m")
    .option("--age-key-file <file>", "age identities for SOPS decryption")
    .option(
      "--kubeconfig <file>",
      "for kubernetes targets and shard Leases (default $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )
    .option(
      "--shard-namespace <ns>",
      "share environments with the other replicas whose Leases are in this namespace",
    )
    .option("--replica-id <id>", "this replica's id among them (default $POD_NAME, else the hostname)")
    .option("--lease-duration <duration>", "how long a silent replica still counts", "15s")
    .option("--no-local-target", "do not start the local podman target (in a cluster)")
    .action(
      async (o: {
        config: string;
        stateDir: string;
        listen: string;
        concurrency: string;
        maxObjects: string;
        maxFileBytes: string;
        renderTimeout: string;
        ageKeyFile?: string;
        kubeconfig?: string;
        shardNamespace?: string;
        replicaId?: string;
        leaseDuration: string;
        localTarget: boolean;
      }) => {
        const count = (flag: string, v: string, min: number) => {
          const n = Number(v);
          if (!Number.isSafeInteger(n) || n < min)
            throw new SluiceError(
              "ConfigInvalid",
              `${flag} ${v}: expected a whole number of at least ${min}`,
            );
          return n;
        };
        const timeoutMs = parseDuration(o.renderTimeout);
        if (!timeoutMs || timeoutMs < 1000)
          throw new SluiceError(
            "ConfigInvalid",
            `--render-timeout ${o.renderTimeout}: expected a duration of at least 1s`,
          );
        const running = await startServe({
          config: o.config,
          stateDir: resolve(o.stateDir),
          listen: o.listen,
          concurrency: count("--concurrency", o.concurrency, 1),
          renderLimits: {
            maxObjects: count("--max-objects", o.maxObjects, 1),
            maxFileBytes: count("--max-file-bytes", o.maxFileBytes, 1024),
            timeoutMs,
          },
          ...(o.ageKeyFile ? { ageKeyFile: o.ageKeyFile } : {}),
          ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
          localTarget: o.localTarget,
          ...(o.shardNamespace
            ? {
                shard: {
                  namespace: o.shardNamespace,
                  replicaId: o.replicaId ?? process.env.POD_NAME ?? hostname(),
                  leaseDurationMs: parseDuration(o.leaseDuration) ?? 15_000,
                },
              }
            : {}),
        });
        process.stderr.write(`sluice serving at ${running.url} (operator token in ${running.tokenFile})\n`);
        await new Promise<void>((done) => {
          const stop = () => {
            process.stderr.write("stopping…\n");
            void running.stop().then(done);
          };
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
        });
      },
    );
}
