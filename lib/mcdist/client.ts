/**
 * The mcdist client: one per fork per clone host, shared by that host's clones. It batches page
 * requests to the server (unicast), listens on the fork's multicast group and hands every page
 * it does not have yet to the onPages listeners, asked for or not: a sibling's fault is our
 * prefetch. Unanswered requests are asked again after a timeout that follows the measured round
 * trip and backs off; duplicates, reordering and loss are absorbed by the per-page state.
 *
 * @module
 */

import { createLogger, type Logger } from "../log.ts";
import {
  emptyStats,
  type ForkAccess,
  type PageClient,
  type TransportStats,
} from "../memory/transport.ts";
import { groupFor, type McdistConfig, payloadBytes, resolveConfig } from "./config.ts";
import { DeadlineQueue } from "./deadlines.ts";
import { RateMeter } from "./flow.ts";
import { ReplayGuard } from "./replay.ts";
import {
  type Endpoint,
  type InboundShim,
  onDatagram,
  openGroupReceiver,
  openSocket,
  PacketStamp,
  parseEndpoint,
  type UdpSocket,
} from "./socket.ts";
import {
  type Body,
  decodePacket,
  EndReason,
  FLAG_UNICAST_REPLY,
  type ForkKeys,
  type Heard,
  hex,
  maxRuns,
  PacketKey,
  PacketType,
  type PagesBody,
  type PushBody,
  toRuns,
} from "./wire.ts";

export interface McdistClientOptions {
  config?: Partial<McdistConfig>;
  /** false when this host cannot receive multicast: the server then answers by unicast. */
  multicast?: boolean;
  /** Bounds of the re-ask timeout, which otherwise follows the measured round trip. */
  minTimeoutMs?: number;
  maxTimeoutMs?: number;
  /** Give up when the server sent nothing valid for this long while pages were wanted. */
  failAfterMs?: number;
  /** How often a busy client reports its receive rate. */
  reportMs?: number;
  /** How long a page the server announced as pushed is not asked for. */
  announceHoldMs?: number;
  log?: Logger;
  inbound?: InboundShim;
}

/** The server stopped answering, or removed the fork. */
export class McdistError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "McdistError";
  }
}

interface Wanted {
  /** When it is due to be asked again (ms): its re-ask timeout, or when an announced push is due. */
  deadline: number;
  lastAsked: number;
  attempts: number;
}

interface PartialPage {
  bytes: Uint8Array;
  got: Uint8Array;
  missing: number;
}

const TICK_MS = 5;
const BACKOFF = 1.5;

/** Opens the client sockets: a unicast one for requests and replies, and the fork's group. */
export async function openMcdistClient(
  access: ForkAccess,
  options: McdistClientOptions = {},
): Promise<McdistClient> {
  const config = resolveConfig(options.config);
  const server = parseEndpoint(access.server);
  const unicast = openSocket(config.interface, 0);
  let group: UdpSocket | undefined;
  if (options.multicast !== false) {
    try {
      group = openGroupReceiver(
        groupFor(config, access.forkId),
        config.port,
        config.interface,
      );
    } catch (error) {
      await unicast.close();
      throw error;
    }
  }
  return new McdistClient({ access, config, server, unicast, group, options });
}

interface ClientParts {
  access: ForkAccess;
  config: McdistConfig;
  server: Endpoint;
  unicast: UdpSocket;
  group: UdpSocket | undefined;
  options: McdistClientOptions;
}

