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

export const Inventory = z.object({
  cores: z.number().int().positive(),
  memoryBytes: count,
  slots: count,
  backends: z.array(BackendInfo).min(1).max(8),
  dataAddress: address,
  version: z.string().max(40),
}).strict();
export type Inventory = z.infer<typeof Inventory>;

export const ErrorBody = z.object({ code: z.string().max(40), message: z.string().max(2000) })
  .strict();
export type ErrorBody = z.infer<typeof ErrorBody>;

// ---- calls an agent makes to the master (on behalf of its guests) ----

export const TicketRequestParams = z.object({
  slots: z.number().int().positive().max(4096),
  ttlMs: z.number().int().positive().max(86_400_000).optional(),
  owner: z.string().max(200).optional(),
}).strict();
export type TicketRequestParams = z.infer<typeof TicketRequestParams>;

export const TicketIdParams = z.object({ ticket: z.string().min(1).max(64) }).strict();

export const AgentCall = z.discriminatedUnion("method", [
  z.object({ method: z.literal("ticket.request"), params: TicketRequestParams }).strict(),
  z.object({ method: z.literal("ticket.get"), params: TicketIdParams }).strict(),
  z.object({ method: z.literal("ticket.release"), params: TicketIdParams }).strict(),
]);
export type AgentCall = z.infer<typeof AgentCall>;

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

/** Everything an agent may send once it has been welcomed. */
export const AgentMessage = z.union([Heartbeat, AgentRequest, Reply]);
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

/** Everything the master may send to an agent. */
export const MasterMessage = z.union([Welcome, Refused, Reply]);
export type MasterMessage = z.infer<typeof MasterMessage>;

// ---- state as the HTTP API shows it ----

export const HostState = z.enum(["up", "down", "reconnecting"]);
export type HostState = z.infer<typeof HostState>;

export const HostView = z.object({
  name,
  state: HostState,
  backends: z.array(BackendInfo),
  cores: count,
  memoryBytes: count,
  slots: count,
  slotsInUse: count,
  dataAddress: z.string(),
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
  host: name,
  state: MemberState,
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
}).strict();
export type MemberView = z.infer<typeof MemberView>;

export const ClusterState = z.enum(["forking", "running", "joined", "killed", "failed"]);
export type ClusterState = z.infer<typeof ClusterState>;

export const ClusterView = z.object({
  id: z.string(),
  ticket: z.string(),
  parentVm: z.string(),
  parentHost: name,
  state: ClusterState,
  createdAt: z.string(),
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

/** Body of POST /v1/tickets. */
export const TicketRequestBody = z.object({
  slots: z.number().int().positive().max(4096),
  ttl_ms: z.number().int().positive().max(86_400_000).optional(),
  owner: z.string().max(200).optional(),
}).strict();
export type TicketRequestBody = z.infer<typeof TicketRequestBody>;

/** A one-line description of why a value did not match its schema. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.slice(0, 3).map((i) =>
    `${i.path.length ? i.path.join(".") : "message"}: ${i.message}`
  ).join("; ");
}
