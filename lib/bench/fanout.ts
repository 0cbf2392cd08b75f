/**
 * `bench fanout`: what N clones cost the memory server. A parent on one
 * namespace host forks N = 1, 2, 4, 8, 16 clones spread over 4 other namespace
 * hosts; every clone reads the same working set, on demand, through mcdist.
 * Reported per N: the bytes and packets the parent's memory server sent and
 * the time from sf_clone until every clone finished (the join). Every clone's
 * sum of its working set is checked: a fast wrong answer is no result. Multicast
 * should make 16 clones cost about what one does; optional datagram loss is
 * injected in the hosts' kernels (nftables).
 *
 * A fork of the largest N goes first, unreported, so that no N pays for a
 * host's first fork (compiling the guest, starting spare workers) or for a
 * worker's first guest: VM and fault workers are reused, and a slot whose
 * worker never ran compiles its code again (the first 16-clone run took 1.1–1.7
 * s after a warm-up of 4 clones, the later ones 0.5–1.1 s). Each
 * N is then measured `repeat` times, the sizes taking turns, and the run with
 * the median finish time is reported: on a small machine one run of 16 VMs
 * varies by half. Runs are a second apart, so that none pays for the one
 * before (its hosts restarting spare workers, returning memory).
 *
 * The hosts share this machine's cores, so each run also reports the CPU time
 * the machine was busy from sf_clone to the join and how long threads waited
 * for a CPU meanwhile (cpu_meter.ts): with 16 clones every core is busy, and
 * the finish time is bounded by CPU that real hosts would not share.
 */
import { createHosts } from "../netns/hosts.ts";
import { runJob } from "../cli/run_job.ts";
import { benchGuest } from "./cluster_run.ts";
import { startNetnsCluster } from "./netns_cluster.ts";
import { CpuMeter } from "./cpu_meter.ts";
import { percentile, round2 } from "./stats.ts";

/** Quiet time before each measured run. */
const SETTLE_MS = 1000;
/** Runs of each N: a 16-clone run on 2 cores varies between about 0.5 and 1.1 s. */
export const DEFAULT_FANOUT_REPEAT = 5;

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
  /** Runs of each N; the median is reported. Default {@link DEFAULT_FANOUT_REPEAT}. */
  repeat?: number;
  log?: (line: string) => void;
}

export interface FanoutResult {
  clones: number;
  server_bytes: number;
  server_packets: number;
  finish_ms: number;
  multicast_bytes: number;
  retransmissions: number;
  /** CPU time the machine's cores were busy from sf_clone to the join, summed over cores. */
  cpu_ms: number;
  /** Of that wall time, how long some thread was ready to run but waited for a CPU (PSI). */
  cpu_wait_ms?: number;
  /** finish_ms of every run of this N, in the order run. */
  runs_ms: number[];
}

export interface FanoutReport {
  hosts: number;
  memory_mib: number;
  working_set_pages: number;
  mtu: number;
  loss_percent: number;
  /** Cores of the machine all hosts share. */
  cores: number;
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
  const repeat = o.repeat ?? DEFAULT_FANOUT_REPEAT;
  const log = o.log ?? (() => {});
  const wasm = await benchGuest("working_set");
  await using net = await createHosts(hosts + 1, { mtu });
  await using cluster = await startNetnsCluster(net, {
    cloneSlots: Math.ceil(Math.max(...sizes) / hosts),
  });
  for (const host of net.hosts.slice(1)) {
    if (loss > 0) await net.addLoss(host, { percent: loss });
  }
  // The parent fills its buffer with 0x5a: each clone's sum of its working set.
  const expected = `sum ${pages * 0x5a}`;
  using meter = new CpuMeter();
  const measure = async (clones: number): Promise<Omit<FanoutResult, "runs_ms">> => {
    const sums = new Map<number, string>();
    const run = await runJob({
      client: cluster.client,
      wasmPath: wasm,
      args: [String(clones), String(mib), String(pages)],
      host: "node0",
      onLine: (clone, _stream, line) => {
        if (clone > 0 && line.startsWith("sum ")) sums.set(clone, line);
      },
    });
    if (run.exitCode !== 0) {
      throw new Error(`Cannot measure ${clones} clones: the guest exited ${run.exitCode}`);
    }
    for (let clone = 1; clone <= clones; clone++) {
      if (sums.get(clone) !== expected) {
        throw new Error(
          `Cannot measure ${clones} clones: clone ${clone} printed ${
            sums.get(clone) ?? "no sum"
          }, not ${expected}: it read wrong memory`,
        );
      }
    }
    const fork = (await cluster.client.status()).clusters.find((c) => c.parentVm === run.vm.id);
    const m = fork?.memory;
    const finishMs = fork?.timeline.joinedMs ?? 0;
    const start = fork ? Date.parse(fork.createdAt) : NaN;
    const cpu = meter.useBetween(start, start + finishMs);
    return {
      clones,
      server_bytes: m?.bytesSent ?? 0,
      server_packets: m?.packetsSent ?? 0,
      finish_ms: round2(finishMs),
      multicast_bytes: m?.multicastBytes ?? 0,
      retransmissions: m?.retransmits ?? 0,
      cpu_ms: round2(cpu?.cpuMs ?? 0),
      ...(cpu?.waitMs !== undefined ? { cpu_wait_ms: round2(cpu.waitMs) } : {}),
    };
  };
  const warmUp = Math.max(hosts, ...sizes);
  log(`fanout: warm-up fork of ${warmUp} clones`);
  await measure(warmUp);
  const runs = new Map<number, Omit<FanoutResult, "runs_ms">[]>(sizes.map((n) => [n, []]));
  for (let i = 0; i < repeat; i++) {
    for (const clones of sizes) {
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const result = await measure(clones);
      log(`fanout: ${JSON.stringify(result)}`);
      runs.get(clones)!.push(result);
    }
  }
  const results: FanoutResult[] = sizes.map((clones) => {
    const all = runs.get(clones)!;
    const middle = percentile(all.map((r) => r.finish_ms), 0.5);
    const median = all.find((r) => r.finish_ms === middle)!;
    return { ...median, runs_ms: all.map((r) => r.finish_ms) };
  });
  const one = results.find((r) => r.clones === 1);
  const sixteen = results.find((r) => r.clones === 16);
  const ratio = (a?: number, b?: number) => (a && b ? round2(a / b) : 0);
  return {
    hosts,
    memory_mib: mib,
    working_set_pages: pages,
    mtu,
    loss_percent: loss,
    cores: navigator.hardwareConcurrency,
    results,
    bytes_ratio_16_1: ratio(sixteen?.server_bytes, one?.server_bytes),
    time_ratio_16_1: ratio(sixteen?.finish_ms, one?.finish_ms),
    retransmissions: results.reduce((n, r) => n + r.retransmissions, 0),
  };
}
