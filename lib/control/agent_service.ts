/** Starts an agent: probes backends, opens the data plane, joins the master. */
import { probeAll } from "../backend/backend.ts";
import type { BackendKind } from "./messages.ts";
import type { Logger } from "../log.ts";
import { type HostPort, parseHostPort, sourceAddressFor } from "./address.ts";
import { Agent, AgentError } from "./agent.ts";
import { type DataServer, serveAgentData } from "./agent_http.ts";

export interface AgentServiceOptions {
  master: string;
  token: string;
  name: string;
  backend: BackendKind;
  slots?: number;
  /** Data-plane listen address; port 0 picks a free one. */
  listen: HostPort;
  logger: Logger;
}

export interface AgentService {
  agent: Agent;
  data: DataServer;
  dataAddress: string;
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
  const advertised = o.listen.hostname === "0.0.0.0"
    ? await sourceAddressFor(master)
    : o.listen.hostname;
  const dataAddress = `${advertised}:${data.port}`;
  const agent = new Agent({
    master: `${master.hostname}:${master.port}`,
    token: o.token,
    name: o.name,
    slots: o.slots ?? (navigator.hardwareConcurrency || 1),
    backends,
    dataAddress,
    logger: o.logger,
  });
  return {
    agent,
    data,
    dataAddress,
    close: async () => {
      agent.close();
      await data.shutdown();
    },
  };
}
