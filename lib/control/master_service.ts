/** Starts a master: data dir, state database, token, allocator, HTTP listener. */
import { join } from "node:path";
import { type AllocatorName, type AllocatorSettings, createAllocator } from "../allocator/mod.ts";
import type { Logger } from "../log.ts";
import type { HostPort } from "./address.ts";
import { Master } from "./master.ts";
import { serveMasterHttp } from "./master_http.ts";
import { Store } from "./store.ts";
import { loadOrCreateToken } from "./token.ts";

export interface MasterServiceOptions {
  listen: HostPort;
  dataDir: string;
  allocator: AllocatorName;
  /** Settings of the chosen allocator (Slurm URL and token, EGO library, ...). */
  allocatorSettings?: AllocatorSettings;
  token?: string;
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
  ticketTtlMs?: number;
  logger: Logger;
}

export interface MasterService {
  master: Master;
  /** host:port the HTTP listener is bound to. */
  address: string;
  token: string;
  dataDir: string;
  close(): Promise<void>;
}

export async function startMaster(o: MasterServiceOptions): Promise<MasterService> {
  await Deno.mkdir(o.dataDir, { recursive: true });
  const token = await loadOrCreateToken(o.dataDir, o.token);
  const store = Store.open(join(o.dataDir, "state.db"));
  const moduleDir = join(o.dataDir, "modules");
  await Deno.mkdir(moduleDir, { recursive: true });
  const allocator = createAllocator(
    o.allocator,
    o.allocatorSettings ?? {},
    o.logger.child(`allocator-${o.allocator}`),
  );
  const master = new Master({
    store,
    moduleDir,
    allocator,
    token,
    logger: o.logger,
    heartbeatMs: o.heartbeatMs ?? 1000,
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 5000,
    ticketTtlMs: o.ticketTtlMs ?? 60_000,
  });
  let http;
  try {
    http = await serveMasterHttp({ master, token, ...o.listen, logger: o.logger });
  } catch (e) {
    master.close();
    store.close();
    throw e;
  }
  o.logger.info("master listening", { address: http.address, dataDir: o.dataDir });
  return {
    master,
    address: http.address,
    token,
    dataDir: o.dataDir,
    close: async () => {
      master.close();
      await http.shutdown();
      await allocator.close();
      store.close();
    },
  };
}
