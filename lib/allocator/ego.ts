/**
 * The Platform EGO allocator, through libegosf (native/ego/) as SnowFlock did:
 * a ticket is one EGO allocation of 1..n slots for the configured consumer.
 *
 * EGO answers asynchronously: ego_alloc returns an allocation id and hosts
 * arrive later as RESOURCE_ADD messages, possibly fewer than asked and over
 * several messages. A pump polls libegosf (non-blocking) every `pollMs`; a
 * request is granted when n slots arrived, or `settleMs` after the first add
 * (a partial grant), or with what arrived by the request's timeout (0 → the
 * allocation is freed and the guest sees SF_ENOSLOTS). Hosts are agents by
 * `schedulerNode` or name; EGO hosts without an agent, and hosts added after
 * the grant, are given back at once. RESOURCE_RECLAIM of a granted host tells
 * the master (its clones there fail) and is acknowledged by releasing the host.
 */
import type { Logger } from "../log.ts";
import type { Placement } from "../control/messages.ts";
import { type EgoEvent, EgoSession } from "../../native/ego/egosf.ts";
import {
  type Allocator,
  AllocatorError,
  type ClusterView,
  type Grant,
  type Reclaim,
  type SlotRequest,
} from "./allocator.ts";
import { hostsBySchedulerNode } from "./scheduler_nodes.ts";

export interface EgoSettings {
  /** Path of libegosf.so (scripts/build-libegosf.sh SDK_DIR). */
  library: string;
  /** EGO client conf dir (EGO_CONFDIR). */
  confDir: string;
  user: string;
  password: string;
  /** Consumer the slots are allocated for, e.g. /SnowFlock */
  consumer: string;
  resourceGroup: string;
  /** Client name registered with EGO. */
  client?: string;
  /** After the first RESOURCE_ADD, how long to wait for more before granting. */
  settleMs?: number;
  /** How often libegosf is polled for messages. */
  pollMs?: number;
}

interface Allocation {
  ticket: string;
  allocId: string;
  want: number;
  /** EGO host → slots EGO has given this allocation. */
  egoHosts: Map<string, number>;
  /** Set at grant: EGO host → agent, for the hosts the ticket uses. */
  granted?: Map<string, string>;
  firstAddAt?: number;
  deadline: number;
  view: ClusterView;
  done?: (grant: Grant) => void;
}

export class EgoAllocator implements Allocator {
  readonly name = "ego";
  #session: EgoSession;
  #s: Required<EgoSettings>;
  #log: Logger;
  #allocs = new Map<string, Allocation>();
  #byTicket = new Map<string, string>();
  #listeners: ((r: Reclaim) => void)[] = [];
  #timer: ReturnType<typeof setInterval>;

