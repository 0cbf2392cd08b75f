/** Starts an agent: probes backends, opens the data plane, joins the master. */
import { probeAll } from "../backend/backend.ts";
import { holdWorkerPool } from "../backend/wasm/mod.ts";
import { holdFaultWorkers } from "../memory/fault_worker_handle.ts";
import {
  type McdistConfig,
  type McdistServer,
  type McdistStatus,
  probeMulticast,
  resolveConfig,
  startMcdistServer,
} from "../mcdist/mod.ts";
import type { BackendKind, MemoryTransportInfo } from "./messages.ts";
import type { Logger } from "../log.ts";
import { type HostPort, localAddressFacing, parseHostPort } from "./address.ts";
import { Agent, AgentError } from "./agent.ts";
import { type DataServer, serveAgentData } from "./agent_http.ts";
import { AgentVms, type MemoryMode } from "./agent_vms.ts";
import { XenAgentVms } from "../backend/xen/agent.ts";
import type { MasterCall } from "./messages.ts";

/** What runs an agent's VMs: the wasm engine or Xen domains. */
export interface BackendVms {
  handle(call: MasterCall): Promise<unknown>;
  close(): Promise<void>;
}

export interface AgentServiceOptions {
  master: string;
  token: string;
  name: string;
  backend: BackendKind;
  slots?: number;
  /** This host's node name in the resource manager (e.g. Slurm), when it differs from `name`. */
  schedulerNode?: string;
  /** Data-plane listen address; port 0 picks a free one. */
  listen: HostPort;
  /** The address other hosts reach this one at (default: the interface facing the master). */
  advertise?: string;
  /** Where VMs' working dirs live; default: a temp dir removed when the agent stops. */
  workDir?: string;
  /** Where prepared modules are cached by content hash. */
  cacheDir?: string;
  /** How clones get their memory: on demand (default) or all before they run. */
  memory?: MemoryMode;
  /** Nice value of VM threads (wasm backend); default DEFAULT_VM_NICE. */
  vmNice?: number;
  /**
   * mcdist for clones on other hosts (default on; the interface defaults to the advertised
   * address); false: every clone fetches by unicast.
   */
  mcdist?: false | Partial<McdistConfig>;
  logger: Logger;
}

export interface AgentService {
  agent: Agent;
  data: DataServer;
  dataAddress: string;
  vms: BackendVms;
  close(): Promise<void>;
}

export async function startAgent(o: AgentServiceOptions): Promise<AgentService> {
  const backends = probeAll();
  const chosen = backends.find((b) => b.kind === o.backend)!;
  if (!chosen.available) {
    throw new AgentError(`Cannot start agent: backend ${o.backend} unavailable: ${chosen.reason}`);
  }
  const master = parseHostPort(o.master);
  const data = await serveAgentData(o.listen, o.logger);
  const advertised = o.advertise ??
    (o.listen.hostname === "0.0.0.0" ? await localAddressFacing(master) : o.listen.hostname);
  const dataAddress = `${advertised}:${data.port}`;
  const workDir = o.workDir ?? await Deno.makeTempDir({ prefix: `snowflock-${o.name}-` });
  const multicast = o.mcdist === false
    ? undefined
    : await startMulticast({ interface: advertised, ...o.mcdist }, o.logger);
  const agent = new Agent({
    master: `${master.hostname}:${master.port}`,
    token: o.token,
    name: o.name,
    slots: o.slots ?? (navigator.hardwareConcurrency || 1),
    ...(o.schedulerNode ? { schedulerNode: o.schedulerNode } : {}),
    backends,
    dataAddress,
    memoryTransport: multicast?.info ?? { mode: "off" },
    logger: o.logger,
    // Calls arrive on later event-loop turns, after `vms` below is set.
    onRequest: (call) => vms.handle(call),
  });
  // Wasm clones start on pre-started workers (a VM's and its memtap's) and reused memories: one
  // per slot, up to a sane number.
  const spares = Math.min(o.slots ?? 4, 16);
  const releasePools = o.backend === "wasm"
    ? [holdWorkerPool(spares), holdFaultWorkers(spares)]
    : [];
  const masterAddress = `${master.hostname}:${master.port}`;
  const vms: BackendVms = o.backend === "xen"
    ? new XenAgentVms({
      agent,
      master: masterAddress,
      token: o.token,
      advertiseHost: advertised,
      workDir,
      ...(multicast ? { multicast } : {}),
      logger: o.logger,
    })
    : new AgentVms({
      agent,
      data,
      dataAddress,
      master: masterAddress,
      token: o.token,
      workDir,
      cacheDir: o.cacheDir ?? defaultCacheDir(),
      ...(o.memory ? { memory: o.memory } : {}),
      ...(o.vmNice !== undefined ? { vmNice: o.vmNice } : {}),
      ...(multicast ? { multicast } : {}),
      spareMemories: spares,
      logger: o.logger,
    });
  return {
    agent,
    data,
    dataAddress,
    vms,
    close: async () => {
      await vms.close();
      for (const release of releasePools) release();
      agent.close();
      await data.shutdown();
      if (!o.workDir) await Deno.remove(workDir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Probes multicast on the configured interface and starts this host's mcdist
 * server: replies to groups where multicast works, unicast mcdist where not.
 */
async function startMulticast(
  partial: Partial<McdistConfig>,
  logger: Logger,
): Promise<
  { server: McdistServer; status: McdistStatus; config: McdistConfig; info: MemoryTransportInfo }
> {
  const config = resolveConfig(partial);
  const status = await probeMulticast(config);
  if (status.mode !== "multicast") {
    logger.warn(`multicast unavailable: ${status.reason}; mcdist answers clones by unicast`);
  }
  const server = await startMcdistServer({
    config,
    mode: status.mode,
    listen: `${config.interface}:0`,
  });
  const info: MemoryTransportInfo = {
    mode: status.mode,
    group: config.group,
    port: config.port,
    interface: config.interface,
    ttl: config.ttl,
    mtu: config.mtu,
    ...(status.reason ? { reason: status.reason } : {}),
  };
  return { server, status, config, info };
}

/** $XDG_CACHE_HOME/snowflock, else ~/.cache/snowflock. */
export function defaultCacheDir(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME") ?? "/tmp";
  return `${xdg || `${home}/.cache`}/snowflock`;
}
