/**
 * `bench fanout`: what N clones cost the memory server. A parent on one
 * namespace host forks N = 1, 2, 4, 8, 16 clones spread over 4 other namespace
 * hosts; every clone reads the same working set, on demand, through mcdist.
 * Reported per N: the bytes and packets the parent's memory server sent and
 * the time from sf_clone until every clone finished (the join). Multicast
 * should make 16 clones cost about what one does; optional datagram loss is
 * injected in the hosts' kernels (nftables).
 */
import { createHosts } from "../netns/hosts.ts";
import { runJob } from "../cli/run_job.ts";
import { benchGuest } from "./cluster_run.ts";
import { startNetnsCluster } from "./netns_cluster.ts";
import { round2 } from "./stats.ts";

export interface FanoutOptions {
  /** Datagram loss in percent, injected on every clone host. */
  loss?: number;
  /** Clone counts to measure. */
  sizes?: number[];
  /** Clone hosts (namespaces); the parent gets one more. */
  hosts?: number;
  /** The parent's buffer, in MiB. */
  memoryMib?: number;
  /** Pages of it every clone reads. */
  workingSetPages?: number;
  /** MTU of the hosts' links (mcdist sizes its datagrams to it). Default 9000: jumbo frames. */
  mtu?: number;
  log?: (line: string) => void;
}

export interface FanoutResult {
  clones: number;
  server_bytes: number;
  server_packets: number;
  finish_ms: number;
  multicast_bytes: number;
  retransmissions: number;
}

export interface FanoutReport {
  hosts: number;
  memory_mib: number;
  working_set_pages: number;
  mtu: number;
  loss_percent: number;
  results: FanoutResult[];
  bytes_ratio_16_1: number;
  time_ratio_16_1: number;
  retransmissions: number;
}

export async function benchFanout(o: FanoutOptions = {}): Promise<FanoutReport> {
  const sizes = o.sizes ?? [1, 2, 4, 8, 16];
  const hosts = o.hosts ?? 4;
  const mib = o.memoryMib ?? 64;
  const pages = o.workingSetPages ?? 4096;
  const loss = o.loss ?? 0;
  const mtu = o.mtu ?? 9000;
  const log = o.log ?? (() => {});
  const wasm = await benchGuest("working_set");
  await using net = await createHosts(hosts + 1, { mtu });
  const { client } = await startNetnsCluster(net, {
    cloneSlots: Math.ceil(Math.max(...sizes) / hosts),
  });
  for (const host of net.hosts.slice(1)) {
    if (loss > 0) await net.addLoss(host, { percent: loss });
  }
  const results: FanoutResult[] = [];
  for (const clones of sizes) {
    const run = await runJob({
      client,
      wasmPath: wasm,
      args: [String(clones), String(mib), String(pages)],
      host: "node0",
      onLine: () => {},
    });
    if (run.exitCode !== 0) {
      throw new Error(`Cannot measure ${clones} clones: the guest exited ${run.exitCode}`);
    }
    const fork = (await client.status()).clusters.find((c) => c.parentVm === run.vm.id);
    const m = fork?.memory;
    const result: FanoutResult = {
      clones,
      server_bytes: m?.bytesSent ?? 0,
      server_packets: m?.packetsSent ?? 0,
      finish_ms: round2(fork?.timeline.joinedMs ?? 0),
      multicast_bytes: m?.multicastBytes ?? 0,
      retransmissions: m?.retransmits ?? 0,
    };
    log(`fanout: ${JSON.stringify(result)}`);
    results.push(result);
  }
  const one = results.find((r) => r.clones === 1);
  const sixteen = results.find((r) => r.clones === 16);
  const ratio = (a?: number, b?: number) => (a && b ? round2(a / b) : 0);
  return {
    hosts,
    memory_mib: mib,
    working_set_pages: pages,
    mtu,
    loss_percent: loss,
    results,
    bytes_ratio_16_1: ratio(sixteen?.server_bytes, one?.server_bytes),
    time_ratio_16_1: ratio(sixteen?.finish_ms, one?.finish_ms),
    retransmissions: results.reduce((n, r) => n + r.retransmissions, 0),
  };
}
