/**
 * The master: hosts and their health, tickets, impromptu clusters. It holds the
 * agents' control connections and keeps every state change in the store, so a
 * restarted master carries on with the same tickets and clusters.
 */
import type { Allocator, ClusterView as AllocatorView, Reclaim } from "../allocator/allocator.ts";
import { grantedSlots } from "../allocator/allocator.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { join } from "node:path";
import {
  type AgentCall,
  AgentMessage,
  type ClusterView,
  type ForkPlan,
  Hello,
  type Inventory,
  type MasterCall,
  type MemberView,
  OutFiles,
  type RunBody,
  type StatusView,
  type TicketRequestParams,
  type TicketView,
  type VmEvent,
  type VmView,
} from "./messages.ts";
import { JobStreams } from "./job_streams.ts";
import { Peer } from "./peer.ts";
import { hostView, type Store, type TicketRecord, ticketView } from "./store.ts";
import { tokensEqual } from "./token.ts";

export interface MasterOptions {
  store: Store;
  /** Where uploaded guest modules are kept, by content hash. */
  moduleDir: string;
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
  #jobs = new JobStreams();
  #joinWaiters = new Map<string, Set<() => void>>();
  /** performance.now() at fork.begin, per cluster: the origin of its timeline. */
  #forkStarted = new Map<string, number>();
  #listeners = new Set<() => void>();
  #changePending = false;
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

