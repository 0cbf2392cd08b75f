/**
 * Control-plane messages between agents and the master, and the bodies of the
 * master's HTTP API. Every message crossing a process boundary is parsed with
 * these schemas; anything that does not parse is rejected and counted.
 *
 * Wire: one JSON object per WebSocket text frame, `{ v: PROTOCOL_VERSION, type, ... }`.
 * Requests carry an `id` answered by exactly one `reply` with the same id.
 */
import { z } from "zod";
import { PROTOCOL_VERSION } from "../version.ts";

const name = z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
  message: "must be letters, digits, '_', '.', '-'",
});
const count = z.number().int().nonnegative();
const address = z.string().min(3).max(300).regex(/^[^\s]+:\d{1,5}$/, {
  message: "must be host:port",
});

export const BackendKind = z.enum(["wasm", "xen", "kvm"]);
export type BackendKind = z.infer<typeof BackendKind>;

export const BackendInfo = z.object({
  kind: BackendKind,
  available: z.boolean(),
  reason: z.string().max(500).optional(),
}).strict();
export type BackendInfo = z.infer<typeof BackendInfo>;

/** How an agent distributes pages to clones on other hosts, as its start-up probe found. */
export const MemoryTransportInfo = z.object({
  /** "multicast": mcdist replies to groups; "unicast": mcdist answers each clone; "off": TCP only. */
  mode: z.enum(["multicast", "unicast", "off"]),
  group: z.string().max(64).optional(),
  port: z.number().int().nonnegative().max(65535).optional(),
  interface: z.string().max(64).optional(),
  ttl: z.number().int().nonnegative().max(255).optional(),
  /** The path MTU mcdist sizes its datagrams for. */
  mtu: z.number().int().min(576).max(65535).optional(),
  reason: z.string().max(500).optional(),
}).strict();
export type MemoryTransportInfo = z.infer<typeof MemoryTransportInfo>;

export const Inventory = z.object({
  /** The name of this host in the cluster's resource manager (a Slurm node), if it differs. */
  schedulerNode: z.string().min(1).max(64).optional(),
  cores: z.number().int().positive(),
  memoryBytes: count,
  slots: count,
  backends: z.array(BackendInfo).min(1).max(8),
  dataAddress: address,
  version: z.string().max(40),
  memoryTransport: MemoryTransportInfo.optional(),
}).strict();
export type Inventory = z.infer<typeof Inventory>;

export const ErrorBody = z.object({ code: z.string().max(40), message: z.string().max(2000) })
  .strict();
export type ErrorBody = z.infer<typeof ErrorBody>;

// ---- calls an agent makes to the master (on behalf of its guests) ----

export const TicketRequestParams = z.object({
  slots: z.number().int().positive().max(4096),
  ttlMs: z.number().int().positive().max(86_400_000).optional(),
  /** How long the allocator may wait for slots (a pending batch job) before granting fewer. */
  waitMs: z.number().int().nonnegative().max(3_600_000).optional(),
  owner: z.string().max(200).optional(),
}).strict();
export type TicketRequestParams = z.infer<typeof TicketRequestParams>;

export const TicketIdParams = z.object({ ticket: z.string().min(1).max(64) }).strict();

const vmId = z.string().min(1).max(64).regex(/^[\w.-]+$/);
const clusterId = z.string().min(1).max(64).regex(/^[\w.-]+$/);
const hash = z.string().regex(/^[0-9a-f]{64}$/, { message: "must be a sha256 in hex" });
const base64 = z.string().max(64 * 1024 * 1024).regex(/^[A-Za-z0-9+/]*={0,2}$/, {
  message: "must be base64",
});

export const ForkBeginParams = z.object({ ticket: z.string().min(1).max(64), parentVm: vmId })
  .strict();
/** Where clones resume: inside sf_clone (returns the clone id) or sf_checkpoint_parent (0). */
export const ResumeKind = z.enum(["clone", "checkpoint"]);

