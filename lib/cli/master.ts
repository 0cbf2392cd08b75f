/** `snowflock master`: runs the cluster master until SIGINT/SIGTERM. */
import { Command, Option } from "commander";
import { type AllocatorName, ALLOCATORS } from "../allocator/mod.ts";
import type { HostPort } from "../control/address.ts";
import { startMaster } from "../control/master_service.ts";
import { createLogger } from "../log.ts";
import { parseAddress, parseCount, untilSignal } from "./options.ts";

interface MasterFlags {
  listen: HostPort;
  dataDir: string;
  allocator: AllocatorName;
  token?: string;
  heartbeatTimeout: number;
  ticketTtl: number;
  verbose?: boolean;
}

export function masterCommand(): Command {
  return new Command("master")
    .description("run the cluster master: hosts, tickets, impromptu clusters, HTTP API")
    .option("--listen <addr>", "HTTP listen address", parseAddress("0.0.0.0"), {
      hostname: "0.0.0.0",
      port: 7070,
    })
    .option("--data-dir <dir>", "where state (SQLite) and the join token live", "./snowflock-data")
    .addOption(
      new Option("--allocator <name>", "resource allocator").choices(ALLOCATORS).default(
        "builtin",
      ),
    )
    .option("--token <token>", "join token (default: generated once, kept in the data dir)")
    .option(
      "--heartbeat-timeout <ms>",
      "mark a silent host down after this long",
      parseCount(100, 3_600_000),
      5000,
    )
    .option(
      "--ticket-ttl <ms>",
      "expire granted tickets unused for this long",
      parseCount(100, 86_400_000),
      60_000,
    )
    .option("-v, --verbose", "log every event")
    .action(async (f: MasterFlags) => {
      const logger = createLogger("master", { verbose: f.verbose });
      const svc = await startMaster({
        listen: f.listen,
        dataDir: f.dataDir,
        allocator: f.allocator,
        ...(f.token ? { token: f.token } : {}),
        heartbeatTimeoutMs: f.heartbeatTimeout,
        ticketTtlMs: f.ticketTtl,
        logger,
      });
      console.log(`master listening on ${svc.address}`);
      if (!f.token) console.log(`join token: ${svc.token}  (kept in ${svc.dataDir}/token)`);
      await untilSignal();
      await svc.close();
    });
}
