/**
 * Sluice inside a cluster: `sluice bootstrap` (install Sluice, commit the cluster's config to Git),
 * `sluice uninstall` (remove exactly what bootstrap made) and `sluice shards` (which replica owns
 * which environment, from the member Leases).
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { type Command, Option } from "commander";
import {
  assign,
  bootstrap,
  buildSluiceImage,
  type GitCredentials,
  KubeApi,
  kubeconfigConnection,
  listMemberLeases,
  SYSTEM_NAMESPACE,
  uninstall,
} from "../cluster/index.js";
import { SluiceError } from "../core/index.js";

interface ConnFlags {
  kubeconfig?: string;
  context?: string;
}

function kubeconfigOf(f: ConnFlags): string {
  return f.kubeconfig ?? process.env.KUBECONFIG?.split(":")[0] ?? join(homedir(), ".kube", "config");
}

const out = (s: string) => process.stdout.write(s);
const err = (s: string) => process.stderr.write(s);

function age(iso: string | undefined): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join("  ")).join("\n")}\n`;
}

export function registerCluster(program: Command): void {
  program
    .command("bootstrap")
    .description("install Sluice into a cluster and commit the cluster's config to Git (idempotent)")
    .requiredOption("--repo <url>", "the repository Sluice in the cluster reconciles from")
    .option("--branch <branch>", "branch holding the cluster's config", "main")
    .requiredOption("--path <dir>", "the cluster's directory in the repository, e.g. clusters/production")
    .option("--kubeconfig <file>", "default $KUBECONFIG or ~/.kube/config")
    .option("--context <name>", "the kubeconfig context")
    .option("--token-file <file>", "Git token (HTTP basic auth password) for an https repository")
    .option("--username <name>", "with --token-file: the HTTP username", "git")
    .option("--ssh-key", "generate an ed25519 deploy key (printed: register it with the Git host)")
    .option("--known-hosts <file>", "with --ssh-key: known_hosts for the Git host (default: ssh-keyscan)")
    .option(
      "--cluster-admin",
      "bind cluster-admin instead of Sluice's least-privilege ClusterRole (needed for CRDs, RBAC, cluster-scoped kinds)",
    )
    .option(
      "--image <ref>",
      "Sluice's image, as the cluster pulls it (default localhost/sluice/sluice:<version>)",
    )
    .option("--replicas <n>", "replicas (environments are sharded across them)", "2")
    .option("--interval <duration>", "how often Sluice in the cluster polls the repository", "1m")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .action(
      async (
        f: ConnFlags & {
          repo: string;
          branch: string;
          path: string;
          tokenFile?: string;
          username: string;
          sshKey?: boolean;
          knownHosts?: string;
          clusterAdmin?: boolean;
          image?: string;
          buildImage?: boolean;
          replicas: string;
          interval: string;
          output: string;
        },
      ) => {
        if (f.tokenFile && f.sshKey)
          throw new SluiceError("ConfigInvalid", "--token-file and --ssh-key exclude each other", {
            hint: "a token for https URLs, a deploy key for ssh URLs",
          });
        const credentials: GitCredentials = f.tokenFile
          ? { kind: "token", token: readFileSync(f.tokenFile, "utf8").trim(), username: f.username }
          : f.sshKey
            ? { kind: "ssh", ...(f.knownHosts ? { knownHosts: readFileSync(f.knownHosts, "utf8") } : {}) }
            : { kind: "none" };
        const replicas = Number(f.replicas);
        if (!Number.isInteger(replicas) || replicas < 1)
          throw new SluiceError("ConfigInvalid", `--replicas ${f.replicas}: expected a positive integer`);
        let image = f.image;
        if (f.buildImage) {
          const built = await buildSluiceImage({ onProgress: (l) => err(`${l}\n`) });
          err(
            `${built.built ? "built" : "up to date:"} ${built.image} (${(built.sizeBytes / 1e6).toFixed(0)} MB)\n`,
          );
          image = image ?? built.image;
        }
        const r = await bootstrap({
          repo: f.repo,
          branch: f.branch,
          path: f.path,
          kubeconfig: kubeconfigOf(f),
          ...(f.context ? { context: f.context } : {}),
          credentials,
          clusterAdmin: f.clusterAdmin === true,
          ...(image ? { image } : {}),
          replicas,
          interval: f.interval,
          log: f.output === "json" ? () => {} : (l) => err(`${l}\n`),
        });
        if (f.output === "json") {
          out(
            `${JSON.stringify(
              {
                cluster: r.cluster,
                commit: r.commit,
                files: r.files,
                changes: r.changeSet.entries.map((e) => ({ subject: e.subject, action: e.action })),
                ...(r.deployKey ? { deployKey: r.deployKey } : {}),
              },
              null,
              2,
            )}\n`,
          );
          return;
        }
        const changed = r.changeSet.entries.filter((e) => e.action !== "unchanged").length;
        out(
          `cluster ${r.cluster}: ${r.commit ? `committed ${r.commit.slice(0, 10)} to ${f.branch}` : "configuration already in Git"}, ` +
            `${changed} object(s) changed, ${r.changeSet.entries.length - changed} unchanged\n`,
        );
        if (r.deployKey)
          out(
            `\nRegister this deploy key with the Git host (read-only; with write access if image automation pushes):\n\n  ${r.deployKey}\n\n`,
          );
      },
    );

  program
    .command("uninstall")
    .description("remove what `sluice bootstrap` installed (by its labels and inventory), nothing else")
    .option("--kubeconfig <file>", "default $KUBECONFIG or ~/.kube/config")
    .option("--context <name>", "the kubeconfig context")
    .option("--dry-run", "only list what would be removed")
    .option("--yes", "do it (required unless --dry-run)")
    .action(async (f: ConnFlags & { dryRun?: boolean; yes?: boolean }) => {
      if (!f.dryRun && !f.yes)
        throw new SluiceError(
          "ConfigInvalid",
          "uninstall removes Sluice from the cluster: confirm with --yes",
          {
            hint: "see what it would remove with --dry-run",
          },
        );
      const r = await uninstall({
        kubeconfig: kubeconfigOf(f),
        ...(f.context ? { context: f.context } : {}),
        dryRun: f.dryRun === true,
        log: (l) => err(`${l}\n`),
      });
      if (r.clusters.length === 0) {
        out("nothing to uninstall\n");
        return;
      }
      out(
        `${f.dryRun ? "would remove" : "removed"} ${r.removed.length} object(s) of ${r.clusters.join(", ")}` +
          (r.kept.length ? `; kept Namespace ${SYSTEM_NAMESPACE} with ${r.kept.join(", ")}` : "") +
          "\nThe repository is untouched: remove the cluster's sluice-system directory there yourself.\n",
      );
    });

  program
    .command("shards")
    .description("the replicas (member Leases) and which one owns each named environment")
    .argument("[env...]", "environments to place on the replicas")
    .option("--kubeconfig <file>", "default $KUBECONFIG or ~/.kube/config (in a pod: its service account)")
    .option("--context <name>", "the kubeconfig context")
    .option("--namespace <ns>", "where the member Leases live", SYSTEM_NAMESPACE)
    .addOption(
      new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"),
    )
    .action(shardsAction);
}

export interface ShardsFlags extends ConnFlags {
  namespace: string;
  output: string;
}

/** `sluice shards [ENV…]` (also usable as `sluice get shards` from the `get` group). */
export async function shardsAction(envs: string[], f: ShardsFlags): Promise<void> {
  const api = new KubeApi(kubeconfigConnection(kubeconfigOf(f), f.context));
  try {
    const leases = await listMemberLeases(api, f.namespace, 10_000);
    // One look, so by the Leases' renewTime (display only: replicas judge liveness by observation).
    const members = leases.map((l) => {
      const renewed = l.spec.renewTime ? Date.parse(l.spec.renewTime) : 0;
      const live =
        !!l.spec.holderIdentity && Date.now() - renewed < (l.spec.leaseDurationSeconds ?? 15) * 1000;
      return {
        id: l.metadata.annotations?.["sluice.dev/replica-id"] ?? l.spec.holderIdentity ?? l.metadata.name,
        live,
        renewTime: l.spec.renewTime,
        environments: l.metadata.annotations?.["sluice.dev/environments"],
      };
    });
    const owners = assign(
      envs,
      members.filter((m) => m.live).map((m) => m.id),
    );
    if (f.output === "json") {
      out(`${JSON.stringify({ members, owners: Object.fromEntries(owners) }, null, 2)}\n`);
      return;
    }
    if (members.length === 0) out(`no replicas in ${f.namespace}\n`);
    else
      out(
        table([
          ["REPLICA", "LIVE", "RENEWED", "ENVIRONMENTS"],
          ...members.map((m) => [m.id, m.live ? "yes" : "no", age(m.renewTime), m.environments ?? "-"]),
        ]),
      );
    if (envs.length)
      out(`\n${table([["ENVIRONMENT", "OWNER"], ...envs.map((e) => [e, owners.get(e) ?? "-"])])}`);
  } finally {
    api.close();
  }
}
