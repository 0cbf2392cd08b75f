/** `snowflock master`: runs the cluster master until SIGINT/SIGTERM. */
import { Command, Option } from "commander";
import { type AllocatorName, ALLOCATORS, type AllocatorSettings } from "../allocator/mod.ts";
import type { HostPort } from "../control/address.ts";
import { startMaster } from "../control/master_service.ts";
import { createLogger } from "../log.ts";
import { parseAddress, parseCount, untilSignal, UsageError } from "./options.ts";

interface MasterFlags {
  listen: HostPort;
  dataDir: string;
  allocator: AllocatorName;
  token?: string;
  heartbeatTimeout: number;
  ticketTtl: number;
  slurmUrl?: string;
  slurmUser?: string;
  slurmToken?: string;
  slurmPartition?: string;
  slurmPoll: number;
  slurmTimeLimit: number;
  slurmWorkdir: string;
  egoLib?: string;
  egoConfdir?: string;
  egoUser?: string;
  egoPassword?: string;
  egoConsumer: string;
  egoResourceGroup: string;
  egoSettle: number;
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
    .addOption(
      new Option("--slurm-url <url>", "slurm: slurmrestd URL, e.g. http://head:6820")
        .env("SNOWFLOCK_SLURM_URL"),
    )
    .addOption(
      new Option("--slurm-user <name>", "slurm: user the jobs run as (default: $USER)")
        .env("SNOWFLOCK_SLURM_USER"),
    )
    .addOption(
      new Option("--slurm-token <jwt>", "slurm: JWT for that user (scontrol token)")
        .env("SLURM_JWT"),
    )
    .addOption(
      new Option("--slurm-partition <name>", "slurm: partition (default: Slurm's default)")
        .env("SNOWFLOCK_SLURM_PARTITION"),
    )
    .option("--slurm-poll <ms>", "slurm: job/node state poll period", parseCount(50, 60_000), 1000)
    .option(
      "--slurm-time-limit <min>",
      "slurm: time limit of the jobs holding tickets' slots",
      parseCount(1, 525_600),
      1440,
    )
    .option("--slurm-workdir <dir>", "slurm: the jobs' working dir on the nodes", "/tmp")
    .addOption(
      new Option("--ego-lib <path>", "ego: libegosf.so (scripts/build-libegosf.sh SDK_DIR)")
        .env("SNOWFLOCK_EGO_LIB"),
    )
    .addOption(new Option("--ego-confdir <dir>", "ego: EGO client conf dir").env("EGO_CONFDIR"))
    .addOption(new Option("--ego-user <name>", "ego: logon user").env("SNOWFLOCK_EGO_USER"))
    .addOption(
      new Option("--ego-password <pw>", "ego: logon password").env("SNOWFLOCK_EGO_PASSWORD"),
    )
    .addOption(
      new Option("--ego-consumer <path>", "ego: consumer to allocate for").env(
        "SNOWFLOCK_EGO_CONSUMER",
      ).default("/SnowFlock"),
    )
    .addOption(
      new Option("--ego-resource-group <name>", "ego: resource group").env(
        "SNOWFLOCK_EGO_RESOURCE_GROUP",
      ).default("ComputeHosts"),
    )
    .option(
      "--ego-settle <ms>",
      "ego: after the first RESOURCE_ADD, wait this long for more before granting",
      parseCount(0, 60_000),
      1000,
    )
    .option("-v, --verbose", "log every event")
    .action(async (f: MasterFlags) => {
      const logger = createLogger("master", { verbose: f.verbose });
      const svc = await startMaster({
        listen: f.listen,
        dataDir: f.dataDir,
        allocator: f.allocator,
        allocatorSettings: allocatorSettings(f),
        ...(f.token ? { token: f.token } : {}),
        heartbeatTimeoutMs: f.heartbeatTimeout,
        ticketTtlMs: f.ticketTtl,
        logger,
      });
      console.log(`master listening on ${svc.address}, allocator ${f.allocator}`);
      if (!f.token) console.log(`join token: ${svc.token}  (kept in ${svc.dataDir}/token)`);
      await untilSignal();
      await svc.close();
    });
}

/** The chosen allocator's settings from flags/env; a missing required one is a usage error. */
function allocatorSettings(f: MasterFlags): AllocatorSettings {
  const need = (value: string | undefined, flag: string): string => {
    if (!value) throw new UsageError(`--allocator ${f.allocator} needs ${flag}`);
    return value;
  };
  switch (f.allocator) {
    case "builtin":
      return {};
    case "slurm":
      return {
        slurm: {
          url: need(f.slurmUrl, "--slurm-url (or SNOWFLOCK_SLURM_URL)"),
          user: need(f.slurmUser ?? Deno.env.get("USER"), "--slurm-user"),
          token: need(f.slurmToken, "--slurm-token (or SLURM_JWT)"),
          ...(f.slurmPartition ? { partition: f.slurmPartition } : {}),
          pollMs: f.slurmPoll,
          timeLimitMin: f.slurmTimeLimit,
          workDir: f.slurmWorkdir,
        },
      };
    case "ego":
      return {
        ego: {
          library: need(f.egoLib, "--ego-lib (or SNOWFLOCK_EGO_LIB)"),
          confDir: need(f.egoConfdir, "--ego-confdir (or EGO_CONFDIR)"),
          user: need(f.egoUser, "--ego-user (or SNOWFLOCK_EGO_USER)"),
          password: need(f.egoPassword, "--ego-password (or SNOWFLOCK_EGO_PASSWORD)"),
          consumer: f.egoConsumer,
          resourceGroup: f.egoResourceGroup,
          settleMs: f.egoSettle,
        },
      };
  }
}
