/**
 * The mcdist wire codec, version 3 (layout and rules in PROTOCOL.md). Encoding throws on misuse;
 * decoding never throws: every datagram off the network becomes either a packet whose tag was
 * verified with the fork's key or a {@link DecodeFailure} that says why it was dropped.
 *
 * @module
 */

import { PacketKey } from "./packet_key.ts";

export { PacketKey };

export const MAGIC = 0x53464d43; // "SFMC"
export const VERSION = 3;
export const HEADER_BYTES = 40;
export const TAG_BYTES = 16;
/** Header + tag: what every datagram carries besides its body. */
export const OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES;
export const FORK_ID_BYTES = 16;
/** IPv4 (20) + UDP (8) header bytes: a datagram's payload is the MTU minus these. */
export const IP_UDP_BYTES = 28;

export const PacketType = {
  REQUEST: 1,
  PAGES: 2,
  PUSH: 3,
  RATE: 4,
  END: 5,
  PROBE: 6,
} as const;
export type PacketTypeCode = typeof PacketType[keyof typeof PacketType];

/** REQUEST flag: the client gets no multicast here; answer by unicast. */
export const FLAG_UNICAST_REPLY = 1;
/** PAGES flag: nobody asked; the server pushed these while clients were idle. */
export const FLAG_PUSHED = 1;
/** PAGES flag: these pages were sent before. */
export const FLAG_RESENT = 2;

export const EndReason = { CLIENT_DONE: 1, FORK_REMOVED: 2 } as const;

/** What the sender stamps on every packet; receivers use it against replay. */
export interface PacketHeader {
  flags: number;
  forkId: Uint8Array;
  /** Random per sending endpoint. */
  sender: number;
  /** Per sender, starting at 1, never reused (a sender that wraps picks a new `sender`). */
  seq: number;
  /** Unix time in seconds when sent. */
  time: number;
}

/** A run of contiguous pages. */
export interface PageRun {
  first: number;
  count: number;
}

/**
 * The newest packets a receiver got from its server (0s before any): the server's sender id, and
 * the seq of the newest one on each of the receiver's sockets. Each socket delivers in order, but
 * not in order with the other: a receiver may read a unicast datagram before multicast ones sent
 * earlier and still in its group socket's buffer.
 */
export interface Heard {
  sender: number;
  group: number;
  unicast: number;
}

export interface RequestBody {
  type: typeof PacketType.REQUEST;
  /** Multicast datagrams a second this receiver got lately (flow control). */
  rate: number;
  /** Pages it waits for. */
  outstanding: number;
  /**
   * The newest server packets it got: a page the server sent before the newest one heard on the
   * same route, and asked for now, was lost rather than on its way (datagrams of one sender
   * arrive in order on a LAN).
   */
  heard: Heard;
  runs: PageRun[];
}

export interface PagesBody {
  type: typeof PacketType.PAGES;
  first: number;
  count: number;
  /** Which part of page `first` (when `parts` > 1, `count` is 1). */
  part: number;
  parts: number;
  data: Uint8Array;
}

export interface PushBody {
  type: typeof PacketType.PUSH;
  runs: PageRun[];
}

export interface RateBody {
  type: typeof PacketType.RATE;
  rate: number;
  outstanding: number;
}

export interface EndBody {
  type: typeof PacketType.END;
  reason: number;
}

export interface ProbeBody {
  type: typeof PacketType.PROBE;
  nonce: Uint8Array;
}

export type Body = RequestBody | PagesBody | PushBody | RateBody | EndBody | ProbeBody;
export type Packet = PacketHeader & { body: Body };

/** What a receiver knows about a fork: enough to check a tag and the size of a page. */
export interface ForkKeys {
  key: PacketKey;
  pageSize: number;
}

export type DecodeErrorKind = "malformed" | "version" | "unknown-fork" | "forged";

export interface DecodeFailure {
  ok: false;
  kind: DecodeErrorKind;
  message: string;
}

export type DecodeResult = { ok: true; packet: Packet } | DecodeFailure;

