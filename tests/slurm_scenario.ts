/**
 * The Slurm scenario, shared by tests/slurm_test.ts and `deno task lab:slurm`:
 * a real Slurm cluster (tests/slurm_cluster.ts, 3 nodes × 2 CPUs) and an
 * embedded Snowflock cluster (3 agents that are the Slurm nodes n1..n3) with
 * `--allocator slurm`:
 *   1. a guest asks for 4 clones: granted through a Slurm job, the clones run on
 *      the job's nodes, sf_join releases the ticket and the job is gone;
 *   2. a ticket for more slots than the cluster has gets a partial grant;
 *   3. a node drained while clones sleep on it: its clones are failed, the
 *      parent's sf_join counts them.
 * Run directly, it prints one JSON line: ok, requested, granted, released, drained_failed.
 */
import { runJob } from "../lib/cli/run_job.ts";
import { MasterClient } from "../lib/control/client.ts";
import { type EmbeddedCluster, startEmbeddedCluster } from "../lib/control/embedded.ts";
import type { ClusterView, StatusView, TicketView } from "../lib/control/messages.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { testGuest } from "./guests.ts";
import { tempDir } from "./harness/temp_dir.ts";
import { type SlurmCluster, startSlurmCluster } from "./slurm_cluster.ts";

export const NODES = 3;
export const CPUS_PER_NODE = 2;

export interface GuestRun {
  exitCode: number;
  parent: string[];
  /** The cluster the guest forked, as the master saw it after the join. */
  cluster: ClusterView;
  ticket: TicketView;
}

export interface SlurmLab {
  slurm: SlurmCluster;
  cluster: EmbeddedCluster;
  client: MasterClient;
  /** Runs the semantics guest and returns its run, the cluster and the ticket. */
  runGuest(
    args: string[],
    whileRunning?: (client: MasterClient) => Promise<void>,
  ): Promise<GuestRun>;
}

/** Starts Slurm and Snowflock (agent hostN is Slurm node nN), runs `fn`, stops both. */
export async function withSlurmLab<T>(
  fn: (lab: SlurmLab) => Promise<T>,
  logger: Logger = createLogger("slurm-lab", { quiet: true, sink: () => {} }),
): Promise<T> {
  const slurm = await startSlurmCluster({ nodes: NODES, cpusPerNode: CPUS_PER_NODE });
  try {
    await using data = await tempDir("sf-slurm-lab");
    const cluster = await startEmbeddedCluster({
      hosts: NODES,
      slotsPerHost: CPUS_PER_NODE,
      dataDir: data.path,
      logger,
      allocator: "slurm",
      allocatorSettings: {
        slurm: {
          url: slurm.url,
          user: slurm.user,
          token: slurm.token,
          partition: slurm.partition,
          pollMs: 200,
          workDir: "/tmp",
          timeLimitMin: 10,
        },
      },
      schedulerNodes: slurm.nodes,
    });
    try {
      const client = new MasterClient(cluster.master.address, cluster.master.token);
      const wasm = await testGuest("semantics");
      const runGuest = async (
        args: string[],
        whileRunning?: (c: MasterClient) => Promise<void>,
      ): Promise<GuestRun> => {
        const parent: string[] = [];
        const done = runJob({
          client,
          wasmPath: wasm,
          args,
          onLine: (clone, _s, line) => clone === 0 && parent.push(line),
        });
        const during = whileRunning?.(client);
        const [r] = await Promise.all([done, during]);
        const s = await client.status();
        const c = s.clusters.find((x) => x.parentVm === r.vm.id);
        if (!c) throw new Error(`Cannot find the cluster of ${r.vm.id}: ${parent.join("\n")}`);
        return { exitCode: r.exitCode, parent, cluster: c, ticket: await client.ticket(c.ticket) };
      };
      return await fn({ slurm, cluster, client, runGuest });
    } finally {
      await cluster.close();
    }
  } finally {
    await slurm.close();
  }
}

/** Waits until a cluster of the master has `n` running clones; returns it. */
export async function runningClones(client: MasterClient, n: number): Promise<ClusterView> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s: StatusView = await client.status();
    const c = s.clusters.find((x) => x.members.filter((m) => m.state === "running").length >= n);
    if (c) return c;
    if (Date.now() > deadline) throw new Error(`Cannot see ${n} running clones within 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits until Slurm no longer runs job `id` (cancelled, completed or purged). Generously: the
 * lab's slurmctld shares 2 cores with whatever else runs, and once took over 10 s to show a
 * cancelled job as such (a fresh clone's test run, the Xen lab building beside it).
 */
export async function jobGone(slurm: SlurmCluster, id: string): Promise<boolean> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const state = await slurm.jobState(id);
    if (state === undefined || /CANCELLED|COMPLETED/.test(state)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export interface LabResult {
  ok: boolean;
  requested: number;
  granted: number;
  released: boolean;
  drained_failed: number;
}

/** The whole scenario; `ok` says whether every step behaved as it should. */
export function runSlurmScenario(): Promise<LabResult> {
  return withSlurmLab(async ({ slurm, client, runGuest }) => {
    const used = await runGuest(["4"]);
    const usedOk = used.exitCode === 0 && used.ticket.granted === 4 &&
      used.cluster.members.every((m) => m.state === "exited");
    const releasedFirst = await jobGone(slurm, used.ticket.source ?? "");

    const big = await client.requestTicket(NODES * CPUS_PER_NODE + 4);
    await client.releaseTicket(big.id);
    const releasedBig = await jobGone(slurm, big.source ?? "");

    const drained = await runGuest(["4", "sleep", "6"], async (c) => {
      const running = await runningClones(c, 4);
      const victim = running.members[0].host;
      await slurm.drain(slurm.nodes[Number(victim.replace("host", "")) - 1], "lab-drain");
    });
    const failed = drained.cluster.members.filter((m) => m.state === "failed").length;
    const joined = drained.parent.find((l) => l.startsWith("join failed="));
    return {
      ok: usedOk && big.granted === NODES * CPUS_PER_NODE && releasedFirst && releasedBig &&
        failed > 0 && joined === `join failed=${failed}`,
      requested: big.requested,
      granted: big.granted,
      released: releasedFirst && releasedBig,
      drained_failed: failed,
    };
  });
}

if (import.meta.main) {
  const result = await runSlurmScenario();
  console.log(JSON.stringify(result));
  Deno.exit(result.ok ? 0 : 1);
}
