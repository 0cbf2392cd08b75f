/**
 * The mcdist memory server: one per agent, serving any number of forks. Requests arrive by
 * unicast; pages go to the fork's multicast group so that one reply serves every clone. A request
 * for a page that is queued or was sent a moment ago is ignored (lockstep: siblings fault on the
 * same page at nearly the same time). The send rate follows the receivers' reports (flow.ts);
 * whenever no asked-for page waits, it sends pages ahead of the clones' faults: along the scan
 * they follow (read-ahead) and what it was told is likely next (push); when only a few clients
 * still ask and others are done, replies go unicast (end game).
 *
 * @module
 */

import { createLogger, type Logger } from "../log.ts";
import { PAGE_PRESENT } from "../memory/page_mark.ts";
import {
  emptyStats,
  type PushingPageServer,
  type ServedFork,
  type TransportStats,
} from "../memory/transport.ts";
import { groupFor, type McdistConfig, payloadBytes, resolveConfig } from "./config.ts";
import { FlowController, type FlowOptions, Pacer, RateMeter } from "./flow.ts";
import { type ReadaheadOptions, StridePredictor } from "./readahead.ts";
import { ReplayGuard } from "./replay.ts";
import {
  type Endpoint,
  endpointKey,
  type InboundShim,
  onDatagram,
  openSocket,
  PacketStamp,
  parseEndpoint,
  type UdpSocket,
} from "./socket.ts";
import {
  type Body,
  decodePacket,
  EndReason,
  FLAG_PUSHED,
  FLAG_RESENT,
  FLAG_UNICAST_REPLY,
  FORK_ID_BYTES,
  type ForkKeys,
  type Heard,
  hex,
  maxRuns,
  PacketKey,
  PacketType,
  pageDataRoom,
  type RequestBody,
  toRuns,
} from "./wire.ts";

export interface McdistServerOptions {
  config?: Partial<McdistConfig>;
  /** "host:port" for requests; default the configured interface, any port. */
  listen?: string;
  /** "unicast" when the start-up probe found multicast broken: every reply goes unicast. */
  mode?: "multicast" | "unicast";
  flow?: Partial<FlowOptions>;
  /**
   * A request for a page multicast less than this long ago is a sibling's duplicate (the page is
   * still on its way), unless the requester itself was answered: then it lost the page.
   */
  lockstepMs?: number;
  /** End game: at most this many clients asked within `endgameWindowMs` and one has finished. */
  endgameClients?: number;
  endgameWindowMs?: number;
  /** Pages announced and pushed at a time. */
  pushBatch?: number;
  /** Read-ahead windows; `false` pushes nothing ahead of the clones' faults. */
  readahead?: Partial<ReadaheadOptions> | false;
  log?: Logger;
  inbound?: InboundShim;
}

/** mcdist's own counters for one fork, beyond TransportStats. */
export interface McdistForkCounters {
  /** Page requests ignored because the page was queued or just multicast. */
  lockstepIgnored: number;
  /** Pages pushed (pushPages) while nothing asked for was waiting. */
  pushedPages: number;
  /** Pages sent ahead of the clones' faults along the scan they follow (readahead.ts). */
  readaheadPages: number;
  /** Pages sent unicast (end game, unicast mode, or clients without multicast). */
  unicastPages: number;
  /** Current multicast rate limit, datagrams a second. */
  rate: number;
}

/**
 * Group datagrams a requester must be behind a page's to count as lagging rather than as having
 * lost it: all of them lost too is past belief (0.2^17 at 20 % loss).
 */
const LAG_DATAGRAMS = 16;
/** Group datagrams whose stamps are remembered: a requester further behind counts as lagging no more. */
const GROUP_SEQS = 4096;
/**
 * How long a page may wait in a lagging requester's socket before it is sent again anyway: the
 * requester may have lost it with every datagram around it.
 */
const MAX_LAG_MS = 250;
const ACTIVE_MS = 2_000;
const REPORT_WINDOW_MS = 100;

export async function startMcdistServer(options: McdistServerOptions = {}): Promise<McdistServer> {
  const config = resolveConfig(options.config);
  const listen = parseEndpoint(options.listen ?? `${config.interface}:0`, true);
  const socket = openSocket(listen.address, listen.port);
  try {
    if (options.mode !== "unicast") socket.setMulticastSending(config.interface, config.ttl);
  } catch (error) {
    await socket.close();
    throw error;
  }
  return new McdistServer(socket, `${listen.address}:${socket.port}`, config, options);
}

