/**
 * `bench lazy-vs-eager`: a guest with a big memory forks one clone per host that reads a small
 * working set; clone-ready time and pages moved with memory-on-demand vs a full copy first,
 * measured side by side in one run.
 */
import { benchGuest, type ClusterRun, runOnCluster } from "./cluster_run.ts";

export interface LazyVsEagerOptions {
  /** Guest memory in MiB. Default 512. */
  memoryMib?: number;
  /** Pages each clone reads. Default 256. */
  touchPages?: number;
  /** Agents (one clone each). Default 2. */
  hosts?: number;
}

export interface LazyVsEagerReport {
  memory_mib: number;
  clones: number;
  lazy_ready_ms: number;
  eager_ready_ms: number;
  /** eager / lazy. */
  ready_ratio: number;
  /** Pages each clone really reads. */
  pages_read: number;
  /** Pages a lazy clone fetched (median). */
  pages_fetched: number;
  lazy_bytes: number;
  eager_bytes: number;
}

export async function benchLazyVsEager(o: LazyVsEagerOptions = {}): Promise<LazyVsEagerReport> {
  const mib = o.memoryMib ?? 512;
  const touch = o.touchPages ?? 256;
  const hosts = o.hosts ?? 2;
  const wasm = await benchGuest("working_set");
  const run = (memory: "lazy" | "eager") =>
    runOnCluster({
      wasm,
      args: [String(hosts), String(mib), String(touch)],
      hosts,
      env: { SNOWFLOCK_MEMORY: memory },
    });
  const lazy = await run("lazy");
  const eager = await run("eager");
  const readyMs = (r: ClusterRun) => r.forks[0]?.timeline.readyMs ?? NaN;
  const bytes = (r: ClusterRun) => r.forks[0]?.memory?.bytesSent ?? 0;
  const fetched = lazy.forks[0]?.members.map((m) => m.memory?.pagesFetched ?? 0) ?? [];
  return {
    memory_mib: mib,
    clones: hosts,
    lazy_ready_ms: round(readyMs(lazy)),
    eager_ready_ms: round(readyMs(eager)),
    ready_ratio: round(readyMs(eager) / readyMs(lazy)),
    pages_read: touch,
    pages_fetched: fetched.sort((a, b) => a - b)[Math.floor((fetched.length - 1) / 2)] ?? 0,
    lazy_bytes: bytes(lazy),
    eager_bytes: bytes(eager),
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