export class McdistClient implements PageClient {
  readonly failed: Promise<Error>;
  #access: ForkAccess;
  #keys: ForkKeys;
  #config: McdistConfig;
  #server: Endpoint;
  #unicast: UdpSocket;
  #group: UdpSocket | undefined;
  #options: McdistClientOptions;
  #log: Logger;
  #stats = emptyStats();
  #guard = new ReplayGuard();
  #stamp = new PacketStamp();
  #lookup = (id: Uint8Array) => sameId(id, this.#access.forkId) ? this.#keys : undefined;
  /** PAGES datagrams received, by either socket: what the server's pacing is compared with. */
  #pagesMeter = new RateMeter();
  #listeners: ((firstPage: number, bytes: Uint8Array) => void)[] = [];
  #delivered: Uint8Array;
  #wanted = new Map<number, Wanted>();
  #toAsk = new Set<number>();
  /** When each wanted page is due to be asked again (a page's latest entry is its deadline). */
  #deadlines = new DeadlineQueue();
  #partial = new Map<number, PartialPage>();
  #announced = new Map<number, number>();
  /** The newest packet from the server: told in every REQUEST, so that it can tell lost pages. */
  readonly #heard: Heard = { sender: 0, group: 0, unicast: 0 };
  #srtt = -1;
  #rttvar = 0;
  #lastHeard: number;
  #lastReport = 0;
  #lastTick = 0;
  #flushQueued = false;
  #tick: ReturnType<typeof setInterval> | undefined;
  #fail!: (error: Error) => void;
  #closed = false;

