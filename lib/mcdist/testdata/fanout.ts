/**
 * Test support for mcdist across hosts, without VMs: a synthetic fork whose every page can be
 * checked, served by mcdist on one namespace host to client processes on the others that
 * request a working set as faulting clones would. Reports server bytes, packets, re-asks and
 * lockstep figures per N; throws when a page arrived corrupted or a client did not finish.
 * (`snowflock bench fanout` measures the same with real clones: lib/bench/fanout.ts.)
 */

import { createHosts, type HostNet } from "../../netns/hosts.ts";
import type { HarnessProcess } from "../../netns/process.ts";
import { DEFAULT_PORT } from "../config.ts";
import type { DriveResult } from "./fanout_clones.ts";
import { type HostSpec, type ServerSpec, toHex } from "./fanout_spec.ts";

export interface FanoutOptions {
  /** Datagram loss in percent, injected by nftables on every host. */
  loss?: number;
  /** Clone counts to measure. */
  sizes?: number[];
  /** Clone hosts (namespaces); the memory server gets one more. */
  hosts?: number;
  /** Working-set size in pages (every 16th page is a zero page and is not fetched). */
  pages?: number;
  pageSize?: number;
  /** Faults in flight per clone. */
  outstanding?: number;
  /**
   * One process and PageClient per clone instead of one per host shared by the host's clones (as
   * memtap shares it): more receivers of every multicast datagram.
   */
  clientPerClone?: boolean;
  /** Give up on one N after this long. */
  timeoutMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface FanoutResult {
  clones: number;
  server_bytes: number;
  server_packets: number;
  finish_ms: number;
  multicast_bytes: number;
  /** Pages the server sent more than once. */
  retransmissions: number;
  /** Requests the clients sent again after a timeout. */
  reasks: number;
  lockstep_ignored: number;
}

export interface FanoutReport {
  pages: number;
  page_size: number;
  hosts: number;
  loss_percent: number;
  results: FanoutResult[];
  bytes_ratio_16_1: number;
  time_ratio_16_1: number;
  /** Server retransmissions over all N; only with loss. */
  retransmissions?: number;
}

const HERE = new URL(".", import.meta.url).pathname;
const SERVER_SCRIPT = `${HERE}fanout_server.ts`;
const HOST_SCRIPT = `${HERE}fanout_host.ts`;

export async function syntheticFanout(opts: FanoutOptions = {}): Promise<FanoutReport> {
  const sizes = opts.sizes ?? [1, 2, 4, 8, 16];
  const hostCount = opts.hosts ?? 4;
  const loss = opts.loss ?? 0;
  const log = opts.log ?? (() => {});
  await using net = await createHosts(hostCount + 1);
  if (loss > 0) { for (const host of net.hosts) await net.addLoss(host, { percent: loss }); }
  const results: FanoutResult[] = [];
  for (const clones of sizes) {
    const result = await runOne(net, clones, hostCount, opts);
    log(`fanout: ${clones} clones: ${JSON.stringify(result)}`);
    results.push(result);
  }
  const one = results.find((r) => r.clones === 1);
  const sixteen = results.find((r) => r.clones === 16);
  const ratio = (key: "server_bytes" | "finish_ms") =>
    one && sixteen ? round(sixteen[key] / one[key], 3) : NaN;
  const report: FanoutReport = {
    pages: opts.pages ?? 1024,
    page_size: opts.pageSize ?? 4096,
    hosts: hostCount,
    loss_percent: loss,
    results,
    bytes_ratio_16_1: ratio("server_bytes"),
    time_ratio_16_1: ratio("finish_ms"),
  };
  if (loss > 0) report.retransmissions = results.reduce((sum, r) => sum + r.retransmissions, 0);
  return report;
}

/** One N: a fresh server process and fork, the clones placed round robin over the hosts. */
async function runOne(
  net: HostNet,
  clones: number,
  hostCount: number,
  opts: FanoutOptions,
): Promise<FanoutResult> {
  const pageSize = opts.pageSize ?? 4096;
  const pages = opts.pages ?? 1024;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const [serverHost, ...cloneHosts] = net.hosts.slice(0, hostCount + 1);
  const base = {
    forkId: toHex(crypto.getRandomValues(new Uint8Array(16))),
    key: toHex(crypto.getRandomValues(new Uint8Array(32))),
    pageSize,
    pageCount: pages,
  };
  const serverSpec: ServerSpec = {
    ...base,
    clones,
    config: { interface: serverHost.address, port: DEFAULT_PORT },
  };
  const server = net.spawn(serverHost, deno(SERVER_SCRIPT, serverSpec));
  const spawned: HarnessProcess[] = [server];
  try {
    const address = (await server.waitForLine(/^ready /, 30_000)).slice("ready ".length);
    const perHost = cloneHosts.map((_, i) =>
      Math.floor(clones / hostCount) + (i < clones % hostCount ? 1 : 0)
    );
    const hosts = cloneHosts.flatMap((host, i) => {
      const processes = opts.clientPerClone ? perHost[i] : Math.min(1, perHost[i]);
      return Array.from({ length: processes }, () => {
        const spec: HostSpec = {
          ...base,
          server: address,
          clones: opts.clientPerClone ? 1 : perHost[i],
          workingSetPages: pages,
          outstanding: opts.outstanding ?? 8,
          config: { interface: host.address, port: DEFAULT_PORT },
        };
        const child = net.spawn(host, deno(HOST_SCRIPT, spec));
        spawned.push(child);
        return child;
      });
    });
    await Promise.all(hosts.map((h) => h.waitForLine(/^ready$/, 30_000)));
    const start = performance.now();
    for (const h of hosts) h.kill("SIGUSR1");
    const done = await Promise.all(hosts.map((h) => h.waitForLine(/^done /, timeoutMs)));
    const finish = performance.now() - start;
    const drives = done.map((line) =>
      JSON.parse(line.slice("done ".length)) as DriveResult & {
        stats: { retransmits: number };
      }
    );
    const bad = drives.reduce((sum, d) => sum + d.bad, 0);
    if (bad > 0) throw new Error(`Cannot trust the fan-out run: ${bad} pages arrived corrupted`);
    server.kill("SIGUSR2");
    const stats = JSON.parse((await server.waitForLine(/^stats /, 10_000)).slice(6));
    return {
      clones,
      server_bytes: stats.bytesSent,
      server_packets: stats.packetsSent,
      finish_ms: Math.round(finish),
      multicast_bytes: stats.multicastBytes,
      retransmissions: stats.retransmits,
      reasks: drives.reduce((sum, d) => sum + d.stats.retransmits, 0),
      lockstep_ignored: stats.lockstepIgnored,
    };
  } finally {
    await Promise.all(spawned.map((p) => p.stop()));
  }
}

function deno(script: string, spec: unknown): string[] {
  return [Deno.execPath(), "run", "-A", script, JSON.stringify(spec)];
}

function round(value: number, digits: number): number {
  return Number(value.toFixed(digits));
}
