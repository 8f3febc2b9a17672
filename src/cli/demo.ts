/** `sluice demo` and `sluice demo down`. */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { startDemo, stopDemo } from "../demo/index.js";

const checkout = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function registerDemo(program: Command): void {
  const demo = program
    .command("demo")
    .description(
      "run the whole job locally: Git server, registry, image build, sluice serve, production and staging",
    )
    .option("--state-dir <dir>", "where the demo keeps everything", join(checkout, ".sluice", "demo"))
    .option("--example <dir>", "the example repository to deploy", join(checkout, "examples", "replace-api"))
    .option("--listen <addr>", "API address", "127.0.0.1:7070")
    .option("--exit-when-ready", "stop everything once both environments pass their smoke tests (for CI)")
    .action(async (o: { stateDir: string; example: string; listen: string; exitWhenReady?: boolean }) => {
      const say = (l: string) => process.stdout.write(`${l}\n`);
      const d = await startDemo({ stateDir: o.stateDir, exampleDir: o.example, listen: o.listen, say });
      say("");
      for (const [env, url] of Object.entries(d.urls)) say(`replace-api ${env}: ${url}`);
      say(`\nAPI ${d.apiUrl} (token: ${join(o.stateDir, "agent", "operator-token")})`);
      say(`Try a change: in ${d.workdir}, git checkout staging, edit deploy/base/replacements.json,`);
      say("commit, and git push: staging rolls in seconds while production keeps answering.");
      if (o.exitWhenReady) {
        await d.stop();
        return;
      }
      say("Ctrl-C (or `sluice demo down`) stops everything.");
      await new Promise<void>((done) => {
        const stop = () => {
          say("\nstopping: removing pods, the registry, the Git server…");
          void d.stop().then(done);
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      say("stopped.");
    });
  demo
    .command("down")
    .description("stop a demo running in another terminal")
    .action(async (_o: unknown, cmd: Command) => {
      const stateDir =
        (cmd.parent?.opts() as { stateDir?: string } | undefined)?.stateDir ??
        join(checkout, ".sluice", "demo");
      const stopped = await stopDemo(stateDir, (l) => process.stdout.write(`${l}\n`));
      process.stdout.write(stopped ? "stopped.\n" : "no demo is running.\n");
    });
}
