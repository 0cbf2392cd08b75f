/**
 * The unicast page protocol's frames (WIRE.md): encode, and decode from a TCP byte stream.
 * Every frame carries a 16-byte MAC over the whole frame: the HELLOs an HMAC-SHA256 keyed by the
 * fork key over the peer's connection nonce; every later frame a ChaCha20-Poly1305 tag (empty
 * plaintext, the frame as associated data) under a per-connection session key derived from both
 * nonces, with the sender's direction and the frame's sequence number as the AEAD nonce. So a frame
 * cannot be forged, replayed on another connection, reflected, or reordered.
 *
 * @module
 */

import {
  CHACHA_NONCE_BYTES,
  ChachaPolyMac,
  constantTimeEqual,
  hmacSha256,
} from "../../../native/libcrypto.ts";

export const WIRE_MAGIC = 0x53465047; // "SFPG"
export const WIRE_VERSION = 2;
export const HEADER_BYTES = 32;
export const MAC_BYTES = 16;
export const NONCE_BYTES = 16;
export const FORK_ID_BYTES = 16;
/** Longest body accepted: 64 pages of 4 KiB plus the run header. */
export const MAX_BODY_BYTES = 8 + 64 * 4096;
/** Most pages one PAGES frame carries. */
export const MAX_RUN_PAGES = 64;
/** Most runs one REQUEST frame carries. */
export const MAX_REQUEST_RUNS = 4096;

/** Frame types; 0 is reserved as invalid. */
export const FRAME_HELLO = 1;
export const FRAME_REQUEST = 2;
export const FRAME_PAGES = 3;
export const FRAME_ERROR = 4;

/** A contiguous run of pages. */
export interface PageRun {
  first: number;
  count: number;
}

export type FrameBody =
  /** Client: its nonce. Server: its nonce, page size and page count of the fork. */
  | { type: typeof FRAME_HELLO; nonce: Uint8Array; pageSize?: number; pageCount?: number }
  | { type: typeof FRAME_REQUEST; runs: PageRun[] }
  | { type: typeof FRAME_PAGES; first: number; count: number; bytes: Uint8Array }
  | { type: typeof FRAME_ERROR; message: string };

export type Frame = FrameBody & { seq: number; forkId: Uint8Array };

/** A frame could not be decoded or authenticated. */
export class WireError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WireError";
  }
}

/** Computes the MAC of frames in one direction of one connection (see {@link helloAuth}). */
export interface FrameAuth {
  /** Write the 16-byte MAC of `signed` (header and body of frame `seq`) into `out`. */
  mac(seq: number, signed: Uint8Array, out: Uint8Array): void;
}

/** HELLO frames: HMAC-SHA256(fork key, nonce ‖ frame)[0..16], `nonce` the receiver's (or zeros). */
export function helloAuth(forkKey: Uint8Array, nonce: Uint8Array): FrameAuth {
  const full = new Uint8Array(32);
  return {
    mac(_seq, signed, out) {
      const data = new Uint8Array(nonce.byteLength + signed.byteLength);
      data.set(nonce);
      data.set(signed, nonce.byteLength);
      hmacSha256(forkKey, data, full);
      out.set(full.subarray(0, MAC_BYTES));
    },
  };
}

/** Which side sent a frame: part of the session MAC's nonce, so a frame cannot be reflected. */
export type Direction = "client" | "server";

/** The MAC of one direction of one session: holds a cipher context until {@link free}. */
export interface SessionAuth extends FrameAuth {
  /** Release the cipher context when the session ends; mac() throws afterwards. */
  free(): void;
}

const SESSION_LABEL = new TextEncoder().encode("SFPG v2 session key");

/**
 * Frames after the HELLOs, sent by `from`: ChaCha20-Poly1305 tag with empty plaintext and the
 * frame as associated data, key = HMAC-SHA256(fork key, label ‖ client nonce ‖ server nonce),
 * AEAD nonce = u32 direction (1 client, 2 server) ‖ u32 0 ‖ u32 sequence number (big-endian).
 */
export function sessionAuth(
  forkKey: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
  from: Direction,
): SessionAuth {
  const key = new Uint8Array(32);
  const info = new Uint8Array(SESSION_LABEL.byteLength + 2 * NONCE_BYTES);
  info.set(SESSION_LABEL);
  info.set(clientNonce, SESSION_LABEL.byteLength);
  info.set(serverNonce, SESSION_LABEL.byteLength + NONCE_BYTES);
  hmacSha256(forkKey, info, key);
  const cipher = new ChachaPolyMac(key);
  key.fill(0); // the context holds its own copy
  const nonce = new Uint8Array(CHACHA_NONCE_BYTES);
  const nonceView = new DataView(nonce.buffer);
  nonceView.setUint32(0, from === "client" ? 1 : 2, false);
  return {
    mac(seq, signed, out) {
      nonceView.setUint32(8, seq, false);
      cipher.tag(nonce, signed, out);
    },
    free() {
      cipher.free();
    },
  };
}

