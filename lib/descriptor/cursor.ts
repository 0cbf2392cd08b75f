import { fail } from "./errors.ts";

// 5 × 7 bits = 35 bits: a u32 count shifted left by 3 bits of page mark still fits.
const MAX_VARINT_BYTES = 5;

const utf8Encoder = new TextEncoder();
// fatal: malformed UTF-8 is an error, not U+FFFD; ignoreBOM: a leading U+FEFF is data.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Appends little-endian fields to a growing buffer. Callers validate values first. */
export class ByteWriter {
  #bytes = new Uint8Array(256);
  #view = new DataView(this.#bytes.buffer);
  #length = 0;

  get length(): number {
    return this.#length;
  }

  u8(value: number): void {
    const at = this.#reserve(1);
    this.#view.setUint8(at, value);
  }

  u32(value: number): void {
    const at = this.#reserve(4);
    this.#view.setUint32(at, value, true);
  }

  u64(value: bigint): void {
    const at = this.#reserve(8);
    this.#view.setBigUint64(at, value, true);
  }

  raw(bytes: Uint8Array): void {
    const at = this.#reserve(bytes.length);
    this.#bytes.set(bytes, at);
  }

  /** u32 byte length, then UTF-8. */
  string(value: string): void {
    const bytes = utf8Encoder.encode(value);
    this.u32(bytes.length);
    this.raw(bytes);
  }

  /** Unsigned LEB128: 7 bits a byte, low bits first, high bit set on all but the last byte. */
  varint(value: number): void {
    while (value >= 0x80) {
      this.u8((value % 0x80) | 0x80);
      value = Math.floor(value / 0x80);
    }
    this.u8(value);
  }

  /** A copy of the bytes written so far. */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }

  // Callers must call this before touching #bytes or #view: it may replace both.
  #reserve(n: number): number {
    const at = this.#length;
    if (at + n > this.#bytes.length) {
      const grown = new Uint8Array(Math.max(this.#bytes.length * 2, at + n));
      grown.set(this.#bytes.subarray(0, at));
      this.#bytes = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.#length = at + n;
    return at;
  }
}

/**
 * Reads little-endian fields, checking the length before every read. `base` is the slice's
 * offset in the whole descriptor, so errors name absolute offsets.
 */
export class ByteReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #base: number;
  #offset = 0;

  constructor(bytes: Uint8Array, base = 0) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#base = base;
  }

  get remaining(): number {
    return this.#bytes.length - this.#offset;
  }

  u8(what: string): number {
    return this.#view.getUint8(this.#take(1, what));
  }

  u32(what: string): number {
    return this.#view.getUint32(this.#take(4, what), true);
  }

  u64(what: string): bigint {
    return this.#view.getBigUint64(this.#take(8, what), true);
  }

  /** A copy, so the result does not keep the whole input alive or change with it. */
  bytes(n: number, what: string): Uint8Array {
    const at = this.#take(n, what);
    return this.#bytes.slice(at, at + n);
  }

  string(what: string): string {
    const n = this.u32(`${what} length`);
    const at = this.#take(n, what);
    try {
      return utf8Decoder.decode(this.#bytes.subarray(at, at + n));
    } catch (cause) {
      return fail("decode", `${what} at offset ${this.#base + at} is not valid UTF-8`, { cause });
    }
  }

  /** Reads a u32 item count and rejects counts the remaining bytes cannot hold. */
  count(what: string, minItemBytes: number): number {
    const n = this.u32(`${what} count`);
    if (n * minItemBytes > this.remaining) {
      fail(
        "decode",
        `${what} count ${n} needs at least ${n * minItemBytes} bytes, ${this.remaining} left`,
      );
    }
    return n;
  }

  /** Unsigned LEB128, at most 5 bytes, minimally encoded so every value has one encoding. */
  varint(what: string): number {
    const start = this.#base + this.#offset;
    let value = 0;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const byte = this.u8(what);
      value += (byte & 0x7f) * 2 ** (7 * i);
      if (byte < 0x80) {
        if (byte === 0 && i > 0) {
          fail("decode", `${what} at offset ${start} is not minimally encoded`);
        }
        return value;
      }
    }
    return fail("decode", `${what} at offset ${start} is longer than ${MAX_VARINT_BYTES} bytes`);
  }

  /** A reader over the next n bytes, which this reader skips. */
  sub(n: number, what: string): ByteReader {
    const at = this.#take(n, what);
    return new ByteReader(this.#bytes.subarray(at, at + n), this.#base + at);
  }

  /** Rejects unread bytes: every byte of a descriptor has a meaning. */
  end(what: string): void {
    if (this.remaining !== 0) {
      fail(
        "decode",
        `${this.remaining} unread bytes after ${what} at offset ${this.#base + this.#offset}`,
      );
    }
  }

  #take(n: number, what: string): number {
    if (n > this.remaining) {
      fail(
        "decode",
        `${what} needs ${n} bytes at offset ${this.#base + this.#offset}, ${this.remaining} left`,
      );
    }
    const at = this.#offset;
    this.#offset += n;
    return at;
  }
}
