/**
 * A small client for slurmrestd's openapi/v0.0.38 (Slurm 22.05) with JWT
 * authentication: the four calls the Slurm allocator needs. Only the fields we
 * read are validated (zod, `passthrough` off by default: extra fields are
 * dropped). Every call has a deadline, so an unreachable or stuck slurmrestd is
 * an error, never a hang.
 */
import { z } from "zod";
import { AllocatorError } from "./allocator.ts";

export interface SlurmRestOptions {
  /** Base URL, e.g. http://head:6820 */
  url: string;
  user: string;
  token: string;
  /** Deadline of one HTTP call. */
  callTimeoutMs: number;
}

const SlurmError = z.object({
  error: z.string().optional(),
  description: z.string().optional(),
  error_code: z.number().optional(),
  errno: z.number().optional(),
});

const Errors = z.object({ errors: z.array(SlurmError).optional() });

export const SlurmNode = z.object({
  name: z.string(),
  /** idle, mixed, allocated, down, ... */
  state: z.string(),
  /** e.g. ["DRAIN"], ["NOT_RESPONDING"] */
  state_flags: z.array(z.string()).default([]),
  partitions: z.array(z.string()).default([]),
  cpus: z.number().int(),
  idle_cpus: z.number().int(),
  reason: z.string().default(""),
});
export type SlurmNode = z.infer<typeof SlurmNode>;

const NodesResponse = z.object({ nodes: z.array(SlurmNode) });

const NodeAllocation = z.object({
  nodename: z.string(),
  /** socket id → core id → "allocated" | "unallocated" ... */
  sockets: z.record(z.string(), z.object({ cores: z.record(z.string(), z.string()) }))
    .default({}),
});

export const SlurmJob = z.object({
  job_id: z.number().int(),
  name: z.string(),
  /** PENDING, RUNNING, CANCELLED, COMPLETED, FAILED, TIMEOUT, NODE_FAIL, ... */
  job_state: z.string(),
  state_reason: z.string().default(""),
  job_resources: z.object({ allocated_nodes: z.array(NodeAllocation).default([]) })
    .partial().optional(),
});
export type SlurmJob = z.infer<typeof SlurmJob>;

const JobsResponse = z.object({ jobs: z.array(SlurmJob) });
const SubmitResponse = z.object({ job_id: z.number().int() });

/** What a job asks for: `tasks` CPUs (one per task) on 1..maxNodes nodes. */
export interface JobSpec {
  name: string;
  tasks: number;
  maxNodes: number;
  partition?: string;
  /** Minutes; the job (and so the allocation) ends by itself after this. */
  timeLimitMin: number;
  workDir: string;
}

export class SlurmRest {
  #o: SlurmRestOptions;
  #base: string;

  constructor(options: SlurmRestOptions) {
    this.#o = options;
    this.#base = `${options.url.replace(/\/+$/, "")}/slurm/v0.0.38`;
  }

  async nodes(): Promise<SlurmNode[]> {
    return NodesResponse.parse(await this.#call("GET", "/nodes", "read nodes")).nodes;
  }

  /** Submits a batch job that only holds its allocation (it sleeps until cancelled). */
  async submit(spec: JobSpec): Promise<number> {
    const body = {
      script:
        "#!/bin/sh\n# Holds slots for a Snowflock ticket; cancelled on release.\nexec sleep 2147483647\n",
      job: {
        name: spec.name,
        tasks: spec.tasks,
        cpus_per_task: 1,
        nodes: [1, spec.maxNodes],
        // Like the builtin allocator: one clone per host before doubling up.
        spread_job: true,
        time_limit: spec.timeLimitMin,
        ...(spec.partition ? { partition: spec.partition } : {}),
        current_working_directory: spec.workDir,
        standard_output: "/dev/null",
        standard_error: "/dev/null",
        // slurmrestd requires an environment for batch jobs.
        environment: { PATH: "/usr/bin:/bin" },
      },
    };
    const reply = await this.#call("POST", "/job/submit", `submit job ${spec.name}`, body);
    return SubmitResponse.parse(reply).job_id;
  }

  /** The job, or undefined when Slurm no longer knows it (purged after it ended). */
  async job(id: number): Promise<SlurmJob | undefined> {
    try {
      return JobsResponse.parse(await this.#call("GET", `/job/${id}`, `read job ${id}`)).jobs[0];
    } catch (e) {
      if (e instanceof SlurmRestError && /invalid job id/i.test(e.message)) return undefined;
      throw e;
    }
  }

  /** Every job Slurm knows (to find ours by name after a master restart). */
  async jobs(): Promise<SlurmJob[]> {
    return JobsResponse.parse(await this.#call("GET", "/jobs", "list jobs")).jobs;
  }

  /** Cancels a job; a job that already ended is not an error. */
  async cancel(id: number): Promise<void> {
    try {
      await this.#call("DELETE", `/job/${id}`, `cancel job ${id}`);
    } catch (e) {
      if (e instanceof SlurmRestError && /already completed|invalid job id/i.test(e.message)) {
        return;
      }
      throw e;
    }
  }

  async #call(method: string, path: string, what: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        method,
        headers: {
          "X-SLURM-USER-NAME": this.#o.user,
          "X-SLURM-USER-TOKEN": this.#o.token,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.#o.callTimeoutMs),
      });
    } catch (e) {
      const why = e instanceof DOMException && e.name === "TimeoutError"
        ? `no answer in ${this.#o.callTimeoutMs} ms`
        : (e as Error).message;
      throw new SlurmRestError(`Cannot ${what}: slurmrestd at ${this.#o.url} unreachable: ${why}`, {
        cause: e,
      });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new SlurmRestError(
        `Cannot ${what}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`,
      );
    }
    const errors = Errors.safeParse(json).data?.errors ?? [];
    if (!res.ok || errors.length > 0) {
      const detail = errors.map((e) => e.description || e.error).filter(Boolean).join("; ");
      throw new SlurmRestError(`Cannot ${what}: HTTP ${res.status}: ${detail || "no detail"}`);
    }
    return json;
  }
}

export class SlurmRestError extends AllocatorError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SlurmRestError";
  }
}

/** Slots of a node in a job's allocation: its allocated cores (one clone per core). */
export function allocatedSlots(job: SlurmJob): Map<string, number> {
  const slots = new Map<string, number>();
  for (const n of job.job_resources?.allocated_nodes ?? []) {
    const cores = Object.values(n.sockets).flatMap((s) => Object.values(s.cores));
    const count = cores.filter((c) => c === "allocated").length;
    if (count > 0) slots.set(n.nodename, (slots.get(n.nodename) ?? 0) + count);
  }
  return slots;
}

/** Whether a node can take new work and keep what it runs (not down, drained or failing). */
export function nodeUsable(n: SlurmNode): boolean {
  const bad = ["DRAIN", "DRAINING", "DRAINED", "NOT_RESPONDING", "FAIL", "MAINTENANCE"];
  return !/^(down|drain|fail|future|unknown)/i.test(n.state) &&
    !n.state_flags.some((f) => bad.includes(f.toUpperCase()));
}
