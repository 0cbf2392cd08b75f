/**
 * `snowflock bench python-fork`: the Python showcase (native/examples/
 * kv_index.py) on an embedded cluster. The parent builds a large index
 * (128 MiB of Python objects by default), forks `clones` clones over `hosts`
 * hosts that each answer the queries of one tenth of it, and joins; then the
 * same job runs with no clones in one interpreter. Reports the clones' start
 * (`clones_ready_ms`), the pages they fetched against the parent's memory
 * (`pages_fetched` vs `memory_pages`), and both wall times.
 *
 * Goals: clones ready within 300 ms; each clone fetches < 10 % of the
 * parent's pages (it touches ~10 % of the structure).
 */
import { fileURLToPath } from "node:url";
import { prepareModuleCached } from "../backend/wasm/prepare.ts";
import { runJob } from "../cli/run_job.ts";
import { defaultCacheDir } from "../control/agent_service.ts";
import { MasterClient } from "../control/client.ts";
import { startEmbeddedCluster } from "../control/embedded.ts";
import type { ClusterView } from "../control/messages.ts";
import { resolveGuest } from "../guest/python/resolve.ts";
import { createLogger } from "../log.ts";
import { round2 } from "./stats.ts";

export const SHOWCASE = fileURLToPath(
  new URL("../../native/examples/kv_index.py", import.meta.url),
);

export interface PythonForkBenchOptions {
  clones?: number;
  hosts?: number;
  /** Size of the index in MiB. */
  mib?: number;
  /** Queries per segment (a tenth of the index). */
  queries?: number;
  onProgress?: (message: string) => void;
}

export interface PythonForkBenchReport {
  bench: "python-fork";
  clones: number;
  hosts: number;
  index_mib: number;
  result_forked: string;
  result_sequential: string;
  results_equal: boolean;
  /** Parent paused at clone() (descriptor made), ms. */
  parent_pause_ms: number;
  descriptor_bytes: number;
  /** fork → every clone running, ms. */
  clones_ready_ms: number;
  /** The parent's memory at the fork, in the memory server's pages. */
  memory_pages: number;
  /** "lazy" (memory on demand) or "eager" (whole memory copied), as the agents report. */
  memory_mode: string;
  /**
   * Pages each clone received (lazy), by clone id; an eager copy counts every
   * page. With multicast, a clone also receives the pages its siblings asked
   * for (`pages_unrequested`); `pages_requested` is what its own faults asked.
   */
  pages_fetched: Record<string, number>;
  pages_requested: Record<string, number>;
  pages_unrequested: Record<string, number>;
  /** Faults and time stalled on them, per clone. */
  faults: Record<string, number>;
  stalled_ms: Record<string, number>;
  max_fetched_fraction: number;
  max_requested_fraction: number;
  /** Wall time of the whole job, forked and sequential (build included), ms. */
  total_ms: number;
  sequential_ms: number;
  /** Slowest clone from its clone() returning to its answer written, as it prints it, ms. */
  clone_work_max_ms: number;
  /** The parent's heap (its linear memory) at the fork, MiB, as the job prints it. */
  parent_memory_mib: number;
  /** The query phase alone, as the job prints it, ms. */
  query_forked_ms: number;
  query_sequential_ms: number;
  speedup_queries: number;
  goal_ready_ms: number;
  goal_fetched_fraction: number;
}

interface JobRun {
  lines: string[];
  /** Clones' stdout lines, tagged. */
  cloneLines: string[];
  errors: string[];
  ms: number;
  vm: string;
}

async function runShowcase(client: MasterClient, args: string[]): Promise<JobRun> {
  const guest = await resolveGuest(SHOWCASE, args);
  const lines: string[] = [];
  const cloneLines: string[] = [];
  const errors: string[] = [];
  const t = performance.now();
  const r = await runJob({
    client,
    wasmPath: guest.wasm,
    args: guest.args,
    env: guest.env,
    onLine: (clone, stream, line) => {
      if (clone === 0 && stream === "stdout") lines.push(line);
      else if (stream === "stdout") cloneLines.push(line);
      else if (stream === "stderr") errors.push(clone ? `[clone ${clone}] ${line}` : line);
    },
  });
  const ms = performance.now() - t;
  if (r.exitCode !== 0) {
    throw new Error(
      `Cannot benchmark python-fork: the job exited ${r.exitCode}${
        r.reason ? ` (${r.reason})` : ""
      }: ${errors.slice(-8).join(" | ")}`,
    );
  }
  return { lines, cloneLines, errors, ms, vm: r.vm.id };
}