/** Encode one frame, its MAC computed by `auth` (the sender's side of the connection). */
export function encodeFrame(frame: Frame, auth: FrameAuth): Uint8Array {
  const bodyLength = bodyBytes(frame);
  if (bodyLength > MAX_BODY_BYTES) {
    throw new RangeError(`Cannot encode frame: body of ${bodyLength} bytes`);
  }
  const out = new Uint8Array(HEADER_BYTES + bodyLength + MAC_BYTES);
  writeHeader(out, frame.type, frame.seq, bodyLength, frame.forkId);
  writeBody(frame, out.subarray(HEADER_BYTES, HEADER_BYTES + bodyLength));
  sealFrame(out, frame.seq, auth);
  return out;
}

/**
 * Write a frame header at the start of `out`, whose body (`bodyLength` bytes) the caller writes
 * after it; {@link sealFrame} then adds the MAC. Lets a server build frames in place in its send
 * buffer, pages read straight into the body.
 */
export function writeHeader(
  out: Uint8Array,
  type: number,
  seq: number,
  bodyLength: number,
  forkId: Uint8Array,
): void {
  const v = new DataView(out.buffer, out.byteOffset, HEADER_BYTES);
  v.setUint32(0, WIRE_MAGIC, false);
  v.setUint8(4, WIRE_VERSION);
  v.setUint8(5, type);
  v.setUint16(6, 0, false);
  v.setUint32(8, seq, false);
  v.setUint32(12, bodyLength, false);
  out.set(forkId, 16);
}

/** Write the MAC of frame `seq` into its last MAC_BYTES; `frame` is exactly the whole frame. */
export function sealFrame(frame: Uint8Array, seq: number, auth: FrameAuth): void {
  const signed = frame.byteLength - MAC_BYTES;
  auth.mac(seq, frame.subarray(0, signed), frame.subarray(signed));
}

function bodyBytes(frame: FrameBody): number {
  switch (frame.type) {
    case FRAME_HELLO:
      return NONCE_BYTES + (frame.pageSize === undefined ? 0 : 8);
    case FRAME_REQUEST:
      return 4 + 8 * frame.runs.length;
    case FRAME_PAGES:
      return 8 + frame.bytes.byteLength;
    case FRAME_ERROR:
      return new TextEncoder().encode(frame.message).byteLength;
  }
}

function writeBody(frame: FrameBody, body: Uint8Array): void {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  switch (frame.type) {
    case FRAME_HELLO:
      body.set(frame.nonce, 0);
      if (frame.pageSize !== undefined) {
        v.setUint32(NONCE_BYTES, frame.pageSize, false);
        v.setUint32(NONCE_BYTES + 4, frame.pageCount ?? 0, false);
      }
      return;
    case FRAME_REQUEST:
      if (frame.runs.length > MAX_REQUEST_RUNS) {
        throw new RangeError(`Cannot encode request: ${frame.runs.length} runs`);
      }
      v.setUint32(0, frame.runs.length, false);
      frame.runs.forEach((r, i) => {
        v.setUint32(4 + 8 * i, r.first, false);
        v.setUint32(8 + 8 * i, r.count, false);
      });
      return;
    case FRAME_PAGES:
      v.setUint32(0, frame.first, false);
      v.setUint32(4, frame.count, false);
      body.set(frame.bytes, 8);
      return;
    case FRAME_ERROR:
      body.set(new TextEncoder().encode(frame.message));
      return;
  }
}

/** The header of a frame, readable before its key is known (the fork id picks the key). */
export interface FrameHeader {
  type: number;
  seq: number;
  bodyLength: number;
  forkId: Uint8Array;
}