export const ForkDispatchParams = z.object({
  cluster: clusterId,
  descriptor: base64,
  pauseMs: z.number().nonnegative(),
  resume: ResumeKind,
  /** The parent host's mcdist server, for clones on other hosts; absent: unicast only. */
  mcdist: address.optional(),
}).strict();
export type ForkDispatchParams = z.infer<typeof ForkDispatchParams>;
export const ClusterIdParams = z.object({ cluster: clusterId }).strict();

/** A VM's life as its agent reports it. */
export const VmState = z.enum(["running", "exited", "failed", "killed"]);
export type VmState = z.infer<typeof VmState>;

export const AgentCall = z.discriminatedUnion("method", [
  z.object({ method: z.literal("ticket.request"), params: TicketRequestParams }).strict(),
  z.object({ method: z.literal("ticket.get"), params: TicketIdParams }).strict(),
  z.object({ method: z.literal("ticket.release"), params: TicketIdParams }).strict(),
  /** The parent is paused at sf_clone: mark the ticket used, name the clones and their hosts. */
  z.object({ method: z.literal("fork.begin"), params: ForkBeginParams }).strict(),
  /** The descriptor is ready: start the clones on their hosts. */
  z.object({ method: z.literal("fork.dispatch"), params: ForkDispatchParams }).strict(),
  /** Resolves when every clone of the cluster has exited, failed or been killed. */
  z.object({ method: z.literal("cluster.join"), params: ClusterIdParams }).strict(),
  z.object({ method: z.literal("cluster.kill"), params: ClusterIdParams }).strict(),
]);
export type AgentCall = z.infer<typeof AgentCall>;

/** What the master answers to fork.begin. */
export interface ForkPlan {
  cluster: string;
  job: string;
  members: { clone: number; host: string; dataAddress: string }[];
}

/** Memory-on-demand figures of one clone, as its memtap counts them. */
export const CloneMemoryStats = z.object({
  mode: z.enum(["lazy", "eager"]),
  faults: count,
  pagesFetched: count,
  /** Pages installed locally without a transfer, per avoidance heuristic. */
  pagesAvoided: z.object({ zero: count, untouched: count, hinted: count, free: count }).strict(),
  /** Pages that arrived without this clone asking (a sibling's fault, a push). */
  pagesUnrequested: count,
  bytesReceived: count,
  multicastBytes: count,
  unicastBytes: count,
  retransmits: count,
  faultP50Us: z.number().nonnegative(),
  faultP99Us: z.number().nonnegative(),
  stalledMs: z.number().nonnegative(),
}).strict();
export type CloneMemoryStats = z.infer<typeof CloneMemoryStats>;

/** The memory server's figures for one fork, reported by the parent's agent. */
export const ForkMemoryStats = z.object({
  pages: count,
  pagesPresent: count,
  pagesServed: count,
  /** Pages sent before any clone asked: read ahead along a scan, or pushed. */
  pagesPushed: count.optional(),
  bytesSent: count,
  packetsSent: count,
  multicastBytes: count,
  unicastBytes: count,
  retransmits: count,
  rejected: count,
  /** Copy-on-write: parent writes that saved a clone-time page first. */
  wpFaults: count,
  pagesSaved: count,
}).strict();
export type ForkMemoryStats = z.infer<typeof ForkMemoryStats>;

/** A line of guest output or a change of a VM's state, reported by the VM's agent. */
export const VmEvent = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("memory"), vm: vmId, stats: CloneMemoryStats }).strict(),
  z.object({ kind: z.literal("fork-memory"), cluster: clusterId, stats: ForkMemoryStats })
    .strict(),
  z.object({
    kind: z.literal("output"),
    vm: vmId,
    stream: z.enum(["stdout", "stderr"]),
    line: z.string().max(65536),
  }).strict(),
  z.object({
    kind: z.literal("state"),
    vm: vmId,
    state: VmState,
    exitCode: z.number().int().optional(),
    reason: z.string().max(2000).optional(),
  }).strict(),
]);
export type VmEvent = z.infer<typeof VmEvent>;

// ---- calls the master makes to an agent ----

