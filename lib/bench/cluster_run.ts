/**
 * Benchmark helper: run one guest on a fresh embedded cluster (master + agents on loopback)
 * with some environment set for the agents (SNOWFLOCK_MEMORY, SNOWFLOCK_AVOID), and return its
 * impromptu clusters as the master saw them.
 */
import { join } from "node:path";
import { runJob } from "../cli/run_job.ts";
import { defaultCacheDir } from "../control/agent_service.ts";
import { MasterClient } from "../control/client.ts";
import { startEmbeddedCluster } from "../control/embedded.ts";
import type { ClusterView } from "../control/messages.ts";
import { buildCached } from "../guest/cc.ts";
import { createLogger } from "../log.ts";

/** A benchmark guest of lib/bench/guests/, compiled once per content hash. */
export function benchGuest(name: string): Promise<string> {
  const source = new URL(`./guests/${name}.c`, import.meta.url).pathname;
  return buildCached(source, join(defaultCacheDir(), "bench-guests"));
}

export interface ClusterRun {
  exitCode: number;
  forks: ClusterView[];
  /** Guest output lines by clone id (0 = the parent). */
  lines: Map<number, string[]>;
}

/** Run `wasm args` on `hosts` agents with `env` set while the cluster lives. */
export async function runOnCluster(
  o: { wasm: string; args: string[]; hosts: number; env?: Record<string, string> },
): Promise<ClusterRun> {
  const saved = new Map(Object.keys(o.env ?? {}).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(o.env ?? {})) Deno.env.set(k, v);
  const dataDir = await Deno.makeTempDir({ prefix: "snowflock-bench-" });
  const logger = createLogger("bench", { quiet: true, sink: () => {} });
  try {
    const cluster = await startEmbeddedCluster({
      hosts: o.hosts,
      slotsPerHost: 4,
      dataDir,
      logger,
    });
    try {
      const client = new MasterClient(cluster.master.address, cluster.master.token);
      const lines = new Map<number, string[]>();
      const job = () =>
        runJob({
          client,
          wasmPath: o.wasm,
          args: o.args,
          onLine: (clone, _s, line) => lines.set(clone, [...(lines.get(clone) ?? []), line]),
        });
      // A new master may get the port of the previous one, whose pooled keep-alive connection
      // then fails the first request (the module upload, before anything ran): retry once.
      const run = await job().catch((e: Error) => {
        if (!/connection closed/.test(e.message)) throw e;
        return job();
      });
      const forks = (await client.status()).clusters.filter((c) => c.parentVm === run.vm.id);
      return { exitCode: run.exitCode, forks, lines };
    } finally {
      await cluster.close();
    }
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await Deno.remove(dataDir, { recursive: true });
  }
}