interface UnicastQueue {
  to: Endpoint;
  /** Pages asked for, then pages read ahead (sent only when none is asked for). */
  pages: Set<number>;
  ahead: Set<number>;
}

class ForkState {
  readonly keys: ForkKeys;
  readonly group: Endpoint;
  readonly stats = emptyStats();
  readonly counters: McdistForkCounters;
  readonly guard = new ReplayGuard();
  readonly flow: FlowController;
  readonly pacer = new Pacer();
  /** PAGES datagrams sent to the group, and to each unicast receiver: what its report is held to. */
  readonly sentMeter = new RateMeter();
  readonly unicastMeters = new Map<string, RateMeter>();
  /** Of those, datagrams of pages sent again (flow control's sign of loss). */
  readonly resentMeter = new RateMeter();
  /** Pages asked for, to multicast in request order. */
  readonly multicast = new Set<number>();
  /** Pages read ahead or pushed to the group, sent when no asked-for page is waiting. */
  readonly ahead = new Map<number, "readahead" | "push">();
  /**
   * The fork's scan, for read-ahead: fed by every page's first request, whoever made it. Clones
   * of one parent run the same code, so those first requests are one clone's faults; a host sees
   * only the pages it asked for before its siblings did, which form no scan (a predictor per
   * host recognised one scan in 1,401 requests of a 16-clone fan-out).
   */
  readonly scan: StridePredictor;
  /** Each requester's scan through pages it lost or missed (sent before it listened). */
  readonly catchUps = new Map<string, StridePredictor>();
  readonly unicast = new Map<string, UnicastQueue>();
  /** Requesters of each queued multicast page. */
  readonly askers = new Map<number, Set<string>>();
  /** When each page was last multicast or pushed (performance.now() ms), and to answer whom. */
  readonly lastSent: Float64Array;
  readonly answered = new Map<number, Set<string>>();
  /** 1 once a page went out by any route: a second send is a retransmit. */
  readonly everSent: Uint8Array;
  /** The stamp (sender, seq) of the datagram that last carried each page (its last part). */
  readonly sentSender: Uint32Array;
  readonly sentSeq: Uint32Array;
  /** 1 when that datagram went to the group, 0 when unicast. */
  readonly sentToGroup: Uint8Array;
  /** Of a page sent to the group, the ordinal of that datagram among the fork's group datagrams. */
  readonly sentOrdinal: Float64Array;
  /** Group datagrams sent, and the stamp seqs of the latest, by ordinal modulo the ring's length. */
  groupSent = 0;
  readonly groupSeqs = new Uint32Array(GROUP_SEQS);
  readonly requesters = new Map<string, number>();
  /** Pages in the order they were first asked for (demandOrder), and which were. */
  readonly demand: number[] = [];
  readonly asked: Uint8Array;
  readonly ended = new Set<number>();
  pushOrder: number[] = [];
  pushNext = 0;
  lastRequestMs = -Infinity;

  constructor(
    readonly fork: ServedFork,
    group: Endpoint,
    flow: Partial<FlowOptions> | undefined,
    readahead: Partial<ReadaheadOptions>,
  ) {
    this.keys = { key: new PacketKey(fork.key), pageSize: fork.pageSize };
    this.scan = new StridePredictor(fork.pageCount, readahead);
    this.group = group;
    this.flow = new FlowController(flow);
    this.counters = {
      lockstepIgnored: 0,
      pushedPages: 0,
      readaheadPages: 0,
      unicastPages: 0,
      rate: this.flow.rate,
    };
    this.lastSent = new Float64Array(fork.pageCount).fill(-Infinity);
    this.everSent = new Uint8Array(fork.pageCount);
    this.sentSender = new Uint32Array(fork.pageCount);
    this.sentSeq = new Uint32Array(fork.pageCount);
    this.sentToGroup = new Uint8Array(fork.pageCount);
    this.sentOrdinal = new Float64Array(fork.pageCount);
    this.asked = new Uint8Array(fork.pageCount);
  }

  hasWork(): boolean {
    return this.multicast.size > 0 || this.ahead.size > 0 || this.unicast.size > 0;
  }
}