function queryMs(lines: string[]): number {
  const m = lines.map((l) => /^answered .* in ([\d.]+) s/.exec(l)).find((x) => x);
  return m ? Number(m[1]) * 1000 : NaN;
}

function resultOf(lines: string[]): string {
  return lines.findLast((l) => l.startsWith("result:")) ?? "";
}

export async function benchPythonFork(
  o: PythonForkBenchOptions = {},
): Promise<PythonForkBenchReport> {
  const clones = o.clones ?? 8;
  const hosts = o.hosts ?? 4;
  const mib = o.mib ?? 128;
  const queries = o.queries ?? 20000;
  o.onProgress?.("resolving the Python guest (builds it on first use)");
  const guest = await resolveGuest(SHOWCASE, [], o.onProgress ? { onProgress: o.onProgress } : {});
  // Prepared before the cluster starts: the embedded agents share this cache,
  // and preparing (seconds of binaryen) would block their heartbeats.
  await prepareModuleCached(await Deno.readFile(guest.wasm), defaultCacheDir());
  const dataDir = await Deno.makeTempDir({ prefix: "snowflock-bench-" });
  const cluster = await startEmbeddedCluster({
    hosts,
    slotsPerHost: Math.ceil(clones / hosts),
    dataDir,
    logger: createLogger("bench", { quiet: true }),
  });
  try {
    const client = new MasterClient(cluster.master.address, cluster.master.token);
    o.onProgress?.(`forked: ${clones} clones over ${hosts} hosts, ${mib} MiB index`);
    const forked = await runShowcase(client, [String(clones), String(mib), String(queries)]);
    o.onProgress?.("sequential: one interpreter");
    const sequential = await runShowcase(client, ["0", String(mib), String(queries)]);
    const fork = (await client.status()).clusters.find((c) => c.parentVm === forked.vm);
    if (!fork) throw new Error("Cannot benchmark python-fork: the job made no fork");
    const pages = memoryPages(fork);
    const per = (f: (m: ClusterView["members"][number]) => number) =>
      Object.fromEntries(fork.members.map((m) => [String(m.clone), f(m)]));
    const fetched = per((m) => m.memory?.pagesFetched ?? pages);
    const unrequested = per((m) => m.memory?.pagesUnrequested ?? 0);
    const requested = per((m) =>
      (m.memory?.pagesFetched ?? pages) - (m.memory?.pagesUnrequested ?? 0)
    );
    const fraction = (r: Record<string, number>) =>
      pages > 0 ? Math.round((Math.max(...Object.values(r)) / pages) * 1000) / 1000 : 0;
    const qf = queryMs(forked.lines);
    const qs = queryMs(sequential.lines);
    return {
      bench: "python-fork",
      clones: fork.members.length,
      hosts,
      index_mib: mib,
      result_forked: resultOf(forked.lines),
      result_sequential: resultOf(sequential.lines),
      results_equal: resultOf(forked.lines) !== "" &&
        resultOf(forked.lines) === resultOf(sequential.lines),
      parent_pause_ms: round2(fork.timeline.pauseMs ?? 0),
      descriptor_bytes: fork.timeline.descriptorBytes ?? 0,
      clones_ready_ms: round2(fork.timeline.readyMs ?? 0),
      memory_pages: pages,
      memory_mode: fork.members[0]?.memory?.mode ?? "eager (not reported)",
      pages_fetched: fetched,
      pages_requested: requested,
      pages_unrequested: unrequested,
      faults: per((m) => m.memory?.faults ?? 0),
      stalled_ms: per((m) => Math.round(m.memory?.stalledMs ?? 0)),
      max_fetched_fraction: fraction(fetched),
      max_requested_fraction: fraction(requested),
      total_ms: Math.round(forked.ms),
      sequential_ms: Math.round(sequential.ms),
      clone_work_max_ms: Math.round(
        Math.max(
          0,
          ...forked.cloneLines.map((l) =>
            Number(/^worker \d+: .* in ([\d.]+) s/.exec(l)?.[1] ?? 0)
          ),
        ) * 1000,
      ),
      parent_memory_mib: Number(
        forked.lines.map((l) => /memory (\d+) MiB/.exec(l)?.[1]).find((x) => x) ?? 0,
      ),
      query_forked_ms: Math.round(qf),
      query_sequential_ms: Math.round(qs),
      speedup_queries: Math.round((qs / qf) * 100) / 100,
      goal_ready_ms: 300,
      goal_fetched_fraction: 0.1,
    };
  } finally {
    await cluster.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** The parent's memory at the fork in pages: the memory server's count, else the descriptor's. */
function memoryPages(fork: ClusterView): number {
  return fork.memory?.pages ?? 0;
}