export const MasterCall = z.discriminatedUnion("method", [
  z.object({
    method: z.literal("vm.start"),
    params: z.object({
      vm: vmId,
      module: hash,
      args: z.array(z.string().max(4096)).max(1024),
      env: z.array(z.string().max(4096)).max(1024),
    }).strict(),
  }).strict(),
  z.object({
    method: z.literal("clone.start"),
    params: z.object({
      cluster: clusterId,
      clones: z.array(z.object({ clone: z.number().int().positive(), vm: vmId }).strict())
        .min(1),
      descriptor: base64,
      resume: ResumeKind,
      /** The parent's mcdist server; used when the clones run on another host than the parent. */
      mcdist: address.optional(),
      /** The clones run on the parent's host (pages then come by local unicast). */
      local: z.boolean(),
    }).strict(),
  }).strict(),
  z.object({ method: z.literal("vm.kill"), params: z.object({ vm: vmId }).strict() }).strict(),
  z.object({ method: z.literal("vm.out"), params: z.object({ vm: vmId }).strict() }).strict(),
]);
export type MasterCall = z.infer<typeof MasterCall>;
export type CloneStartParams = Extract<MasterCall, { method: "clone.start" }>["params"];

/** Files of a VM's /out, as vm.out and GET /v1/vms/{vm}/out return them. */
export const OutFiles = z.object({
  files: z.array(z.object({ path: z.string().max(4096), data: base64 }).strict()),
}).strict();
export type OutFiles = z.infer<typeof OutFiles>;

// ---- envelopes ----

const v = z.literal(PROTOCOL_VERSION);
const id = z.number().int().positive();

export const Reply = z.discriminatedUnion("ok", [
  z.object({ v, type: z.literal("reply"), id, ok: z.literal(true), result: z.unknown() }).strict(),
  z.object({ v, type: z.literal("reply"), id, ok: z.literal(false), error: ErrorBody }).strict(),
]);
export type Reply = z.infer<typeof Reply>;

export const Hello = z.object({
  v,
  type: z.literal("hello"),
  token: z.string().min(1).max(200),
  name,
  inventory: Inventory,
}).strict();
export type Hello = z.infer<typeof Hello>;

export const Heartbeat = z.object({ v, type: z.literal("heartbeat"), seq: count }).strict();
export type Heartbeat = z.infer<typeof Heartbeat>;

export const AgentRequest = z.object({ v, type: z.literal("request"), id, call: AgentCall })
  .strict();
export type AgentRequest = z.infer<typeof AgentRequest>;

export const AgentEvent = z.object({ v, type: z.literal("event"), event: VmEvent }).strict();
export type AgentEvent = z.infer<typeof AgentEvent>;

/** Everything an agent may send once it has been welcomed. */
export const AgentMessage = z.union([Heartbeat, AgentRequest, AgentEvent, Reply]);
export type AgentMessage = z.infer<typeof AgentMessage>;

export const Welcome = z.object({
  v,
  type: z.literal("welcome"),
  host: name,
  heartbeatMs: z.number().int().positive(),
}).strict();
export type Welcome = z.infer<typeof Welcome>;

export const Refused = z.object({ v, type: z.literal("refused"), reason: z.string().max(500) })
  .strict();
export type Refused = z.infer<typeof Refused>;

export const MasterRequest = z.object({ v, type: z.literal("request"), id, call: MasterCall })
  .strict();

/** Everything the master may send to an agent. */
export const MasterMessage = z.union([Welcome, Refused, MasterRequest, Reply]);
export type MasterMessage = z.infer<typeof MasterMessage>;

// ---- state as the HTTP API shows it ----

export const HostState = z.enum(["up", "down", "reconnecting"]);
export type HostState = z.infer<typeof HostState>;

export const HostView = z.object({
  name,
  schedulerNode: z.string().optional(),
  state: HostState,
  backends: z.array(BackendInfo),
  cores: count,
  memoryBytes: count,
  slots: count,
  slotsInUse: count,
  dataAddress: z.string(),
  memoryTransport: MemoryTransportInfo.optional(),
  lastSeen: z.string(),
  reason: z.string().optional(),
}).strict();
export type HostView = z.infer<typeof HostView>;

export const TicketState = z.enum([
  "pending",
  "granted",
  "in_use",
  "released",
  "expired",
  "failed",
]);
export type TicketState = z.infer<typeof TicketState>;

