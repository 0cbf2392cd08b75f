/**
 * The Slurm allocator: a ticket's slots are the CPUs of one Slurm batch job
 * submitted through slurmrestd (JWT). The job only holds its allocation (its
 * script sleeps); the master places one clone per allocated core on the agent
 * that is that Slurm node (`--scheduler-node`, else the agent's name).
 *
 * - Partial grants: before submitting, the free CPUs of usable nodes that have
 *   an agent are counted and the job asks for min(n, free) tasks on 1..k nodes,
 *   so a request larger than the cluster gets what is there. With nothing free
 *   the job asks for min(n, what those nodes have at all) and waits.
 * - Pending: a job that does not start within the request's timeout is
 *   cancelled and the ticket gets 0 slots (the guest sees SF_ENOSLOTS).
 * - Reclaims: while tickets hold jobs, node and job states are polled; a node
 *   that is drained, down or not responding, or a job that ended (time limit,
 *   scancel, node failure), reclaims the affected hosts: the master fails the
 *   clones there.
 * - Release cancels the job. Jobs are named `snowflock-<ticket>`, so a release
 *   after a master restart (this map is in memory) still finds its job.
 * - slurmrestd unreachable or refusing: every call has a deadline and the
 *   request throws "Cannot ...", which fails the ticket instead of hanging.
 */
import type { Logger } from "../log.ts";
import type { Placement } from "../control/messages.ts";
import {
  type Allocator,
  AllocatorError,
  type ClusterView,
  type Grant,
  type HostSlots,
  type Reclaim,
  type SlotRequest,
} from "./allocator.ts";
import { hostsBySchedulerNode } from "./scheduler_nodes.ts";
import {
  allocatedSlots,
  nodeUsable,
  type SlurmJob,
  type SlurmNode,
  SlurmRest,
} from "./slurm_rest.ts";

export interface SlurmSettings {
  /** slurmrestd base URL, e.g. http://head:6820 */
  url: string;
  /** The Slurm user the jobs run as (X-SLURM-USER-NAME). */
  user: string;
  /** A JWT for that user (`scontrol token username=USER`). */
  token: string;
  /** Partition to submit to (default: Slurm's default partition). */
  partition?: string;
  /** How often pending jobs, node states and running jobs are polled. */
  pollMs?: number;
  /** Deadline of one slurmrestd call. */
  callTimeoutMs?: number;
  /** The jobs' time limit in minutes: the longest a ticket can hold Slurm's CPUs. */
  timeLimitMin?: number;
  /** The jobs' working directory on the nodes (must exist and be writable by the user). */
  workDir?: string;
}

interface Held {
  job: number;
  /** Slurm node → the agent (host) it maps to, for the nodes this ticket got slots on. */
  hosts: Map<string, string>;
  /** Set once the job ran; only then are reclaims looked for. */
  running: boolean;
}

const ENDED =
  /^(CANCELLED|COMPLETED|FAILED|TIMEOUT|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE|OUT_OF_MEMORY|SPECIAL_EXIT|REVOKED)/;

export class SlurmAllocator implements Allocator {
  readonly name = "slurm";
  #rest: SlurmRest;
  #s: Required<Omit<SlurmSettings, "partition">> & { partition?: string };
  #log: Logger;
  #held = new Map<string, Held>();
  #listeners: ((r: Reclaim) => void)[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #polling = false;
  #closed = false;