const RUN_BYTES = 6;
/** rate, outstanding, heard sender, group seq, unicast seq (u32 each), run count (u16). */
const REQUEST_FIXED_BYTES = 22;
const NONCE_BYTES = 8;
const MAX_U16 = 0xffff;
const MAX_U32 = 0xffffffff;

/** The bytes one part of a page carries when the page is split into `parts` datagrams. */
export function partLength(pageSize: number, part: number, parts: number): number {
  const size = Math.ceil(pageSize / parts);
  return Math.min(size, pageSize - part * size);
}

/** Encodes and signs `packet` with `key`. Throws RangeError/TypeError on a field out of range. */
export function encodePacket(packet: Packet, key: PacketKey): Uint8Array {
  checkHeader(packet);
  const bodyLength = bodyBytes(packet.body);
  if (bodyLength > MAX_U16 - OVERHEAD_BYTES) {
    throw new RangeError(`Cannot encode packet: body of ${bodyLength} bytes is too long`);
  }
  const out = new Uint8Array(OVERHEAD_BYTES + bodyLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC);
  view.setUint8(4, VERSION);
  view.setUint8(5, packet.body.type);
  view.setUint16(6, packet.flags);
  out.set(packet.forkId, 8);
  view.setUint32(24, packet.sender);
  view.setUint32(28, packet.seq);
  view.setUint32(32, packet.time);
  view.setUint16(36, bodyLength);
  view.setUint16(38, 0);
  writeBody(view, out, HEADER_BYTES, packet.body);
  key.sign(out.subarray(0, HEADER_BYTES + bodyLength), out.subarray(HEADER_BYTES + bodyLength));
  return out;
}

/**
 * Decodes one datagram. `lookup` gives the keys of the forks this receiver serves or reads;
 * the tag is verified before any body field is read. The packet's byte fields (fork id, page
 * data) are views of `bytes`: copy what is kept beyond the buffer's life.
 */
export function decodePacket(
  bytes: Uint8Array,
  lookup: (forkId: Uint8Array) => ForkKeys | undefined,
): DecodeResult {
  if (bytes.length < OVERHEAD_BYTES) {
    return failure("malformed", `${bytes.length} bytes is shorter than a header and tag`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== MAGIC) return failure("malformed", "bad magic");
  const version = view.getUint8(4);
  if (version !== VERSION) return failure("version", `version ${version}, want ${VERSION}`);
  const type = view.getUint8(5);
  if (type < PacketType.REQUEST || type > PacketType.PROBE) {
    return failure("malformed", `unknown packet type ${type}`);
  }
  const bodyLength = view.getUint16(36);
  if (bytes.length !== OVERHEAD_BYTES + bodyLength) {
    return failure("malformed", `length ${bytes.length} != ${OVERHEAD_BYTES + bodyLength}`);
  }
  if (view.getUint16(38) !== 0) return failure("malformed", "reserved field is not zero");
  const forkId = bytes.subarray(8, 8 + FORK_ID_BYTES);
  const keys = lookup(forkId);
  if (keys === undefined) return failure("unknown-fork", `unknown fork ${hex(forkId)}`);
  const signed = bytes.subarray(0, HEADER_BYTES + bodyLength);
  const tag = bytes.subarray(HEADER_BYTES + bodyLength);
  if (!keys.key.verify(signed, tag)) {
    return failure("forged", "tag does not match the fork key");
  }
  const body = readBody(type as PacketTypeCode, view, HEADER_BYTES, bodyLength, keys.pageSize);
  if (typeof body === "string") return failure("malformed", body);
  return {
    ok: true,
    packet: {
      flags: view.getUint16(6),
      forkId,
      sender: view.getUint32(24),
      seq: view.getUint32(28),
      time: view.getUint32(32),
      body,
    },
  };
}

/** Most runs a REQUEST or PUSH can carry within `payloadBytes`. */
export function maxRuns(
  payloadBytes: number,
  type: typeof PacketType.REQUEST | typeof PacketType.PUSH,
): number {
  const fixed = type === PacketType.REQUEST ? REQUEST_FIXED_BYTES : 2;
  return Math.max(0, Math.floor((payloadBytes - OVERHEAD_BYTES - fixed) / RUN_BYTES));
}

/** Room for page data in one PAGES datagram of `payloadBytes`. */
export function pageDataRoom(payloadBytes: number): number {
  return payloadBytes - OVERHEAD_BYTES - 8;
}

/** Sorted, merged runs of `pages`. */
export function toRuns(pages: Iterable<number>): PageRun[] {
  const sorted = [...new Set(pages)].sort((a, b) => a - b);
  const runs: PageRun[] = [];
  for (const page of sorted) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.first + last.count === page && last.count < 0xffff) last.count++;
    else runs.push({ first: page, count: 1 });
  }
  return runs;
}

