/** `snowflock demo`: an embedded master and N agents on loopback, no set-up needed. */
import { Command } from "commander";
import { startEmbeddedCluster } from "../control/embedded.ts";
import { createLogger } from "../log.ts";
import { parseCount } from "./options.ts";
import { formatStatus } from "./status.ts";

interface DemoFlags {
  hosts: number;
  json?: boolean;
  verbose?: boolean;
}

export function demoCommand(): Command {
  return new Command("demo")
    .description("start an embedded master and agents on loopback and show the cluster")
    .option("--hosts <n>", "agents to start", parseCount(1, 64), 4)
    .option("--json", "print one JSON object as the last line")
    .option("-v, --verbose", "log every event")
    .action(async (f: DemoFlags) => {
      const logger = createLogger("demo", { verbose: f.verbose, quiet: !f.verbose });
      const dataDir = await Deno.makeTempDir({ prefix: "snowflock-demo-" });
      const cluster = await startEmbeddedCluster({
        hosts: f.hosts,
        slotsPerHost: 4,
        dataDir,
        logger,
      });
      try {
        const status = cluster.master.master.status();
        console.log(formatStatus(status));
        if (f.json) {
          console.log(JSON.stringify({ ok: true, hosts: status.hosts.length }));
        }
      } finally {
        await cluster.close();
        await Deno.remove(dataDir, { recursive: true });
      }
    });
}
