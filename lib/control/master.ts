/**
 * The master: hosts and their health, tickets, impromptu clusters. It holds the
 * agents' control connections and keeps every state change in the store, so a
 * restarted master carries on with the same tickets and clusters.
 */
import type { Allocator, ClusterView as AllocatorView, Reclaim } from "../allocator/allocator.ts";
import { grantedSlots } from "../allocator/allocator.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import {
  type AgentCall,
  AgentMessage,
  Hello,
  type Inventory,
  type StatusView,
  type TicketRequestParams,
  type TicketView,
} from "./messages.ts";
import { Peer } from "./peer.ts";
import { hostView, type Store, type TicketRecord, ticketView } from "./store.ts";
import { tokensEqual } from "./token.ts";

export interface MasterOptions {
  store: Store;
  allocator: Allocator;
  token: string;
  logger: Logger;
  /** How often agents send heartbeats. */
  heartbeatMs: number;
  /** Silence after which a host is marked down and its clones failed. */
  heartbeatTimeoutMs: number;
  /** Lifetime of a granted ticket nobody has used. */
  ticketTtlMs: number;
}

/** An error whose `code` travels to the caller (HTTP status or reply code). */
export class MasterError extends Error {
  readonly code: "bad_request" | "not_found" | "conflict" | "unavailable";
  constructor(code: MasterError["code"], message: string) {
    super(message);
    this.name = "MasterError";
    this.code = code;
  }
}

interface Connection {
  peer: Peer<AgentMessage>;
  lastSeen: number;
}

export class Master {
  #o: MasterOptions;
  #connections = new Map<string, Connection>();
  #startedAt = new Date();
  #rejected = 0;
  #closing = false;
  /** Until then, hosts known from before a restart may still reconnect. */
  #recoveryDeadline = 0;
  #timer: ReturnType<typeof setInterval>;

  constructor(options: MasterOptions) {
    this.#o = options;
    this.#recover();
    options.allocator.onReclaim((r) => this.#reclaim(r));
    this.#timer = setInterval(() => this.#tick(), Math.min(500, options.heartbeatMs));
  }

  get rejectedMessages(): number {
    return this.#rejected;
  }

  close(): void {
    this.#closing = true;
    clearInterval(this.#timer);
    for (const c of this.#connections.values()) c.peer.close(1001, "master shutting down");
    this.#connections.clear();
  }

  /** After a restart, hosts must reconnect within one heartbeat timeout or be marked down. */
  #recover(): void {
    const now = Date.now();
    for (const h of this.#o.store.hosts()) {
      if (h.state === "up") this.#o.store.setHostState(h.name, "reconnecting", "master restarted");
    }
    this.#recoveryDeadline = now + this.#o.heartbeatTimeoutMs;
  }

  /** Counts a message that failed validation (HTTP or WebSocket). */
  countRejected(): void {
    this.#rejected++;
  }

  // ---- agents ----

  /** Takes over an upgraded WebSocket: the first frame must be a valid hello. */
  acceptAgent(socket: WebSocket): void {
    const log = this.#o.logger;
    const first = (e: MessageEvent) => {
      socket.removeEventListener("message", first);
      const refuse = (reason: string) => {
        this.#rejected++;
        log.warn("agent refused", { reason });
        socket.send(JSON.stringify({ v: 1, type: "refused", reason }));
        socket.close(4001, reason.slice(0, 120));
      };
      let json: unknown;
      try {
        json = JSON.parse(String(e.data));
      } catch {
        return refuse("first message is not JSON");
      }
      const hello = Hello.safeParse(json);
      if (!hello.success) return refuse(`malformed hello: ${hello.error.issues[0]?.message}`);
      if (!tokensEqual(hello.data.token, this.#o.token)) return refuse("wrong join token");
      this.#join(socket, hello.data.name, hello.data.inventory);
    };
    socket.addEventListener("message", first);
  }

  #join(socket: WebSocket, name: string, inventory: Inventory): void {
    const previous = this.#connections.get(name);
    if (previous) previous.peer.close(4002, "replaced by a new connection");
    const peer: Peer<AgentMessage> = new Peer({
      socket,
      schema: AgentMessage,
      logger: this.#o.logger.child(name),
      onRequest: (call) => this.#agentCall(name, call),
      onMessage: () => {},
      onRejected: () => this.#rejected++,
      onClose: () => {
        if (!this.#closing && this.#connections.get(name)?.peer === peer) {
          this.#connections.delete(name);
          this.#hostDown(name, "connection closed");
        }
      },
    });
    const conn: Connection = { peer, lastSeen: Date.now() };
    socket.addEventListener("message", () => conn.lastSeen = Date.now());
    this.#connections.set(name, conn);
    this.#o.store.upsertHost({
      name,
      state: "up",
      backends: inventory.backends,
      cores: inventory.cores,
      memoryBytes: inventory.memoryBytes,
      slots: inventory.slots,
      dataAddress: inventory.dataAddress,
      lastSeen: new Date().toISOString(),
    });
    peer.send({ type: "welcome", host: name, heartbeatMs: this.#o.heartbeatMs });
    this.#o.logger.info("host up", {
      host: name,
      slots: inventory.slots,
      data: inventory.dataAddress,
    });
  }

  #agentCall(host: string, call: AgentCall): Promise<unknown> {
    switch (call.method) {
      case "ticket.request":
        return this.requestTicket({ ...call.params, owner: call.params.owner ?? host });
      case "ticket.get":
        return Promise.resolve(this.ticket(call.params.ticket));
      case "ticket.release":
        return this.releaseTicket(call.params.ticket);
    }
  }