  constructor(parts: ClientParts) {
    this.#access = parts.access;
    this.#keys = { key: new PacketKey(parts.access.key), pageSize: parts.access.pageSize };
    this.#config = parts.config;
    this.#server = parts.server;
    this.#unicast = parts.unicast;
    this.#group = parts.group;
    this.#options = parts.options;
    this.#log = parts.options.log ?? createLogger("mcdist-client", { quiet: true });
    this.#delivered = new Uint8Array(parts.access.pageCount);
    this.#lastHeard = performance.now();
    this.failed = new Promise((resolve) => this.#fail = resolve);
    onDatagram(this.#unicast, parts.options.inbound, (bytes) => this.#receive(bytes, false));
    if (this.#group !== undefined) {
      onDatagram(this.#group, parts.options.inbound, (bytes) => this.#receive(bytes, true));
    }
  }

  request(pages: number[]): void {
    if (this.#closed) throw new McdistError("Cannot request pages: the client is closed");
    const now = performance.now();
    for (const page of pages) {
      if (!Number.isInteger(page) || page < 0 || page >= this.#access.pageCount) {
        throw new RangeError(`Cannot request page ${page}: the fork has ${this.#access.pageCount}`);
      }
      if (this.#wanted.has(page)) continue;
      // Asked again after delivery: the caller lost it, so it may come again.
      this.#delivered[page] = 0;
      if (this.#wanted.size === 0) this.#lastHeard = Math.max(this.#lastHeard, now);
      this.#wanted.set(page, { deadline: now, lastAsked: -1, attempts: 0 });
      this.#toAsk.add(page);
    }
    this.#startTicking();
    if (!this.#flushQueued && this.#toAsk.size > 0) {
      this.#flushQueued = true;
      // Requests made in the same turn (several clones faulting) travel in one datagram.
      queueMicrotask(() => {
        this.#flushQueued = false;
        this.#flush(performance.now());
      });
    }
  }

  onPages(listener: (firstPage: number, bytes: Uint8Array) => void): void {
    this.#listeners.push(listener);
  }

  stats(): TransportStats {
    return { ...this.#stats };
  }

  /** Pages asked for and not yet arrived. */
  get outstanding(): number {
    return this.#wanted.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Let the server's end game know (the kernel holds the datagram once send returns).
    const end = this.#encode({ type: PacketType.END, reason: EndReason.CLIENT_DONE }, 0);
    this.#unicast.send(end, this.#server);
    this.#closed = true;
    clearInterval(this.#tick);
    await Promise.all([this.#unicast.close(), this.#group?.close()]);
    this.#keys.key.free();
  }

  #startTicking(): void {
    if (this.#tick !== undefined || this.#closed) return;
    this.#lastTick = performance.now();
    this.#tick = setInterval(() => this.#onTick(performance.now()), TICK_MS);
  }

  #onTick(now: number): void {
    // A late tick means this process did not run for a while: the answers may be waiting in the
    // socket. Re-asking now would make the server resend them to every host; read first.
    const late = now - this.#lastTick > 3 * TICK_MS;
    this.#lastTick = now;
    if (!late) {
      this.#deadlines.popDue(now, (page, at) => {
        if (this.#wanted.get(page)?.deadline === at) this.#toAsk.add(page);
      });
    }
    if (this.#toAsk.size > 0) this.#flush(now);
    const reportMs = this.#options.reportMs ?? 100;
    if (now - this.#lastReport >= reportMs) {
      this.#lastReport = now;
      this.#send({
        type: PacketType.RATE,
        rate: this.#receiveRate(now),
        outstanding: this.#wanted.size,
      });
    }
    if (this.#wanted.size === 0) {
      clearInterval(this.#tick);
      this.#tick = undefined;
      this.#deadlines.clear();
    } else if (now - this.#lastHeard > (this.#options.failAfterMs ?? 10_000)) {
      this.#fail(
        new McdistError(
          `Cannot fetch pages: server ${this.#access.server} sent nothing for ${
            Math.round(now - this.#lastHeard)
          } ms (${this.#wanted.size} pages wanted)`,
        ),
      );
    }
  }

  #receiveRate(now: number): number {
    return Math.round(this.#pagesMeter.rate(now, this.#options.reportMs ?? 100));
  }

  #timeoutMs(attempts: number): number {
    const min = this.#options.minTimeoutMs ?? 10;
    const max = this.#options.maxTimeoutMs ?? 250;
    const base = this.#srtt < 0 ? min : Math.max(min, this.#srtt + 4 * this.#rttvar);
    // Gentle back-off: most misses are random loss, not an overloaded server.
    return Math.min(max, base * BACKOFF ** Math.max(0, attempts - 1));
  }

  #dueAt(page: number, wanted: Wanted, at: number): void {
    wanted.deadline = at;
    this.#deadlines.push(page, at);
  }

  /** Sends every page in #toAsk that is not expected from a push announcement. */
  #flush(now: number): void {
    const ask: number[] = [];
    for (const page of this.#toAsk) {
      const wanted = this.#wanted.get(page);
      if (wanted === undefined) continue;
      const pushedBy = this.#announced.get(page);
      if (pushedBy !== undefined && pushedBy > now) {
        this.#dueAt(page, wanted, pushedBy);
        continue;
      }
      if (wanted.attempts > 0) this.#stats.retransmits++;
      wanted.attempts++;
      wanted.lastAsked = now;
      this.#dueAt(page, wanted, now + this.#timeoutMs(wanted.attempts));
      ask.push(page);
    }
    this.#toAsk.clear();
    if (ask.length === 0) return;
    const runs = toRuns(ask);
    const perPacket = maxRuns(payloadBytes(this.#config), PacketType.REQUEST);
    const flags = this.#group === undefined ? FLAG_UNICAST_REPLY : 0;
    for (let i = 0; i < runs.length; i += perPacket) {
      this.#send({
        type: PacketType.REQUEST,
        rate: this.#receiveRate(now),
        outstanding: this.#wanted.size,
        heard: this.#heard,
        runs: runs.slice(i, i + perPacket),
      }, flags);
    }
  }

  #send(body: Body, flags = 0): void {
    if (this.#closed) return;
    const bytes = this.#encode(body, flags);
    this.#unicast.send(bytes, this.#server);
  }

  #encode(body: Body, flags: number): Uint8Array {
    const bytes = this.#stamp.encode(
      { flags, forkId: this.#access.forkId, body },
      this.#keys.key,
    );
    this.#stats.packetsSent++;
    this.#stats.bytesSent += bytes.length;
    return bytes;
  }

  #receive(bytes: Uint8Array, fromGroup: boolean): void {
    if (this.#closed) return;
    const result = decodePacket(bytes, this.#lookup);
    // Other forks share the group port: their packets are not ours to count.
    if (!result.ok && result.kind === "unknown-fork") return;
    this.#stats.packetsReceived++;
    this.#stats.bytesReceived += bytes.length;
    if (fromGroup) this.#stats.multicastBytes += bytes.length;
    if (!result.ok) return this.#reject(result.message);
    const { packet } = result;
    if (this.#guard.check(packet.sender, packet.seq, packet.time) !== "ok") {
      return this.#reject("Cannot accept packet: replayed or stale");
    }
    const heard = this.#heard;
    if (packet.sender !== heard.sender) {
      heard.sender = packet.sender; // the server's stamp wrapped: a new sender, seqs from 1
      heard.group = heard.unicast = 0;
    }
    if (fromGroup) heard.group = Math.max(heard.group, packet.seq);
    else heard.unicast = Math.max(heard.unicast, packet.seq);
    const now = performance.now();
    const body = packet.body;
    switch (body.type) {
      case PacketType.PAGES:
        this.#lastHeard = now;
        this.#pagesMeter.add(1, now);
        this.#pages(body, now);
        return;
      case PacketType.PUSH:
        this.#lastHeard = now;
        this.#push(body, now);
        return;
      case PacketType.END:
        if (body.reason === EndReason.FORK_REMOVED) {
          this.#fail(
            new McdistError(`Cannot fetch pages: fork ${hex(this.#access.forkId)} was removed`),
          );
        }
        return;
      default:
        this.#reject(`Cannot accept packet: type ${body.type} is not for a client`);
    }
  }

  #reject(why: string): void {
    this.#stats.rejected++;
    this.#log.debug("packet dropped", { why });
  }

  #pages(body: PagesBody, now: number): void {
    const { pageSize } = this.#access;
    if (body.first + body.count > this.#access.pageCount) {
      return this.#reject(`Cannot accept pages ${body.first}+${body.count}: beyond the fork`);
    }
    if (body.parts === 1) {
      this.#deliver(body.first, body.count, body.data, now);
      return;
    }
    const page = body.first;
    if (this.#delivered[page] === 1) return;
    let partial = this.#partial.get(page);
    if (partial === undefined) {
      partial = {
        bytes: new Uint8Array(pageSize),
        got: new Uint8Array(body.parts),
        missing: body.parts,
      };
      this.#partial.set(page, partial);
    }
    if (partial.got.length !== body.parts) {
      return this.#reject("Cannot accept part: part count changed");
    }
    if (partial.got[body.part] === 1) return;
    partial.got[body.part] = 1;
    partial.missing--;
    partial.bytes.set(body.data, body.part * Math.ceil(pageSize / body.parts));
    if (partial.missing > 0) return;
    this.#partial.delete(page);
    this.#deliver(page, 1, partial.bytes, now);
  }

  /** Hands the pages of a run not delivered before to the listeners, in runs. */
  #deliver(first: number, count: number, data: Uint8Array, now: number): void {
    const { pageSize } = this.#access;
    let runStart = -1;
    const flush = (end: number) => {
      if (runStart < 0) return;
      const bytes = data.subarray((runStart - first) * pageSize, (end - first) * pageSize);
      for (const listener of this.#listeners) listener(runStart, bytes);
      runStart = -1;
    };
    for (let page = first; page < first + count; page++) {
      if (this.#delivered[page] === 1) {
        flush(page);
        continue;
      }
      this.#delivered[page] = 1;
      this.#announced.delete(page);
      this.#partial.delete(page);
      const wanted = this.#wanted.get(page);
      if (wanted !== undefined) {
        if (wanted.attempts === 1) this.#sampleRtt(now - wanted.lastAsked);
        this.#wanted.delete(page);
      }
      if (runStart < 0) runStart = page;
    }
    flush(first + count);
  }

  #sampleRtt(sample: number): void {
    // RFC 6298 smoothing.
    if (this.#srtt < 0) {
      this.#srtt = sample;
      this.#rttvar = sample / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - sample);
      this.#srtt = 0.875 * this.#srtt + 0.125 * sample;
    }
  }

  #push(body: PushBody, now: number): void {
    const until = now + (this.#options.announceHoldMs ?? 100);
    for (const run of body.runs) {
      const end = Math.min(run.first + run.count, this.#access.pageCount);
      for (let page = run.first; page < end; page++) {
        if (this.#delivered[page] === 0) this.#announced.set(page, until);
      }
    }
  }
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