export const Placement = z.object({ host: name, slots: z.number().int().positive() }).strict();
export type Placement = z.infer<typeof Placement>;

export const TicketView = z.object({
  id: z.string(),
  requested: count,
  granted: count,
  state: TicketState,
  placements: z.array(Placement),
  allocator: z.string(),
  source: z.string().optional(),
  owner: z.string().optional(),
  createdAt: z.string(),
  expiresAt: z.string().optional(),
  reason: z.string().optional(),
}).strict();
export type TicketView = z.infer<typeof TicketView>;

export const MemberState = z.enum(["starting", "running", "exited", "failed", "killed"]);
export type MemberState = z.infer<typeof MemberState>;

export const MemberView = z.object({
  clone: z.number().int().positive(),
  vm: z.string(),
  host: name,
  state: MemberState,
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  memory: CloneMemoryStats.optional(),
}).strict();
export type MemberView = z.infer<typeof MemberView>;

export const ClusterState = z.enum(["forking", "running", "joined", "killed", "failed"]);
export type ClusterState = z.infer<typeof ClusterState>;

export const ForkTimeline = z.object({
  /** Parent paused at sf_clone and its descriptor made, in ms. */
  pauseMs: z.number().nonnegative().optional(),
  descriptorBytes: count.optional(),
  /** From fork.begin to the descriptor sent to the clones' hosts, in ms. */
  dispatchedMs: z.number().nonnegative().optional(),
  /** From fork.begin to the last clone running, in ms. */
  readyMs: z.number().nonnegative().optional(),
  /** From fork.begin to the cluster joined, in ms. */
  joinedMs: z.number().nonnegative().optional(),
}).strict();
export type ForkTimeline = z.infer<typeof ForkTimeline>;

export const ClusterView = z.object({
  id: z.string(),
  ticket: z.string(),
  parentVm: z.string(),
  parentHost: name,
  state: ClusterState,
  createdAt: z.string(),
  timeline: ForkTimeline,
  memory: ForkMemoryStats.optional(),
  members: z.array(MemberView),
}).strict();
export type ClusterView = z.infer<typeof ClusterView>;

export const StatusView = z.object({
  version: z.string(),
  allocator: z.string(),
  startedAt: z.string(),
  hosts: z.array(HostView),
  tickets: z.array(TicketView),
  clusters: z.array(ClusterView),
  rejectedMessages: count,
}).strict();
export type StatusView = z.infer<typeof StatusView>;

export const VmView = z.object({
  id: z.string(),
  job: z.string(),
  host: name,
  module: z.string(),
  state: z.enum(["starting", "running", "exited", "failed", "killed"]),
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  createdAt: z.string(),
}).strict();
export type VmView = z.infer<typeof VmView>;

/** Body of POST /v1/vms: run a module (uploaded before with PUT /v1/modules). */
export const RunBody = z.object({
  module: hash,
  args: z.array(z.string().max(4096)).max(1024).default([]),
  env: z.array(z.string().max(4096)).max(1024).default([]),
  host: name.optional(),
}).strict();
export type RunBody = z.infer<typeof RunBody>;

/** One line of GET /v1/jobs/{job}/events (NDJSON). */
export type JobEvent =
  | { kind: "output"; vm: string; clone: number; stream: "stdout" | "stderr"; line: string }
  | { kind: "state"; vm: string; clone: number; state: VmState; exitCode?: number; reason?: string }
  | { kind: "end"; exitCode: number; reason?: string };

/** Body of POST /v1/tickets. */
export const TicketRequestBody = z.object({
  slots: z.number().int().positive().max(4096),
  ttl_ms: z.number().int().positive().max(86_400_000).optional(),
  wait_ms: z.number().int().nonnegative().max(3_600_000).optional(),
  owner: z.string().max(200).optional(),
}).strict();
export type TicketRequestBody = z.infer<typeof TicketRequestBody>;

/** A one-line description of why a value did not match its schema. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.slice(0, 3).map((i) =>
    `${i.path.length ? i.path.join(".") : "message"}: ${i.message}`
  ).join("; ");
}