export class McdistServer implements PushingPageServer {
  readonly address: string;
  readonly config: McdistConfig;
  #socket: UdpSocket;
  #mode: "multicast" | "unicast";
  #options: McdistServerOptions;
  #forks = new Map<string, ForkState>();
  #total = emptyStats();
  #stamp = new PacketStamp();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pumpQueued = false;
  #log: Logger;
  #closed = false;

  constructor(
    socket: UdpSocket,
    address: string,
    config: McdistConfig,
    options: McdistServerOptions,
  ) {
    this.#socket = socket;
    this.config = config;
    this.#mode = options.mode ?? "multicast";
    this.#options = options;
    this.#log = options.log ?? createLogger("mcdist-server", { quiet: true });
    this.address = address;
    onDatagram(socket, options.inbound, (bytes, from) => this.#receive(bytes, from));
  }

  addFork(fork: ServedFork): void {
    const id = hex(fork.forkId);
    if (this.#forks.has(id)) throw new Error(`Cannot add fork ${id}: already served`);
    if (fork.pageMap.length !== fork.pageCount) {
      throw new RangeError(`Cannot add fork ${id}: page map has ${fork.pageMap.length} entries`);
    }
    const group = { address: groupFor(this.config, fork.forkId), port: this.config.port };
    this.#forks.set(
      id,
      new ForkState(fork, group, this.#options.flow, this.#options.readahead || {}),
    );
    this.#log.debug("fork added", { fork: id, group: group.address, pages: fork.pageCount });
  }

  /**
   * Pages the clones will likely read, most likely first (the agent gives what the clones of the
   * parent's previous fork asked for): pushed to the group whenever no asked-for page waits, each
   * at most once and never if already sent.
   */
  pushPages(forkId: Uint8Array, pages: number[]): void {
    const state = this.#fork(forkId);
    if (state === undefined) {
      throw new Error(`Cannot push pages: fork ${hex(forkId)} is not served`);
    }
    state.pushOrder.push(...pages.filter((p) => this.#servable(state, p)));
    this.#schedule(0);
  }

  pagesPushed(forkId: Uint8Array): number {
    const counters = this.#fork(forkId)?.counters;
    return counters ? counters.pushedPages + counters.readaheadPages : 0;
  }

  demandOrder(forkId: Uint8Array): number[] {
    return [...(this.#fork(forkId)?.demand ?? [])];
  }

  removeFork(forkId: Uint8Array): void {
    const state = this.#fork(forkId);
    if (state === undefined) return;
    this.#forks.delete(hex(forkId));
    if (this.#mode === "multicast" && !this.#closed) {
      this.#send(state, state.group, { type: PacketType.END, reason: EndReason.FORK_REMOVED }, 0);
    }
    state.keys.key.free();
  }

  stats(forkId?: Uint8Array): TransportStats {
    if (forkId === undefined) return { ...this.#total };
    return { ...(this.#fork(forkId)?.stats ?? emptyStats()) };
  }

  counters(forkId: Uint8Array): McdistForkCounters {
    const state = this.#fork(forkId);
    if (state === undefined) {
      throw new Error(`Cannot read counters: fork ${hex(forkId)} is not served`);
    }
    return { ...state.counters, rate: Math.round(state.flow.rate) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    for (const state of [...this.#forks.values()]) this.removeFork(state.fork.forkId);
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#socket.close();
  }

  #fork(forkId: Uint8Array): ForkState | undefined {
    return this.#forks.get(hex(forkId));
  }

  #servable(state: ForkState, page: number): boolean {
    return Number.isInteger(page) && page >= 0 && page < state.fork.pageCount &&
      state.fork.pageMap[page] === PAGE_PRESENT;
  }

  #receive(bytes: Uint8Array, from: Endpoint): void {
    if (this.#closed) return;
    this.#total.packetsReceived++;
    this.#total.bytesReceived += bytes.length;
    const result = decodePacket(bytes, (id) => this.#fork(id)?.keys);
    const claimed = bytes.length >= 8 + FORK_ID_BYTES
      ? this.#fork(bytes.subarray(8, 8 + FORK_ID_BYTES))
      : undefined;
    if (claimed !== undefined) {
      claimed.stats.packetsReceived++;
      claimed.stats.bytesReceived += bytes.length;
    }
    if (!result.ok) {
      this.#reject(claimed, result.message);
      return;
    }
    const state = claimed!;
    const { packet } = result;
    const verdict = state.guard.check(packet.sender, packet.seq, packet.time);
    if (verdict !== "ok") {
      this.#reject(state, `Cannot accept packet: ${verdict}`);
      return;
    }
    const now = performance.now();
    switch (packet.body.type) {
      case PacketType.REQUEST:
        this.#flowReport(state, packet.body.rate, from, now);
        this.#request(state, packet.flags, packet.body, from, now);
        break;
      case PacketType.RATE:
        this.#flowReport(state, packet.body.rate, from, now);
        state.requesters.set(endpointKey(from), now);
        break;
      case PacketType.END:
        state.ended.add(packet.sender);
        state.requesters.delete(endpointKey(from));
        break;
      default:
        this.#reject(state, `Cannot accept packet: type ${packet.body.type} is not for a server`);
    }
  }

  #reject(state: ForkState | undefined, why: string): void {
    this.#total.rejected++;
    if (state !== undefined) state.stats.rejected++;
    this.#log.debug("packet dropped", { why });
  }

  #flowReport(state: ForkState, received: number, from: Endpoint, now: number): void {
    const sent = state.sentMeter.rate(now, REPORT_WINDOW_MS) +
      (state.unicastMeters.get(endpointKey(from))?.rate(now, REPORT_WINDOW_MS) ?? 0);
    state.flow.report({
      received,
      sent,
      resent: state.resentMeter.rate(now, REPORT_WINDOW_MS),
      backlog: state.hasWork(),
    }, now);
  }

  #request(
    state: ForkState,
    flags: number,
    request: RequestBody,
    from: Endpoint,
    now: number,
  ): void {
    const fromKey = endpointKey(from);
    state.requesters.set(fromKey, now);
    state.lastRequestMs = now;
    const wantsUnicast = (flags & FLAG_UNICAST_REPLY) !== 0;
    const unicast = wantsUnicast || this.#mode === "unicast" || state.fork.clones <= 1 ||
      this.#endgame(state, now);
    let invalid = false;
    const queue = (): UnicastQueue => {
      let q = state.unicast.get(fromKey);
      if (q === undefined) {
        state.unicast.set(fromKey, q = { to: from, pages: new Set(), ahead: new Set() });
      }
      return q;
    };
    for (const run of request.runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        if (!this.#servable(state, page)) {
          invalid = true;
          continue;
        }
        if (state.asked[page] === 0) {
          state.asked[page] = 1;
          state.demand.push(page);
        }
        const readAhead = (pages: number[]) => {
          for (const next of pages) {
            if (unicast) {
              const q = queue();
              if (!q.pages.has(next)) q.ahead.add(next);
            } else if (
              !state.askers.has(next) && now - state.lastSent[next] >= this.#lockstepMs
            ) {
              state.ahead.set(next, "readahead");
              state.askers.set(next, new Set());
            }
          }
        };
        if (state.ahead.delete(page)) {
          // Read ahead but not sent yet, and now somebody waits for it: it goes first.
          state.multicast.add(page);
          state.askers.get(page)!.add(fromKey);
          readAhead(this.#reached(state, page));
          continue;
        }
        const lagging = unicast ? undefined : state.unicast.get(fromKey);
        if (lagging?.ahead.delete(page)) {
          // Read ahead for this requester to catch up, not sent yet: it goes first.
          lagging.pages.add(page);
          this.#catchUp(state, () => lagging, state.catchUps.get(fromKey)?.reached(page) ?? []);
          continue;
        }
        if (!wantsUnicast && this.#lockstep(state, page, fromKey, request.heard, now)) {
          state.counters.lockstepIgnored++;
          readAhead(this.#reached(state, page));
          continue;
        }
        if (unicast) {
          const q = queue();
          q.pages.add(page);
          if (q.ahead.delete(page)) {
            // Read ahead for this requester, not sent yet: it goes first, and its scan goes on.
            if (state.everSent[page] === 0) readAhead(this.#reached(state, page));
            else this.#catchUp(state, queue, state.catchUps.get(fromKey)?.reached(page) ?? []);
            continue;
          }
        } else {
          state.multicast.add(page);
          state.askers.set(page, new Set([fromKey]));
        }
        // A page sent before and asked for again was lost: the clones are not scanning there.
        if (state.everSent[page] === 0) readAhead(this.#predict(state, page));
        else if (this.#lostTo(state, page, request.heard, now)) {
          this.#catchUp(state, queue, this.#catchUpScan(state, fromKey, page));
        }
      }
    }
    if (invalid) {
      this.#reject(state, "Cannot serve pages: request names pages that are not present");
    }
    this.#schedule(0);
  }

  /** Pages to read ahead after `page`, asked for the first time: servable ones not sent yet. */
  #predict(state: ForkState, page: number): number[] {
    if (this.#options.readahead === false) return [];
    return this.#unsent(state, state.scan.observe(page));
  }

  /**
   * A clone wants `page`, which was read ahead and is on its way: the scan's next window, so that
   * the stream stays ahead of the clones.
   */
  #reached(state: ForkState, page: number): number[] {
    return this.#unsent(state, state.scan.reached(page));
  }

  #unsent(state: ForkState, pages: number[]): number[] {
    return pages.filter((p) => state.fork.pageMap[p] === PAGE_PRESENT && state.everSent[p] === 0);
  }

  get #lockstepMs(): number {
    return this.#options.lockstepMs ?? 50;
  }

  /**
   * Whether a request is a near-simultaneous duplicate: the page is queued for the group, or was
   * multicast a moment ago to answer others (it is still on its way to this requester), or the
   * requester lags well behind the datagram that carried it. Not if the requester heard a
   * datagram sent after the page: the page was lost on the way.
   */
  #lockstep(state: ForkState, page: number, from: string, heard: Heard, now: number): boolean {
    const askers = state.askers.get(page);
    if (askers !== undefined) {
      askers.add(from);
      return true;
    }
    if (this.#provedLost(state, page, heard)) return false;
    const age = now - state.lastSent[page];
    // A host short of CPU reads its socket late and in bursts, while its clones fault on pages
    // still in its buffer: sent again, they cost every host a second copy (16 clones on 4 hosts
    // sharing 2 cores: 229 of 1,446 requests came 50 ms or more after their page went out).
    if (age < MAX_LAG_MS && this.#lagging(state, page, heard)) return true;
    if (age >= this.#lockstepMs) return false;
    const answered = state.answered.get(page)!;
    if (answered.has(from)) return false; // it asked, got its answer, and still lacks the page
    answered.add(from);
    return true;
  }

  /**
   * Whether the requester has not even heard the group datagram sent {@link LAG_DATAGRAMS} before
   * the one that carried `page`: its socket holds a backlog, and the page in it. (One that heard
   * those and not the page may have lost it, the last datagram of a burst, which nothing later
   * would prove.)
   */
  #lagging(state: ForkState, page: number, heard: Heard): boolean {
    if (state.sentToGroup[page] !== 1 || heard.sender !== state.sentSender[page]) return false;
    const before = state.sentOrdinal[page] - LAG_DATAGRAMS;
    if (before < 0 || state.groupSent - before > GROUP_SEQS) return false;
    return heard.group < state.groupSeqs[before % GROUP_SEQS];
  }

  /** Whether the requester heard a datagram sent after `page` on the page's route. */
  #provedLost(state: ForkState, page: number, heard: Heard): boolean {
    const heardSince = state.sentToGroup[page] === 1 ? heard.group : heard.unicast;
    return heard.sender === state.sentSender[page] && heardSince > state.sentSeq[page];
  }

  /**
   * Whether a requester asking for `page`, sent before, lost it rather than waits for it: it heard
   * a later datagram on the page's route, or the page went out longer ago than a datagram takes.
   * The second alone tells a host served by unicast (the end game, or no multicast there), which
   * may never have heard the group.
   */
  #lostTo(state: ForkState, page: number, heard: Heard, now: number): boolean {
    return this.#provedLost(state, page, heard) || now - state.lastSent[page] >= this.#lockstepMs;
  }

  /**
   * Pages to read ahead for `from` alone after `page`, which it lost: a requester whose clones
   * started late scans through pages that went out before it listened. It then catches up on its
   * own, by unicast, rather than one round trip a page; scattered losses form no scan.
   */
  #catchUpScan(state: ForkState, from: string, page: number): number[] {
    if (this.#options.readahead === false) return [];
    let predictor = state.catchUps.get(from);
    if (predictor === undefined) {
      predictor = new StridePredictor(state.fork.pageCount, this.#options.readahead || {});
      state.catchUps.set(from, predictor);
    }
    return predictor.observe(page);
  }

  /**
   * Queues `pages` (a catch-up scan's next) for one requester: those sent before only. An empty
   * queue is never made: a queue is work for the pump.
   */
  #catchUp(state: ForkState, queue: () => UnicastQueue, pages: number[]): void {
    for (const page of pages) {
      if (state.everSent[page] === 0 || state.fork.pageMap[page] !== PAGE_PRESENT) continue;
      const q = queue();
      if (!q.pages.has(page)) q.ahead.add(page);
    }
  }

  #endgame(state: ForkState, now: number): boolean {
    if (state.ended.size === 0) return false;
    const window = this.#options.endgameWindowMs ?? 300;
    let active = 0;
    for (const at of state.requesters.values()) if (now - at < window) active++;
    return active <= (this.#options.endgameClients ?? 1);
  }

  /** Pumps after `ms`, or in a microtask for 0 (nested 0 ms timers are clamped to 4 ms). */
  #schedule(ms: number): void {
    if (this.#closed) return;
    if (ms === 0) {
      if (this.#pumpQueued) return;
      this.#pumpQueued = true;
      queueMicrotask(() => {
        this.#pumpQueued = false;
        if (!this.#closed) this.#pump();
      });
      return;
    }
    if (this.#timer !== undefined) return; // an earlier wake-up is already set
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, ms);
  }

  /** Sends what the pacer of each fork allows and sets the next wake-up. */
  #pump(): void {
    let wait = Infinity;
    const now = performance.now();
    for (const state of this.#forks.values()) {
      this.#maybePush(state, now);
      const { burst } = state.flow.options;
      const rate = state.flow.rate;
      while (state.hasWork()) {
        const need = this.#datagramsPerPage(state);
        if (state.pacer.refill(rate, burst, now) < need) {
          wait = Math.min(wait, state.pacer.waitMs(rate, need));
          break;
        }
        state.pacer.spend(this.#sendNext(state, now));
        if (!state.hasWork()) this.#maybePush(state, now);
      }
    }
    if (wait !== Infinity) this.#schedule(wait);
  }

  /**
   * The next pushed pages, once nothing asked for waits (the link would be idle) and clones are
   * there to listen: announced, then queued behind any page that gets asked for meanwhile.
   */
  #maybePush(state: ForkState, now: number): void {
    if (this.#mode === "unicast" || state.hasWork()) return;
    if (state.pushNext >= state.pushOrder.length) return;
    if (now - state.lastRequestMs > ACTIVE_MS) return; // nobody is listening
    const batch: number[] = [];
    const size = this.#options.pushBatch ?? 64;
    while (batch.length < size && state.pushNext < state.pushOrder.length) {
      const page = state.pushOrder[state.pushNext++];
      if (state.everSent[page] === 0) batch.push(page);
    }
    if (batch.length === 0) return;
    const runs = toRuns(batch).slice(0, maxRuns(payloadBytes(this.config), PacketType.PUSH));
    this.#send(state, state.group, { type: PacketType.PUSH, runs }, 0);
    for (const run of runs) {
      for (let p = run.first; p < run.first + run.count; p++) {
        state.ahead.set(p, "push");
        state.askers.set(p, new Set());
      }
    }
  }

  /** Forgets who was answered once the lockstep window of a page has passed. */
  #pruneAnswered(state: ForkState, now: number): void {
    const window = this.#lockstepMs;
    for (const page of state.answered.keys()) {
      if (now - state.lastSent[page] < window) break;
      state.answered.delete(page);
    }
  }

  #datagramsPerPage(state: ForkState): number {
    const room = pageDataRoom(payloadBytes(this.config));
    return state.fork.pageSize <= room ? 1 : Math.ceil(state.fork.pageSize / room);
  }

  /** Sends the next page (or run of pages) of `state`; returns the datagrams used. */
  #sendNext(state: ForkState, now: number): number {
    const room = pageDataRoom(payloadBytes(this.config));
    const perDatagram = Math.max(1, Math.floor(room / state.fork.pageSize));
    let to: Endpoint;
    let pages: number[];
    let flags = 0;
    if (state.multicast.size > 0) {
      const first = state.multicast.values().next().value!;
      pages = [first];
      while (pages.length < perDatagram && state.multicast.has(first + pages.length)) {
        pages.push(first + pages.length);
      }
      for (const p of pages) state.multicast.delete(p);
      to = state.group;
    } else if (state.ahead.size > 0) {
      const [first, kind] = state.ahead.entries().next().value!;
      pages = [first];
      while (pages.length < perDatagram && state.ahead.get(first + pages.length) === kind) {
        pages.push(first + pages.length);
      }
      for (const p of pages) state.ahead.delete(p);
      flags |= FLAG_PUSHED;
      to = state.group;
      if (kind === "push") state.counters.pushedPages += pages.length;
      else state.counters.readaheadPages += pages.length;
    } else {
      const [key, queue] = state.unicast.entries().next().value!;
      const from = queue.pages.size > 0 ? queue.pages : queue.ahead;
      const first = from.values().next().value!;
      pages = [first];
      while (pages.length < perDatagram && from.has(first + pages.length)) {
        pages.push(first + pages.length);
      }
      for (const p of pages) from.delete(p);
      if (from === queue.ahead) {
        flags |= FLAG_PUSHED;
        state.counters.readaheadPages += pages.length;
      }
      // Round robin between requesters: this one goes to the back.
      state.unicast.delete(key);
      if (queue.pages.size > 0 || queue.ahead.size > 0) state.unicast.set(key, queue);
      to = queue.to;
      state.counters.unicastPages += pages.length;
    }
    if (pages.some((p) => state.everSent[p] === 1)) {
      flags |= FLAG_RESENT;
      state.stats.retransmits += pages.length;
      this.#total.retransmits += pages.length;
    }
    const multicast = to === state.group;
    // Pushed pages reach their receivers unasked: a request that crosses one is a duplicate too.
    const inFlight = multicast || (flags & FLAG_PUSHED) !== 0;
    for (const p of pages) {
      state.everSent[p] = 1;
      if (!inFlight) continue;
      state.lastSent[p] = now;
      // Deleted first so that the map stays in send order for pruning.
      state.answered.delete(p);
      state.answered.set(p, state.askers.get(p) ?? new Set());
      state.askers.delete(p);
    }
    if (inFlight) this.#pruneAnswered(state, now);
    const data = state.fork.reader.readPages(pages[0], pages.length);
    const pageSize = state.fork.pageSize;
    if (pageSize <= room) {
      const body: Body = {
        type: PacketType.PAGES,
        first: pages[0],
        count: pages.length,
        part: 0,
        parts: 1,
        data,
      };
      this.#send(state, to, body, flags);
      this.#stamped(state, pages, multicast);
      return this.#sent(state, to, flags, 1, now);
    }
    const parts = Math.ceil(pageSize / room);
    const size = Math.ceil(pageSize / parts);
    for (let part = 0; part < parts; part++) {
      const chunk = data.subarray(part * size, Math.min(pageSize, (part + 1) * size));
      this.#send(state, to, {
        type: PacketType.PAGES,
        first: pages[0],
        count: 1,
        part,
        parts,
        data: chunk,
      }, flags);
    }
    this.#stamped(state, pages, multicast);
    return this.#sent(state, to, flags, parts, now);
  }

  /** Records the stamp and route of the datagram that just carried `pages`. */
  #stamped(state: ForkState, pages: number[], toGroup: boolean): void {
    for (const p of pages) {
      state.sentSender[p] = this.#stamp.sender;
      state.sentSeq[p] = this.#stamp.seq;
      state.sentToGroup[p] = toGroup ? 1 : 0;
      if (toGroup) state.sentOrdinal[p] = state.groupSent - 1;
    }
  }

  /** Counts `datagrams` of one send for flow control; returns them. */
  #sent(state: ForkState, to: Endpoint, flags: number, datagrams: number, now: number): number {
    let meter = to === state.group ? state.sentMeter : state.unicastMeters.get(endpointKey(to));
    if (meter === undefined) state.unicastMeters.set(endpointKey(to), meter = new RateMeter());
    meter.add(datagrams, now);
    if ((flags & FLAG_RESENT) !== 0) state.resentMeter.add(datagrams, now);
    return datagrams;
  }

  #send(state: ForkState, to: Endpoint, body: Body, flags: number): void {
    const bytes = this.#stamp.encode({ flags, forkId: state.fork.forkId, body }, state.keys.key);
    this.#socket.send(bytes, to);
    if (to === state.group) state.groupSeqs[state.groupSent++ % GROUP_SEQS] = this.#stamp.seq;
    for (const stats of [state.stats, this.#total]) {
      stats.packetsSent++;
      stats.bytesSent += bytes.length;
      if (to === state.group) stats.multicastBytes += bytes.length;
    }
  }
}
