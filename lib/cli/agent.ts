/** `snowflock agent`: joins a master and runs VMs until SIGINT/SIGTERM. */
import { Command, Option } from "commander";
import type { HostPort } from "../control/address.ts";
import { startAgent } from "../control/agent_service.ts";
import { DEFAULT_VM_NICE } from "../control/agent_vms.ts";
import { BackendKind } from "../control/messages.ts";
import { createLogger } from "../log.ts";
import {
  parseAddress,
  parseCount,
  parseIPv4,
  parseName,
  untilSignal,
  UsageError,
} from "./options.ts";

interface AgentFlags {
  join?: string;
  token?: string;
  listen: HostPort;
  backend: BackendKind;
  slots?: number;
  advertise?: string;
  schedulerNode?: string;
  name: string;
  memory: "lazy" | "eager";
  vmNice: number;
  mcdist: boolean;
  mcastGroup?: string;
  mcastPort?: number;
  mcastInterface?: string;
  mcastTtl?: number;
  mcastMtu?: number;
  verbose?: boolean;
}

export function agentCommand(): Command {
  return new Command("agent")
    .description("join a master and run VMs on this host")
    .addOption(
      new Option("--join <addr>", "the master's host:port").env("SNOWFLOCK_MASTER"),
    )
    .addOption(new Option("--token <token>", "the master's join token").env("SNOWFLOCK_TOKEN"))
    .option("--listen <addr>", "data-plane listen address (port 0: any)", parseAddress("0.0.0.0"), {
      hostname: "0.0.0.0",
      port: 0,
    })
    .option("--advertise <host>", "address other hosts reach this one at (default: auto)")
    .addOption(
      new Option("--backend <kind>", "VM backend").choices(BackendKind.options).default("wasm"),
    )
    .option("--slots <n>", "clone slots offered (default: cores)", parseCount(0, 4096))
    .option("--name <name>", "host name in the cluster", parseName, Deno.hostname())
    .option(
      "--scheduler-node <name>",
      "this host's node name in the resource manager (Slurm), if not --name",
      parseName,
    )
    .addOption(
      new Option("--memory <mode>", "clone memory: on demand (lazy) or all before running (eager)")
        .choices(["lazy", "eager"]).default("lazy"),
    )
    .option(
      "--vm-nice <n>",
      "nice value of VM threads, 0-19: guests yield to the agent's own threads",
      parseCount(0, 19),
      DEFAULT_VM_NICE,
    )
    .option("--no-mcdist", "send pages to clones on other hosts by unicast only")
    .option(
      "--mcast-group <addr>",
      "first multicast group of forks (default 239.255.77.0)",
      parseIPv4,
    )
    .option("--mcast-port <port>", "UDP port of the groups (default 7077)", parseCount(1, 65535))
    .option("--mcast-interface <addr>", "interface address for multicast (default: --advertise)")
    .option("--mcast-ttl <n>", "multicast TTL (default 1: this link)", parseCount(0, 255))
    .option(
      "--mcast-mtu <bytes>",
      "path MTU of page datagrams (default: the interface's, at most 9000)",
      parseCount(576, 65535),
    )
    .option("-v, --verbose", "log every event")
    .action(async (f: AgentFlags) => {
      if (!f.join) throw new UsageError("missing --join <addr> (or SNOWFLOCK_MASTER)");
      if (!f.token) throw new UsageError("missing --token <token> (or SNOWFLOCK_TOKEN)");
      const logger = createLogger(`agent ${f.name}`, { verbose: f.verbose });
      const svc = await startAgent({
        master: f.join,
        token: f.token,
        name: f.name,
        backend: f.backend,
        ...(f.slots !== undefined ? { slots: f.slots } : {}),
        listen: f.listen,
        ...(f.advertise ? { advertise: f.advertise } : {}),
        ...(f.schedulerNode ? { schedulerNode: f.schedulerNode } : {}),
        memory: f.memory,
        vmNice: f.vmNice,
        mcdist: f.mcdist && {
          ...(f.mcastGroup ? { group: f.mcastGroup } : {}),
          ...(f.mcastPort ? { port: f.mcastPort } : {}),
          ...(f.mcastInterface ? { interface: f.mcastInterface } : {}),
          ...(f.mcastTtl !== undefined ? { ttl: f.mcastTtl } : {}),
          ...(f.mcastMtu !== undefined ? { mtu: f.mcastMtu } : {}),
        },
        logger,
      });
      console.log(`agent ${f.name} data plane on ${svc.dataAddress}, joining ${f.join}`);
      try {
        await Promise.race([untilSignal(), svc.agent.refused]);
      } finally {
        await svc.close();
      }
    });
}
