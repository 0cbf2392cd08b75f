/**
 * An embedded cluster: one master and N agents in this process on loopback,
 * for the demo, the benchmarks and tests. Each agent is a full agent (own data
 * plane, own control connection); only the process is shared.
 */
import type { AllocatorName, AllocatorSettings } from "../allocator/mod.ts";
import type { Logger } from "../log.ts";
import type { AgentService } from "./agent_service.ts";
import { startAgent } from "./agent_service.ts";
import type { MasterService } from "./master_service.ts";
import { startMaster } from "./master_service.ts";

export interface EmbeddedOptions {
  hosts: number;
  slotsPerHost: number;
  dataDir: string;
  logger: Logger;
  /** Master HTTP port; 0 picks a free one. */
  port?: number;
  /** Default: builtin. */
  allocator?: AllocatorName;
  allocatorSettings?: AllocatorSettings;
  /** Agent i's node name in the resource manager (`schedulerNodes[i - 1]`), when it has one. */
  schedulerNodes?: string[];
}

export interface EmbeddedCluster {
  master: MasterService;
  agents: AgentService[];
  close(): Promise<void>;
}

export async function startEmbeddedCluster(o: EmbeddedOptions): Promise<EmbeddedCluster> {
  const master = await startMaster({
    listen: { hostname: "127.0.0.1", port: o.port ?? 0 },
    dataDir: o.dataDir,
    allocator: o.allocator ?? "builtin",
    ...(o.allocatorSettings ? { allocatorSettings: o.allocatorSettings } : {}),
    logger: o.logger.child("master"),
  });
  const agents: AgentService[] = [];
  try {
    for (let i = 1; i <= o.hosts; i++) {
      agents.push(
        await startAgent({
          master: master.address,
          token: master.token,
          name: `host${i}`,
          backend: "wasm",
          slots: o.slotsPerHost,
          ...(o.schedulerNodes?.[i - 1] ? { schedulerNode: o.schedulerNodes[i - 1] } : {}),
          listen: { hostname: "127.0.0.1", port: 0 },
          logger: o.logger.child(`host${i}`),
        }),
      );
    }
    await Promise.all(agents.map((a) => Promise.race([a.agent.joined, a.agent.refused])));
  } catch (e) {
    await Promise.all(agents.map((a) => a.close()));
    await master.close();
    throw e;
  }
  return {
    master,
    agents,
    close: async () => {
      // The master first, so agents leaving is not reported as hosts going down.
      await master.close();
      await Promise.all(agents.map((a) => a.close()));
    },
  };
}