/** Check and read a frame header (the first HEADER_BYTES of `bytes`). */
export function decodeHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.byteLength < HEADER_BYTES) {
    throw new WireError(`Cannot decode frame: ${bytes.byteLength} bytes < header`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const magic = v.getUint32(0, false);
  if (magic !== WIRE_MAGIC) {
    throw new WireError(`Cannot decode frame: magic 0x${magic.toString(16)}`);
  }
  const version = v.getUint8(4);
  if (version !== WIRE_VERSION) {
    throw new WireError(
      `Cannot decode frame: version ${version}, this side speaks ${WIRE_VERSION}`,
    );
  }
  const type = v.getUint8(5);
  if (type < FRAME_HELLO || type > FRAME_ERROR) {
    throw new WireError(`Cannot decode frame: unknown type ${type}`);
  }
  const bodyLength = v.getUint32(12, false);
  if (bodyLength > MAX_BODY_BYTES) {
    throw new WireError(`Cannot decode frame: body of ${bodyLength} bytes`);
  }
  return {
    type,
    seq: v.getUint32(8, false),
    bodyLength,
    forkId: bytes.slice(16, 32),
  };
}

/** Bytes of the whole frame whose header is `h`. */
export function frameBytes(h: FrameHeader): number {
  return HEADER_BYTES + h.bodyLength + MAC_BYTES;
}

const expected = new Uint8Array(MAC_BYTES);

/**
 * Authenticate then decode one whole frame (`frameBytes(header)` long): the MAC (computed by
 * `auth`, the sender's side of the connection) is checked before any body field is trusted.
 * PAGES bytes are a view into `bytes`, not a copy.
 */
export function decodeFrame(bytes: Uint8Array, auth: FrameAuth): Frame {
  const h = decodeHeader(bytes);
  const total = frameBytes(h);
  if (bytes.byteLength !== total) {
    throw new WireError(`Cannot decode frame: ${bytes.byteLength} bytes, header says ${total}`);
  }
  const signed = bytes.subarray(0, total - MAC_BYTES);
  const got = bytes.subarray(total - MAC_BYTES);
  auth.mac(h.seq, signed, expected);
  if (!constantTimeEqual(got, expected, MAC_BYTES)) {
    throw new WireError("Cannot decode frame: bad MAC (wrong fork key, or replayed)");
  }
  const body = bytes.subarray(HEADER_BYTES, HEADER_BYTES + h.bodyLength);
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const base = { seq: h.seq, forkId: h.forkId };
  switch (h.type) {
    case FRAME_HELLO:
      if (body.byteLength === NONCE_BYTES) {
        return { ...base, type: FRAME_HELLO, nonce: body.slice() };
      }
      if (body.byteLength !== NONCE_BYTES + 8) {
        throw new WireError(`Cannot decode hello: ${body.byteLength} bytes`);
      }
      return {
        ...base,
        type: FRAME_HELLO,
        nonce: body.slice(0, NONCE_BYTES),
        pageSize: v.getUint32(NONCE_BYTES, false),
        pageCount: v.getUint32(NONCE_BYTES + 4, false),
      };
    case FRAME_REQUEST: {
      if (body.byteLength < 4) throw new WireError("Cannot decode request: no run count");
      const n = v.getUint32(0, false);
      if (n > MAX_REQUEST_RUNS || body.byteLength !== 4 + 8 * n) {
        throw new WireError(`Cannot decode request: ${n} runs in ${body.byteLength} bytes`);
      }
      const runs: PageRun[] = [];
      for (let i = 0; i < n; i++) {
        runs.push({ first: v.getUint32(4 + 8 * i, false), count: v.getUint32(8 + 8 * i, false) });
      }
      return { ...base, type: FRAME_REQUEST, runs };
    }
    case FRAME_PAGES: {
      if (body.byteLength < 8) throw new WireError("Cannot decode pages: no run header");
      const count = v.getUint32(4, false);
      const bytes = body.subarray(8);
      if (count === 0 || count > MAX_RUN_PAGES || bytes.byteLength % count !== 0) {
        throw new WireError(`Cannot decode pages: ${count} pages in ${bytes.byteLength} bytes`);
      }
      return { ...base, type: FRAME_PAGES, first: v.getUint32(0, false), count, bytes };
    }
    default:
      return { ...base, type: FRAME_ERROR, message: new TextDecoder().decode(body) };
  }
}

/** Sorted, de-duplicated page numbers as contiguous runs. */
export function toRuns(pages: Iterable<number>): PageRun[] {
  // A fill asks for every missing page, already ascending: no set and no sort for those.
  const sorted = Array.isArray(pages) && ascending(pages)
    ? pages
    : [...new Set(pages)].sort((a, b) => a - b);
  const runs: PageRun[] = [];
  for (const page of sorted) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.first + last.count === page) last.count++;
    else runs.push({ first: page, count: 1 });
  }
  return runs;
}

function ascending(pages: readonly number[]): boolean {
  for (let i = 1; i < pages.length; i++) if (pages[i] <= pages[i - 1]) return false;
  return true;
}

/**
 * Accumulates a TCP byte stream and yields whole frames (still unauthenticated: the caller
 * picks the key from the header's fork id and calls {@link decodeFrame}).
 */
export class FrameReader {
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  /** Append bytes read from the stream. */
  push(chunk: Uint8Array): void {
    if (this.#end + chunk.byteLength > this.#buf.byteLength) {
      // Compact (TypedArray.set copies overlapping ranges correctly), growing if still short.
      const live = this.#end - this.#start;
      const need = live + chunk.byteLength;
      const next = need > this.#buf.byteLength ? new Uint8Array(2 * need) : this.#buf;
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#buf = next;
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.byteLength;
  }

  /** The next whole frame's bytes (a view valid until the next push), or undefined. */
  next(): { header: FrameHeader; bytes: Uint8Array } | undefined {
    const avail = this.#end - this.#start;
    if (avail < HEADER_BYTES) return undefined;
    const header = decodeHeader(this.#buf.subarray(this.#start, this.#start + HEADER_BYTES));
    const total = frameBytes(header);
    if (avail < total) return undefined;
    const bytes = this.#buf.subarray(this.#start, this.#start + total);
    this.#start += total;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return { header, bytes };
  }
}