  constructor(settings: EgoSettings, logger: Logger) {
    this.#s = { client: "snowflock", settleMs: 1000, pollMs: 50, ...settings };
    this.#log = logger;
    try {
      this.#session = EgoSession.open({
        library: settings.library,
        confDir: settings.confDir,
        user: settings.user,
        password: settings.password,
        client: this.#s.client,
      });
    } catch (e) {
      throw new AllocatorError(`Cannot start the EGO allocator: ${(e as Error).message}`, {
        cause: e,
      });
    }
    this.#timer = setInterval(() => this.#pump(), this.#s.pollMs);
  }

  request(request: SlotRequest, view: ClusterView): Promise<Grant> {
    let allocId: string;
    try {
      allocId = this.#session.request(this.#s.consumer, this.#s.resourceGroup, request.slots);
    } catch (e) {
      return Promise.reject(new AllocatorError((e as Error).message, { cause: e }));
    }
    const a: Allocation = {
      ticket: request.ticket,
      allocId,
      want: request.slots,
      egoHosts: new Map(),
      deadline: Date.now() + request.timeoutMs,
      view,
    };
    this.#allocs.set(allocId, a);
    this.#byTicket.set(request.ticket, allocId);
    return new Promise((resolve) => a.done = resolve);
  }

  release(ticket: string): Promise<void> {
    const allocId = this.#byTicket.get(ticket);
    if (allocId === undefined) return Promise.resolve();
    this.#byTicket.delete(ticket);
    const a = this.#allocs.get(allocId);
    this.#allocs.delete(allocId);
    // A release while the request still waits ends it with nothing.
    a?.done?.({ placements: [], source: allocId });
    try {
      this.#session.release(allocId);
    } catch (e) {
      return Promise.reject(new AllocatorError((e as Error).message, { cause: e }));
    }
    return Promise.resolve();
  }

  onReclaim(listener: (reclaim: Reclaim) => void): void {
    this.#listeners.push(listener);
  }

  close(): Promise<void> {
    clearInterval(this.#timer);
    for (const a of this.#allocs.values()) a.done?.({ placements: [], source: a.allocId });
    this.#allocs.clear();
    this.#byTicket.clear();
    try {
      this.#session.close(); // unregisters: EGO frees the client's allocations
    } catch (e) {
      this.#log.warn("EGO close failed", { error: (e as Error).message });
    }
    return Promise.resolve();
  }

  /** Drains libegosf's events, then grants the requests that are due. */
  #pump(): void {
    try {
      for (let i = 0; i < 1000; i++) {
        const e = this.#session.poll(0);
        if (!e) break;
        this.#event(e);
      }
    } catch (e) {
      this.#log.warn("EGO poll failed", { error: (e as Error).message });
    }
    const now = Date.now();
    for (const a of this.#allocs.values()) {
      if (a.granted) continue;
      const have = [...a.egoHosts.values()].reduce((n, s) => n + s, 0);
      const settled = a.firstAddAt !== undefined && now - a.firstAddAt >= this.#s.settleMs;
      if (have >= a.want || settled || now >= a.deadline) this.#grant(a);
    }
  }

  #event(e: EgoEvent): void {
    const a = this.#allocs.get(e.allocId);
    if (!a) return; // an allocation we already released
    if (e.kind === "add") {
      if (a.granted) return this.#giveBack(a, e.host, "added after the grant");
      a.firstAddAt ??= Date.now();
      a.egoHosts.set(e.host, (a.egoHosts.get(e.host) ?? 0) + e.slots);
      return;
    }
    a.egoHosts.delete(e.host);
    const agent = a.granted?.get(e.host);
    if (!agent) return;
    a.granted!.delete(e.host);
    this.#giveBack(a, e.host, "reclaimed (acknowledged)");
    const reclaim = { ticket: a.ticket, hosts: [agent], reason: `EGO reclaimed ${e.host}` };
    this.#log.info("EGO reclaim", { ticket: a.ticket, alloc: a.allocId, host: e.host });
    for (const l of this.#listeners) l(reclaim);
  }

  #grant(a: Allocation): void {
    const agents = hostsBySchedulerNode(a.view.upHosts());
    const placements: Placement[] = [];
    a.granted = new Map();
    for (const [egoHost, slots] of [...a.egoHosts].sort((x, y) => x[0].localeCompare(y[0]))) {
      const h = agents.get(egoHost);
      const room = h ? Math.min(slots, Math.max(0, h.slots - h.inUse)) : 0;
      if (!h || room === 0) {
        this.#giveBack(a, egoHost, h ? "agent has no free slots" : "no agent on this host");
        continue;
      }
      a.granted.set(egoHost, h.name);
      placements.push({ host: h.name, slots: room });
    }
    const done = a.done!;
    a.done = undefined;
    if (placements.length === 0) {
      this.release(a.ticket).catch((e) =>
        this.#log.warn("EGO release failed", { error: (e as Error).message })
      );
    }
    done({ placements, source: a.allocId });
  }

  #giveBack(a: Allocation, host: string, why: string): void {
    try {
      this.#session.releaseHost(a.allocId, host);
      this.#log.debug("EGO host given back", { alloc: a.allocId, host, why });
    } catch (e) {
      this.#log.warn("EGO host release failed", { host, error: (e as Error).message });
    }
  }
}