  #hostDown(name: string, reason: string): void {
    const host = this.#o.store.host(name);
    if (!host || host.state === "down") return;
    this.#o.store.transaction(() => {
      this.#o.store.setHostState(name, "down", reason);
      for (const m of this.#o.store.liveMembersOn(name)) {
        this.#o.store.setMemberState(m.cluster, m.clone, "failed", { reason: `host ${name} down` });
      }
    });
    this.#o.logger.warn("host down", { host: name, reason });
  }

  #tick(): void {
    const now = Date.now();
    for (const [name, c] of this.#connections) {
      if (now - c.lastSeen > this.#o.heartbeatTimeoutMs) {
        this.#connections.delete(name);
        c.peer.close(4003, "heartbeat timeout");
        this.#hostDown(name, "missed heartbeats");
      } else {
        this.#o.store.touchHost(name, new Date(c.lastSeen).toISOString());
      }
    }
    if (now > this.#recoveryDeadline) {
      for (const h of this.#o.store.hosts()) {
        if (h.state === "reconnecting") this.#hostDown(h.name, "did not reconnect after restart");
      }
    }
    for (const t of this.#o.store.activeTickets()) {
      if (t.state === "granted" && t.expiresAt && Date.parse(t.expiresAt) < now) {
        this.#o.store.updateTicket(t.id, { state: "expired", reason: "not used before expiry" });
        this.#o.allocator.release(t.id).catch((e) =>
          this.#o.logger.warn("allocator release failed", { ticket: t.id, error: e })
        );
        this.#o.logger.info("ticket expired", { ticket: t.id });
      }
    }
  }

  // ---- tickets ----

  #view(): AllocatorView {
    const inUse = this.#slotsInUse();
    return {
      upHosts: () =>
        this.#o.store.hosts().filter((h) => h.state === "up").map((h) => ({
          name: h.name,
          slots: h.slots,
          inUse: inUse.get(h.name) ?? 0,
        })),
    };
  }

  #slotsInUse(): Map<string, number> {
    const used = new Map<string, number>();
    for (const t of this.#o.store.activeTickets()) {
      for (const p of t.placements) used.set(p.host, (used.get(p.host) ?? 0) + p.slots);
    }
    return used;
  }

  /** Asks the allocator for up to `slots` slots; the ticket may hold fewer, even none. */
  async requestTicket(params: TicketRequestParams): Promise<TicketView> {
    const now = new Date();
    const ttl = params.ttlMs ?? this.#o.ticketTtlMs;
    const record: TicketRecord = {
      id: `t-${crypto.randomUUID().slice(0, 8)}`,
      requested: params.slots,
      granted: 0,
      state: "pending",
      placements: [],
      allocator: this.#o.allocator.name,
      ...(params.owner ? { owner: params.owner } : {}),
      createdAt: now.toISOString(),
    };
    this.#o.store.insertTicket(record);
    try {
      const grant = await this.#o.allocator.request(
        { ticket: record.id, slots: params.slots, timeoutMs: ttl },
        this.#view(),
      );
      const granted = grantedSlots(grant.placements);
      this.#o.store.updateTicket(record.id, {
        granted,
        placements: grant.placements,
        state: granted > 0 ? "granted" : "released",
        ...(grant.source ? { source: grant.source } : {}),
        ...(granted > 0
          ? { expiresAt: new Date(Date.now() + ttl).toISOString() }
          : { reason: "no slots available" }),
      });
    } catch (e) {
      this.#o.store.updateTicket(record.id, {
        state: "failed",
        reason: `allocator: ${(e as Error).message}`,
      });
    }
    const t = this.ticket(record.id);
    this.#o.logger.info("ticket", { ticket: t.id, requested: t.requested, granted: t.granted });
    return t;
  }

  ticket(id: string): TicketView {
    const t = this.#o.store.ticket(id);
    if (!t) throw new MasterError("not_found", `Cannot find ticket ${id}`);
    return ticketView(t);
  }

  /** Marks a granted ticket in use (a fork started from it); a ticket is used once. */
  useTicket(id: string): TicketView {
    const t = this.ticket(id);
    if (t.state !== "granted") {
      throw new MasterError("conflict", `Cannot use ticket ${id}: it is ${t.state}`);
    }
    this.#o.store.updateTicket(id, { state: "in_use" });
    return this.ticket(id);
  }

  /** Returns a ticket's slots to the allocator; releasing a finished ticket is a no-op. */
  async releaseTicket(id: string): Promise<TicketView> {
    const t = this.ticket(id);
    if (t.state === "pending" || t.state === "granted" || t.state === "in_use") {
      this.#o.store.updateTicket(id, { state: "released" });
      await this.#o.allocator.release(id).catch((e) =>
        this.#o.logger.warn("allocator release failed", { ticket: id, error: e })
      );
    }
    return this.ticket(id);
  }

  #reclaim(r: Reclaim): void {
    this.#o.logger.warn("slots reclaimed", {
      ticket: r.ticket,
      hosts: r.hosts.join(","),
      reason: r.reason,
    });
  }

  // ---- views ----

  status(): StatusView {
    const inUse = this.#slotsInUse();
    return {
      version: VERSION,
      allocator: this.#o.allocator.name,
      startedAt: this.#startedAt.toISOString(),
      hosts: this.#o.store.hosts().map((h) => hostView(h, inUse.get(h.name) ?? 0)),
      tickets: this.#o.store.recentTickets().map(ticketView),
      clusters: this.#o.store.recentClusters(),
      rejectedMessages: this.#rejected,
    };
  }
}