  constructor(settings: SlurmSettings, logger: Logger) {
    if (!/^https?:\/\//.test(settings.url)) {
      throw new AllocatorError(`Cannot use slurmrestd URL ${settings.url}: not http(s)://`);
    }
    if (!settings.user || !settings.token) {
      throw new AllocatorError("Cannot use Slurm: a user and a JWT (SLURM_JWT) are required");
    }
    this.#s = {
      pollMs: 1000,
      callTimeoutMs: 5000,
      timeLimitMin: 24 * 60,
      workDir: "/tmp",
      ...settings,
    };
    this.#rest = new SlurmRest({
      url: settings.url,
      user: settings.user,
      token: settings.token,
      callTimeoutMs: this.#s.callTimeoutMs,
    });
    this.#log = logger;
  }

  async request(request: SlotRequest, view: ClusterView): Promise<Grant> {
    if (this.#closed) throw new AllocatorError("Cannot request slots: the allocator is closed");
    const deadline = Date.now() + request.timeoutMs;
    const hosts = hostsBySchedulerNode(view.upHosts());
    const nodes = (await this.#rest.nodes()).filter((n) =>
      hosts.has(n.name) && (!this.#s.partition || n.partitions.includes(this.#s.partition))
    );
    if (nodes.length === 0) {
      this.#log.warn("no up agent is a Slurm node of the partition (agent --scheduler-node?)", {
        ticket: request.ticket,
      });
      return { placements: [] };
    }
    const usable = nodes.filter(nodeUsable);
    const free = usable.reduce((sum, n) => sum + freeSlots(n, hosts), 0);
    // Nothing free now: wait for at most what these nodes could ever give (a bigger job never runs).
    const capacity = usable.reduce((sum, n) => sum + Math.min(n.cpus, hosts.get(n.name)!.slots), 0);
    const tasks = Math.min(request.slots, free > 0 ? free : capacity);
    if (tasks === 0) return { placements: [] };
    const job = await this.#rest.submit({
      name: `snowflock-${request.ticket}`,
      tasks,
      maxNodes: Math.min(tasks, nodes.length),
      ...(this.#s.partition ? { partition: this.#s.partition } : {}),
      timeLimitMin: this.#s.timeLimitMin,
      workDir: this.#s.workDir,
    });
    const held: Held = { job, hosts: new Map(), running: false };
    this.#held.set(request.ticket, held);
    const source = String(job);
    try {
      const running = await this.#waitRunning(request.ticket, held, deadline);
      const placements = running ? place(running, hosts, held) : [];
      if (placements.length === 0) {
        await this.release(request.ticket);
        return { placements, source };
      }
      held.running = true;
      this.#startPolling();
      return { placements, source };
    } catch (e) {
      await this.release(request.ticket).catch(() => {});
      throw e;
    }
  }

  /** The job once RUNNING; undefined when it ended, was released, or the deadline passed. */
  async #waitRunning(ticket: string, held: Held, deadline: number): Promise<SlurmJob | undefined> {
    for (;;) {
      if (this.#held.get(ticket) !== held || this.#closed) return undefined;
      const job = await this.#rest.job(held.job);
      if (!job || ENDED.test(job.job_state)) return undefined;
      if (job.job_state === "RUNNING") return job;
      if (Date.now() + this.#s.pollMs > deadline) {
        this.#log.info("slurm job still pending at the deadline", {
          job: held.job,
          reason: job.state_reason,
        });
        return undefined;
      }
      await new Promise((r) => setTimeout(r, this.#s.pollMs));
    }
  }

  async release(ticket: string): Promise<void> {
    const held = this.#held.get(ticket);
    this.#held.delete(ticket);
    if (this.#held.size === 0) this.#stopPolling();
    if (held) return await this.#rest.cancel(held.job);
    // Not ours in memory (the master restarted since): find the job by its name.
    const name = `snowflock-${ticket}`;
    for (const j of await this.#rest.jobs()) {
      if (j.name === name && !ENDED.test(j.job_state)) await this.#rest.cancel(j.job_id);
    }
  }

  onReclaim(listener: (reclaim: Reclaim) => void): void {
    this.#listeners.push(listener);
  }

  /** Stops polling; jobs stay, so a restarted master can still release them by name. */
  close(): Promise<void> {
    this.#closed = true;
    this.#stopPolling();
    return Promise.resolve();
  }

  #startPolling(): void {
    this.#timer ??= setInterval(() => this.#poll(), this.#s.pollMs);
  }

  #stopPolling(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One round of reclaim detection: node states for all tickets, then each job's state. */
  async #poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      const nodes = new Map((await this.#rest.nodes()).map((n) => [n.name, n]));
      for (const [ticket, held] of [...this.#held]) {
        if (!held.running) continue;
        const lost = [...held.hosts.keys()].filter((n) =>
          !nodes.has(n) || !nodeUsable(nodes.get(n)!)
        );
        if (lost.length > 0) this.#reclaim(ticket, held, lost, nodeReason(lost, nodes));
        if (held.hosts.size === 0) continue;
        const job = await this.#rest.job(held.job);
        if (!job || ENDED.test(job.job_state)) {
          const state = job?.job_state ?? "gone";
          this.#reclaim(ticket, held, [...held.hosts.keys()], `Slurm job ${held.job} ${state}`);
        }
      }
    } catch (e) {
      this.#log.warn("slurm poll failed", { error: (e as Error).message });
    } finally {
      this.#polling = false;
    }
  }

  #reclaim(ticket: string, held: Held, nodes: string[], reason: string): void {
    const hosts = nodes.map((n) => held.hosts.get(n)!);
    for (const n of nodes) held.hosts.delete(n);
    this.#log.info("slurm reclaim", { ticket, job: held.job, hosts: hosts.join(","), reason });
    for (const l of this.#listeners) l({ ticket, hosts, reason });
  }
}

/** What a node can give now: its idle CPUs, capped by its agent's free clone slots. */
function freeSlots(n: SlurmNode, hosts: Map<string, HostSlots>): number {
  const h = hosts.get(n.name)!;
  return Math.max(0, Math.min(n.idle_cpus, h.slots - h.inUse));
}

/** Placements from a running job: allocated cores on nodes that have an agent. */
function place(job: SlurmJob, hosts: Map<string, HostSlots>, held: Held): Placement[] {
  const placements: Placement[] = [];
  for (const [node, cores] of allocatedSlots(job)) {
    const h = hosts.get(node);
    const slots = h ? Math.min(cores, Math.max(0, h.slots - h.inUse)) : 0;
    if (!h || slots === 0) continue;
    held.hosts.set(node, h.name);
    placements.push({ host: h.name, slots });
  }
  return placements.sort((a, b) => a.host.localeCompare(b.host));
}

function nodeReason(lost: string[], nodes: Map<string, SlurmNode>): string {
  return lost.map((n) => {
    const node = nodes.get(n);
    if (!node) return `Slurm node ${n} gone`;
    const flags = node.state_flags.length ? `+${node.state_flags.join("+")}` : "";
    return `Slurm node ${n} ${node.state}${flags}${node.reason ? ` (${node.reason})` : ""}`;
  }).join("; ");
}