function failure(kind: DecodeErrorKind, reason: string): DecodeFailure {
  return { ok: false, kind, message: `Cannot decode packet: ${reason}` };
}

function checkHeader(packet: Packet): void {
  if (packet.forkId.length !== FORK_ID_BYTES) {
    throw new RangeError(`Cannot encode packet: fork id is ${packet.forkId.length} bytes`);
  }
  checkUint("flags", packet.flags, MAX_U16);
  checkUint("sender", packet.sender, MAX_U32);
  checkUint("seq", packet.seq, MAX_U32);
  checkUint("time", packet.time, MAX_U32);
}

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`Cannot encode packet: ${name} ${value} is not in 0..${max}`);
  }
}

function checkRuns(runs: PageRun[]): void {
  checkUint("run count", runs.length, MAX_U16);
  for (const run of runs) {
    checkUint("run first page", run.first, MAX_U32);
    checkUint("run length", run.count, MAX_U16);
    if (run.count === 0) throw new RangeError("Cannot encode packet: empty page run");
  }
}

function bodyBytes(body: Body): number {
  switch (body.type) {
    case PacketType.REQUEST:
      checkUint("rate", body.rate, MAX_U32);
      checkUint("outstanding", body.outstanding, MAX_U32);
      checkUint("heard sender", body.heard.sender, MAX_U32);
      checkUint("heard group seq", body.heard.group, MAX_U32);
      checkUint("heard unicast seq", body.heard.unicast, MAX_U32);
      checkRuns(body.runs);
      return REQUEST_FIXED_BYTES + RUN_BYTES * body.runs.length;
    case PacketType.PAGES:
      checkUint("first page", body.first, MAX_U32);
      checkUint("page count", body.count, MAX_U16);
      checkUint("part", body.part, 0xff);
      checkUint("parts", body.parts, 0xff);
      if (body.count === 0 || body.parts === 0 || body.part >= body.parts) {
        throw new RangeError("Cannot encode packet: page count 0 or part out of range");
      }
      if (body.parts > 1 && body.count !== 1) {
        throw new RangeError("Cannot encode packet: a page split in parts travels alone");
      }
      return 8 + body.data.length;
    case PacketType.PUSH:
      checkRuns(body.runs);
      return 2 + RUN_BYTES * body.runs.length;
    case PacketType.RATE:
      checkUint("rate", body.rate, MAX_U32);
      checkUint("outstanding", body.outstanding, MAX_U32);
      return 8;
    case PacketType.END:
      checkUint("reason", body.reason, 0xff);
      return 1;
    case PacketType.PROBE:
      if (body.nonce.length !== NONCE_BYTES) {
        throw new RangeError(`Cannot encode packet: probe nonce must be ${NONCE_BYTES} bytes`);
      }
      return NONCE_BYTES;
  }
}