  /**
   * Calls `listener` after state changed (hosts, tickets, clusters, VMs,
   * memory figures), at most once per CHANGE_COALESCE_MS; returns the unsubscribe.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    if (this.#changePending || this.#listeners.size === 0) return;
    this.#changePending = true;
    setTimeout(() => {
      this.#changePending = false;
      for (const l of this.#listeners) l();
    }, CHANGE_COALESCE_MS);
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
      onMessage: (m) => {
        if (m.type === "event") this.#vmEvent(name, m.event);
      },
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
      ...(inventory.schedulerNode ? { schedulerNode: inventory.schedulerNode } : {}),
      ...(inventory.memoryTransport ? { memoryTransport: inventory.memoryTransport } : {}),
      state: "up",
      backends: inventory.backends,
      cores: inventory.cores,
      memoryBytes: inventory.memoryBytes,
      slots: inventory.slots,
      dataAddress: inventory.dataAddress,
      lastSeen: new Date().toISOString(),
    });
    peer.send({ type: "welcome", host: name, heartbeatMs: this.#o.heartbeatMs });
    this.#changed();
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
      case "fork.begin":
        return Promise.resolve(this.#forkBegin(host, call.params.ticket, call.params.parentVm));
      case "fork.dispatch":
        return this.#forkDispatch(host, call.params);
      case "cluster.join":
        return this.joinCluster(call.params.cluster);
      case "cluster.kill":
        return this.killCluster(call.params.cluster);
    }
  }

  /** Sends a call to a host's agent. */
  #callAgent(host: string, call: MasterCall, timeoutMs?: number): Promise<unknown> {
    const c = this.#connections.get(host);
    if (!c) return Promise.reject(new MasterError("unavailable", `Cannot reach host ${host}`));
    return c.peer.request(call, timeoutMs);
  }

  // ---- VMs ----

  /** Keeps a module under its sha256; returns the hash. */
  async putModule(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
    const magic = [0x00, 0x61, 0x73, 0x6d];
    if (bytes.length < 8 || magic.some((b, i) => bytes[i] !== b)) {
      throw new MasterError("bad_request", "Cannot load guest: not a WebAssembly module");
    }
    const hash = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
    const path = join(this.#o.moduleDir, `${hash}.wasm`);
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
    return hash;
  }

  /** A module's bytes, or undefined when it was never uploaded. */
  async module(hash: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
    if (!/^[0-9a-f]{64}$/.test(hash)) return undefined;
    try {
      return await Deno.readFile(join(this.#o.moduleDir, `${hash}.wasm`));
    } catch {
      return undefined;
    }
  }

  /** Starts a VM on a host (the given one, or the wasm host with the most free slots). */
  async runVm(body: RunBody): Promise<VmView> {
    if (!(await this.module(body.module))) {
      throw new MasterError("not_found", `Cannot run module ${body.module}: not uploaded`);
    }
    const host = body.host ?? this.#pickHost();
    if (!this.#connections.has(host)) {
      throw new MasterError("unavailable", `Cannot run on host ${host}: not connected`);
    }
    const vm: VmView = {
      id: newId("vm"),
      job: newId("j"),
      host,
      module: body.module,
      state: "starting",
      createdAt: new Date().toISOString(),
    };
    this.#o.store.insertVm(vm);
    try {
      await this.#callAgent(host, {
        method: "vm.start",
        params: { vm: vm.id, module: body.module, args: body.args, env: body.env },
      }, 300_000);
    } catch (e) {
      const reason = (e as Error).message;
      this.#o.store.setVmState(vm.id, "failed", { reason });
      this.#jobs.publish(vm.job, { kind: "end", exitCode: 1, reason });
      throw new MasterError("bad_request", reason);
    }
    return this.vm(vm.id);
  }

  #pickHost(): string {
    const inUse = this.#slotsInUse();
    const hosts = this.#o.store.hosts().filter((h) =>
      h.state === "up" && h.backends.some((b) => b.kind === "wasm" && b.available)
    ).sort((a, b) =>
      (b.slots - (inUse.get(b.name) ?? 0)) - (a.slots - (inUse.get(a.name) ?? 0)) ||
      a.name.localeCompare(b.name)
    );
    if (hosts.length === 0) throw new MasterError("unavailable", "Cannot run: no host is up");
    return hosts[0].name;
  }

  vm(id: string): VmView {
    const vm = this.#o.store.vm(id);
    if (!vm) throw new MasterError("not_found", `Cannot find VM ${id}`);
    const { cluster: _c, clone: _n, ...view } = vm;
    return view;
  }

  /** The NDJSON event stream of a job: every VM's output and state, then its end. */
  followJob(job: string): ReadableStream<Uint8Array> {
    return this.#jobs.follow(job);
  }

  /** The files of a VM's /out, fetched from its host. */
  async vmOut(id: string): Promise<OutFiles> {
    const vm = this.vm(id);
    const result = await this.#callAgent(
      vm.host,
      { method: "vm.out", params: { vm: id } },
      120_000,
    );
    const parsed = OutFiles.safeParse(result);
    if (!parsed.success) throw new MasterError("unavailable", `Cannot read /out of ${id}`);
    return parsed.data;
  }

  async killVm(id: string): Promise<VmView> {
    const vm = this.vm(id);
    await this.#callAgent(vm.host, { method: "vm.kill", params: { vm: id } });
    return this.vm(id);
  }

  #vmEvent(host: string, e: VmEvent): void {
    if (e.kind === "fork-memory") {
      const c = this.#o.store.cluster(e.cluster);
      if (c?.parentHost === host) this.#o.store.setClusterMemory(e.cluster, e.stats);
      else this.#rejected++;
      return this.#changed();
    }
    const vm = this.#o.store.vm(e.vm);
    if (!vm || vm.host !== host) {
      this.#rejected++;
      this.#o.logger.warn("event for an unknown VM", { host, vm: e.vm });
      return;
    }
    const clone = vm.clone ?? 0;
    if (e.kind === "memory") {
      if (vm.cluster) this.#o.store.setMemberMemory(vm.cluster, clone, e.stats);
      return this.#changed();
    }
    if (e.kind === "output") {
      this.#jobs.publish(vm.job, {
        kind: "output",
        vm: e.vm,
        clone,
        stream: e.stream,
        line: e.line,
      });
      return;
    }
    const extra = {
      ...(e.exitCode !== undefined ? { exitCode: e.exitCode } : {}),
      ...(e.reason ? { reason: e.reason } : {}),
    };
    this.#o.store.setVmState(e.vm, e.state, extra);
    this.#changed();
    this.#jobs.publish(vm.job, { kind: "state", vm: e.vm, clone, state: e.state, ...extra });
    if (vm.cluster) this.#memberChanged(vm.cluster, clone, e.state, extra);
    else if (e.state !== "running") {
      this.#jobs.publish(vm.job, {
        kind: "end",
        exitCode: e.exitCode ?? 1,
        ...(e.reason ? { reason: e.reason } : {}),
      });
    }
  }

  // ---- impromptu clusters ----

  #forkBegin(host: string, ticketId: string, parentVm: string): ForkPlan {
    const parent = this.#o.store.vm(parentVm);
    if (!parent || parent.host !== host) {
      throw new MasterError("bad_request", `Cannot fork ${parentVm}: no such VM on ${host}`);
    }
    const ticket = this.ticket(ticketId);
    if (ticket.owner !== parentVm) {
      throw new MasterError("conflict", `Cannot fork with ticket ${ticketId}: not ${parentVm}'s`);
    }
    this.useTicket(ticketId);
    const cluster = newId("c");
    const members: MemberView[] = [];
    for (const p of ticket.placements) {
      for (let i = 0; i < p.slots; i++) {
        members.push({
          clone: members.length + 1,
          vm: newId("vm"),
          host: p.host,
          state: "starting",
        });
      }
    }
    const now = new Date().toISOString();
    this.#o.store.insertCluster({
      id: cluster,
      ticket: ticketId,
      parentVm,
      parentHost: host,
      state: "forking",
      createdAt: now,
      timeline: {},
    }, members);
    for (const m of members) {
      this.#o.store.insertVm({
        id: m.vm,
        job: parent.job,
        host: m.host,
        module: parent.module,
        state: "starting",
        createdAt: now,
        cluster,
        clone: m.clone,
      });
    }
    this.#forkStarted.set(cluster, performance.now());
    this.#changed();
    return {
      cluster,
      job: parent.job,
      members: members.map((m) => ({
        clone: m.clone,
        host: m.host,
        dataAddress: this.#o.store.host(m.host)?.dataAddress ?? "",
      })),
    };
  }

  async #forkDispatch(
    host: string,
    p: {
      cluster: string;
      descriptor: string;
      pauseMs: number;
      resume: "clone" | "checkpoint";
      mcdist?: string;
    },
  ): Promise<{ started: number }> {
    const c = this.cluster(p.cluster);
    if (c.parentHost !== host) {
      throw new MasterError("conflict", `Cannot dispatch cluster ${p.cluster}: not ${host}'s`);
    }
    const begun = this.#forkStarted.get(c.id);
    this.#o.store.updateTimeline(c.id, {
      pauseMs: p.pauseMs,
      descriptorBytes: Math.floor(p.descriptor.length * 3 / 4),
      ...(begun !== undefined ? { dispatchedMs: performance.now() - begun } : {}),
    });
    this.#o.store.setClusterState(c.id, "running");
    this.#changed();
    const byHost = Map.groupBy(c.members, (m) => m.host);
    let started = 0;
    await Promise.all([...byHost].map(async ([h, members]) => {
      try {
        await this.#callAgent(h, {
          method: "clone.start",
          params: {
            cluster: c.id,
            clones: members.map((m) => ({ clone: m.clone, vm: m.vm })),
            descriptor: p.descriptor,
            resume: p.resume,
            ...(p.mcdist ? { mcdist: p.mcdist } : {}),
            local: h === c.parentHost,
          },
        }, 120_000);
        started += members.length;
      } catch (e) {
        for (const m of members) {
          const reason = `Cannot start clone on ${h}: ${(e as Error).message}`;
          this.#o.store.setVmState(m.vm, "failed", { reason });
          this.#memberChanged(c.id, m.clone, "failed", { reason });
        }
      }
    }));
    return { started };
  }

  cluster(id: string): ClusterView {
    const c = this.#o.store.cluster(id);
    if (!c) throw new MasterError("not_found", `Cannot find cluster ${id}`);
    return c;
  }

  #memberChanged(
    cluster: string,
    clone: number,
    state: "running" | "exited" | "failed" | "killed",
    extra: { exitCode?: number; reason?: string },
  ): void {
    const before = this.#o.store.cluster(cluster)?.members.find((m) => m.clone === clone);
    if (!before || (before.state !== "starting" && before.state !== "running")) return;
    this.#o.store.setMemberState(cluster, clone, state, extra);
    this.#changed();
    const c = this.cluster(cluster);
    const started = this.#forkStarted.get(cluster);
    if (
      started !== undefined && c.timeline.readyMs === undefined &&
      c.members.every((m) => m.state !== "starting")
    ) {
      this.#o.store.updateTimeline(cluster, { readyMs: performance.now() - started });
    }
    if (c.members.every((m) => m.state !== "starting" && m.state !== "running")) {
      for (const wake of this.#joinWaiters.get(cluster) ?? []) wake();
      this.#joinWaiters.delete(cluster);
    }
  }

  /** Waits until every clone of a cluster is done, then releases its ticket. */
  async joinCluster(id: string): Promise<ClusterView> {
    const c = this.cluster(id);
    if (c.members.some((m) => m.state === "starting" || m.state === "running")) {
      await new Promise<void>((resolve) => {
        const set = this.#joinWaiters.get(id) ?? new Set();
        set.add(resolve);
        this.#joinWaiters.set(id, set);
      });
    }
    if (c.state === "forking" || c.state === "running") {
      const started = this.#forkStarted.get(id);
      this.#o.store.setClusterState(id, "joined");
      this.#changed();
      if (started !== undefined) {
        this.#o.store.updateTimeline(id, { joinedMs: performance.now() - started });
      }
      await this.releaseTicket(c.ticket);
    }
    return this.cluster(id);
  }

  /** Ends every clone of a cluster; they count as failed for the join. */
  async killCluster(id: string): Promise<ClusterView> {
    const c = this.cluster(id);
    await Promise.all(
      c.members.filter((m) => m.state === "starting" || m.state === "running")
        .map(async (m) => {
          await this.#callAgent(m.host, { method: "vm.kill", params: { vm: m.vm } }).catch(
            () => {},
          );
          this.#o.store.setVmState(m.vm, "killed", { reason: "killed by sf_kill" });
          this.#memberChanged(id, m.clone, "killed", { reason: "killed by sf_kill" });
        }),
    );
    if (c.state === "forking" || c.state === "running") {
      this.#o.store.setClusterState(id, "killed");
      this.#changed();
      await this.releaseTicket(c.ticket);
    }
    return this.cluster(id);
  }

  #hostDown(name: string, reason: string): void {
    const host = this.#o.store.host(name);
    if (!host || host.state === "down") return;
    const why = `host ${name} down: ${reason}`;
    this.#o.store.setHostState(name, "down", reason);
    for (const vm of this.#o.store.liveVmsOn(name)) {
      this.#vmEvent(name, { kind: "state", vm, state: "failed", reason: why });
    }
    this.#changed();
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
        this.#changed();
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
          ...(h.schedulerNode ? { schedulerNode: h.schedulerNode } : {}),
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
        { ticket: record.id, slots: params.slots, timeoutMs: params.waitMs ?? DEFAULT_WAIT_MS },
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
    this.#changed();
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
    this.#changed();
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
      this.#changed();
    }
    return this.ticket(id);
  }

  /**
   * The allocator took a ticket's slots on some hosts back: an unused ticket
   * loses those placements; clones already there are killed and count as
   * failed for the parent's sf_join.
   */
  #reclaim(r: Reclaim): void {
    this.#o.logger.warn("slots reclaimed", {
      ticket: r.ticket,
      hosts: r.hosts.join(","),
      reason: r.reason,
    });
    const t = this.#o.store.ticket(r.ticket);
    if (!t) return;
    const lost = new Set(r.hosts);
    if (t.state === "granted") {
      const placements = t.placements.filter((p) => !lost.has(p.host));
      this.#o.store.updateTicket(r.ticket, { placements, granted: grantedSlots(placements) });
    }
    const reason = `slots reclaimed: ${r.reason}`;
    for (const host of lost) {
      for (const m of this.#o.store.liveMembersOn(host)) {
        const c = this.#o.store.cluster(m.cluster);
        const member = c?.members.find((x) => x.clone === m.clone);
        if (c?.ticket !== r.ticket || !member) continue;
        this.#callAgent(host, { method: "vm.kill", params: { vm: member.vm } }).catch(() => {});
        this.#o.store.setVmState(member.vm, "failed", { reason });
        this.#memberChanged(c.id, m.clone, "failed", { reason });
      }
    }
    this.#changed();
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

/** Change notifications are coalesced over this window (a fork changes many rows at once). */
const CHANGE_COALESCE_MS = 50;

/** How long an allocator may wait for slots when the request does not say. */
const DEFAULT_WAIT_MS = 30_000;

function newId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
