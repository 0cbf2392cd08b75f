/**
 * `snowflock bench clone`: an embedded cluster on loopback; a guest forks
 * `clones` clones over `hosts` hosts `rounds` times. Reports the parent's
 * pause, the descriptor's size, and sf_clone → every clone running.
 */
import { join } from "node:path";
import { runJob } from "../cli/run_job.ts";
import { defaultCacheDir } from "../control/agent_service.ts";
import { MasterClient } from "../control/client.ts";
import { startEmbeddedCluster } from "../control/embedded.ts";
import { buildCached } from "../guest/cc.ts";
import { createLogger } from "../log.ts";
import { percentile, round2 } from "./stats.ts";

export interface CloneBenchOptions {
  clones: number;
  hosts: number;
  rounds: number;
  /** Heap the parent holds, in MiB. */
  heapMib: number;
  /** The parent's work between forks, in ms. */
  thinkMs: number;
  onProgress?: (message: string) => void;
}

export interface CloneBenchReport {
  bench: "clone";
  clones: number;
  hosts: number;
  rounds: number;
  heap_mib: number;
  think_ms: number;
  parent_pause_p50_ms: number;
  parent_pause_p99_ms: number;
  descriptor_bytes: number;
  clones_ready_p50_ms: number;
  clones_ready_p99_ms: number;
  /** The first fork also prepares the module on every host; it is not in the percentiles. */
  first_fork_ready_ms: number;
  goal_ready_ms: number;
}

const GUEST = new URL("../../native/bench/fork_loop.c", import.meta.url).pathname;

export async function benchClone(o: CloneBenchOptions): Promise<CloneBenchReport> {
  const wasm = await buildCached(GUEST, join(defaultCacheDir(), "bench"), {
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  const dataDir = await Deno.makeTempDir({ prefix: "snowflock-bench-" });
  const cluster = await startEmbeddedCluster({
    hosts: o.hosts,
    slotsPerHost: Math.ceil(o.clones / o.hosts),
    dataDir,
    logger: createLogger("bench", { quiet: true }),
  });
  try {
    const client = new MasterClient(cluster.master.address, cluster.master.token);
    o.onProgress?.(`forking ${o.clones} clones over ${o.hosts} hosts, ${o.rounds + 1} rounds`);
    const errors: string[] = [];
    const run = await runJob({
      client,
      wasmPath: wasm,
      args: [String(o.clones), String(o.rounds + 1), String(o.heapMib), String(o.thinkMs)],
      onLine: (clone, stream, line) => {
        if (stream === "stderr") errors.push(clone ? `[clone ${clone}] ${line}` : line);
      },
    });
    if (run.exitCode !== 0) {
      throw new Error(
        `Cannot benchmark clone: the guest exited ${run.exitCode}: ${errors.join("; ")}`,
      );
    }
    const forks = (await client.status()).clusters
      .filter((c) => c.parentVm === run.vm.id)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const [first, ...rest] = forks;
    const pauses = rest.map((c) => c.timeline.pauseMs ?? 0);
    const ready = rest.map((c) => c.timeline.readyMs ?? 0);
    return {
      bench: "clone",
      clones: o.clones,
      hosts: o.hosts,
      rounds: rest.length,
      heap_mib: o.heapMib,
      think_ms: o.thinkMs,
      parent_pause_p50_ms: round2(percentile(pauses, 0.5)),
      parent_pause_p99_ms: round2(percentile(pauses, 0.99)),
      descriptor_bytes: percentile(rest.map((c) => c.timeline.descriptorBytes ?? 0), 0.5),
      clones_ready_p50_ms: round2(percentile(ready, 0.5)),
      clones_ready_p99_ms: round2(percentile(ready, 0.99)),
      first_fork_ready_ms: round2(first?.timeline.readyMs ?? 0),
      goal_ready_ms: 300,
    };
  } finally {
    await cluster.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}