function writeBody(view: DataView, out: Uint8Array, at: number, body: Body): void {
  switch (body.type) {
    case PacketType.REQUEST:
      view.setUint32(at, body.rate);
      view.setUint32(at + 4, body.outstanding);
      view.setUint32(at + 8, body.heard.sender);
      view.setUint32(at + 12, body.heard.group);
      view.setUint32(at + 16, body.heard.unicast);
      writeRuns(view, at + 20, body.runs);
      return;
    case PacketType.PAGES:
      view.setUint32(at, body.first);
      view.setUint16(at + 4, body.count);
      view.setUint8(at + 6, body.part);
      view.setUint8(at + 7, body.parts);
      out.set(body.data, at + 8);
      return;
    case PacketType.PUSH:
      writeRuns(view, at, body.runs);
      return;
    case PacketType.RATE:
      view.setUint32(at, body.rate);
      view.setUint32(at + 4, body.outstanding);
      return;
    case PacketType.END:
      view.setUint8(at, body.reason);
      return;
    case PacketType.PROBE:
      out.set(body.nonce, at);
      return;
  }
}

function writeRuns(view: DataView, at: number, runs: PageRun[]): void {
  view.setUint16(at, runs.length);
  runs.forEach((run, i) => {
    view.setUint32(at + 2 + i * RUN_BYTES, run.first);
    view.setUint16(at + 6 + i * RUN_BYTES, run.count);
  });
}

/** The body, or why it is malformed. Every read is inside `[at, at + length)`. */
function readBody(
  type: PacketTypeCode,
  view: DataView,
  at: number,
  length: number,
  pageSize: number,
): Body | string {
  switch (type) {
    case PacketType.REQUEST: {
      if (length < REQUEST_FIXED_BYTES) return "request body too short";
      const runs = readRuns(view, at + 20, length - 20);
      if (typeof runs === "string") return runs;
      return {
        type,
        rate: view.getUint32(at),
        outstanding: view.getUint32(at + 4),
        heard: {
          sender: view.getUint32(at + 8),
          group: view.getUint32(at + 12),
          unicast: view.getUint32(at + 16),
        },
        runs,
      };
    }
    case PacketType.PAGES: {
      if (length < 8) return "pages body too short";
      const first = view.getUint32(at);
      const count = view.getUint16(at + 4);
      const part = view.getUint8(at + 6);
      const parts = view.getUint8(at + 7);
      if (count === 0 || parts === 0 || part >= parts) return "page count 0 or part out of range";
      if (parts > 1 && count !== 1) return "a page split in parts must travel alone";
      const want = parts === 1 ? count * pageSize : partLength(pageSize, part, parts);
      if (want <= 0 || length - 8 !== want) return `page data of ${length - 8} bytes, want ${want}`;
      // A view, as the fork id: a host decodes every page datagram, and keeps what it needs.
      const data = new Uint8Array(view.buffer, view.byteOffset + at + 8, want);
      return { type, first, count, part, parts, data };
    }
    case PacketType.PUSH: {
      const runs = readRuns(view, at, length);
      return typeof runs === "string" ? runs : { type, runs };
    }
    case PacketType.RATE:
      if (length !== 8) return "rate body must be 8 bytes";
      return { type, rate: view.getUint32(at), outstanding: view.getUint32(at + 4) };
    case PacketType.END:
      if (length !== 1) return "end body must be 1 byte";
      return { type, reason: view.getUint8(at) };
    case PacketType.PROBE: {
      if (length !== NONCE_BYTES) return `probe body must be ${NONCE_BYTES} bytes`;
      const start = view.byteOffset + at;
      return { type, nonce: new Uint8Array(view.buffer.slice(start, start + NONCE_BYTES)) };
    }
  }
}

function readRuns(view: DataView, at: number, length: number): PageRun[] | string {
  if (length < 2) return "run list too short";
  const n = view.getUint16(at);
  if (length !== 2 + n * RUN_BYTES) return `run list of ${n} runs in ${length} bytes`;
  const runs: PageRun[] = [];
  for (let i = 0; i < n; i++) {
    const count = view.getUint16(at + 6 + i * RUN_BYTES);
    if (count === 0) return "empty page run";
    runs.push({ first: view.getUint32(at + 2 + i * RUN_BYTES), count });
  }
  return runs;
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
