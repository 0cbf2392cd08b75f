/**
 * Direct resolution of PRESENT pages inside the fault worker (fault_worker.ts), so a fault never
 * waits for the main thread's event loop:
 *
 * - {@link SnapshotResolver}: the clone's parent snapshot lives in this process (a local clone).
 *   The worker copies the page from the parent's live memory, re-checks the snapshot's `saved`
 *   flags (the copy-on-write race of snapshot.ts: a page saved meanwhile is taken from the store
 *   instead) and installs it with UFFDIO_COPY: one read, two copies and an ioctl, a few µs.
 * - {@link UnicastResolver}: the worker speaks the unicast page protocol (unicast/WIRE.md) itself
 *   over a non-blocking TCP socket through FFI: several requests outstanding at once, pages
 *   installed straight from the receive buffer as frames arrive, a whole PAGES run in one
 *   UFFDIO_COPY. Any trouble (connection lost, bad frame, silence) ends direct resolution: the
 *   owner is told ("direct-failed"), every page still owed is handed to it as a fault, and the
 *   owner's page client (with its reconnects, retries and clean failure) takes over.
 *
 * Both run on the worker thread only; every buffer handed to the kernel is owned by the resolver
 * for the worker's lifetime.
 *
 * @module
 */

import {
  close,
  Errno,
  monotonicMicros,
  poll,
  POLLERR,
  POLLFD_SIZE,
  POLLHUP,
  POLLIN,
  POLLOUT,
  recv,
  send,
  tcpConnect,
} from "../../native/libc.ts";
import { uffdCopy, uffdWake } from "../../native/userfaultfd.ts";
import {
  type DirectSnapshot,
  type DirectUnicast,
  LATENCY_RING,
  STAT_FETCHED,
  STATE_MISSING,
  STATE_PRESENT,
  STATE_REQUESTED,
  TIME_BYTES_RX,
  TIME_BYTES_TX,
  TIME_COUNT,
  TIME_PACKETS_RX,
  TIME_PACKETS_TX,
  TIME_REJECTED,
  TIME_RING,
  TIME_STALLED_US,
} from "./fault_protocol.ts";
import { PAGE_PRESENT } from "./page_mark.ts";
import { SharedPageReader } from "./shared_pages.ts";
import {
  decodeFrame,
  decodeHeader,
  encodeFrame,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_REQUEST,
  frameBytes,
  HEADER_BYTES,
  helloAuth,
  MAC_BYTES,
  MAX_BODY_BYTES,
  MAX_REQUEST_RUNS,
  NONCE_BYTES,
  type SessionAuth,
  sessionAuth,
  toRuns,
} from "./unicast/wire.ts";

/** What both resolvers share with the worker: the registration and the memtap's arrays. */
export interface DirectContext {
  uffd: number;
  base: number;
  pageSize: number;
  pageCount: number;
  marks: Uint8Array;
  state: Uint8Array;
  stats: Int32Array;
  timing: Float64Array;
}

/** Most pages installed by one UFFDIO_COPY from the snapshot (256 KiB). */
const SNAPSHOT_RUN = 64;

/**
 * Install `bytes` (whole pages) at page `first` with UFFDIO_COPY, which wakes the threads
 * waiting on them, then mark them PRESENT. Pages someone installed meanwhile (EEXIST) are woken
 * and skipped. Returns the pages this call installed.
 */
export function installRun(ctx: DirectContext, first: number, bytes: Uint8Array): number {
  const ps = ctx.pageSize;
  const count = bytes.byteLength / ps;
  let done = 0;
  let installed = 0;
  while (done < bytes.byteLength) {
    // bytes: read by the kernel during this synchronous ioctl; the caller's view holds it.
    const r = uffdCopy(ctx.uffd, ctx.base + first * ps + done, bytes.subarray(done));
    if (r.errno === 0) {
      installed += (bytes.byteLength - done) / ps;
      break;
    }
    const whole = r.bytes - (r.bytes % ps);
    installed += whole / ps;
    done += whole;
    if (r.errno === Errno.EEXIST && r.bytes === 0) {
      uffdWake(ctx.uffd, ctx.base + first * ps + done, ps);
      done += ps;
    }
  }
  for (let p = first; p < first + count; p++) Atomics.store(ctx.state, p, STATE_PRESENT);
  Atomics.add(ctx.stats, STAT_FETCHED, installed);
  return installed;
}

/** Record one fault's service time (µs) in the shared ring. */
export function recordLatency(timing: Float64Array, micros: number): void {
  const n = timing[TIME_COUNT];
  timing[TIME_RING + (n % LATENCY_RING)] = micros;
  timing[TIME_STALLED_US] += micros;
  timing[TIME_COUNT] = n + 1;
}

/** Claim every PRESENT page still missing (as a fault would); returns them in order. */
export function claimMissing(ctx: DirectContext): number[] {
  const pages: number[] = [];
  for (let p = 0; p < ctx.pageCount; p++) {
    if (ctx.marks[p] !== PAGE_PRESENT) continue;
    if (Atomics.compareExchange(ctx.state, p, STATE_MISSING, STATE_REQUESTED) === STATE_MISSING) {
      pages.push(p);
    }
  }
  return pages;
}

/** PRESENT pages copied from a snapshot of this process. */
export class SnapshotResolver {
  #ctx: DirectContext;
  #pages: SharedPageReader;
  // Staging for one run: the kernel copies from it during UFFDIO_COPY; kept for the worker's life.
  #scratch: Uint8Array;

  constructor(ctx: DirectContext, d: DirectSnapshot) {
    this.#ctx = ctx;
    this.#pages = new SharedPageReader(d, ctx.pageSize, ctx.pageCount);
    this.#scratch = new Uint8Array(SNAPSHOT_RUN * ctx.pageSize);
  }

  /** Install `pages` (claimed) now; `at` = when their faults were read (negative: untimed). */
  request(pages: number[], at: number): void {
    pages.sort((a, b) => a - b);
    let i = 0;
    while (i < pages.length) {
      let end = i + 1;
      while (
        end < pages.length && pages[end] === pages[end - 1] + 1 && end - i < SNAPSHOT_RUN
      ) end++;
      this.#copy(pages[i], end - i);
      i = end;
    }
    if (at >= 0) {
      const took = monotonicMicros() - at;
      for (let k = 0; k < pages.length; k++) recordLatency(this.#ctx.timing, took);
    }
  }

  /** Install every PRESENT page still missing. */
  fill(): void {
    this.request(claimMissing(this.#ctx), -1);
  }

  #copy(first: number, count: number): void {
    const out = this.#scratch.subarray(0, count * this.#ctx.pageSize);
    this.#pages.read(first, count, out);
    installRun(this.#ctx, first, out);
  }
}

/** Direct resolution cannot go on; the owner takes over. */
export class DirectError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DirectError";
  }
}

const RECV_BYTES = 4 << 20;
/** {@link UnicastResolver}'s mark of a page it does not owe. */
const NOT_OWED = -1;
const SEND_ALLOWED: readonly number[] = [Errno.EAGAIN, Errno.EPIPE, Errno.ECONNRESET];
const RECV_ALLOWED: readonly number[] = [Errno.EAGAIN, Errno.ECONNRESET];

/** PRESENT pages fetched over the worker's own unicast connection. */
export class UnicastResolver {
  #ctx: DirectContext;
  #d: DirectUnicast;
  #fd: number;
  #tx = 1;
  #rx = 0;
  /** Set by the HELLO exchange before open() returns; freed by close(). */
  #txAuth!: SessionAuth;
  #rxAuth!: SessionAuth;
  /**
   * Per page: NOT_OWED, or the monotonicMicros() of its fault, or NaN if fill() asked for it. A
   * typed array rather than a map: a fill owes every page at once, and a map of them all would
   * grow, rehash and become garbage on this thread while it installs pages.
   */
  #askedAt: Float64Array;
  #owed = 0;
  // Receive buffer: frames are parsed and installed in place (UFFDIO_COPY reads from it).
  #buf = new Uint8Array(RECV_BYTES);
  #start = 0;
  #end = 0;
  #lastHeard = 0;
  #filling = false;
  // One struct pollfd for send waits: 8 bytes, read and written during poll only.
  #pfd = new Uint8Array(POLLFD_SIZE);
  #pv = new DataView(this.#pfd.buffer);

  private constructor(ctx: DirectContext, d: DirectUnicast, fd: number) {
    this.#ctx = ctx;
    this.#d = d;
    this.#fd = fd;
    this.#pv.setInt32(0, fd, true);
    this.#askedAt = new Float64Array(ctx.pageCount).fill(NOT_OWED);
  }

  /** Connect and exchange HELLOs (blocking, bounded by the idle timeout). */
  static open(ctx: DirectContext, d: DirectUnicast): UnicastResolver {
    const fd = tcpConnect(d.ipv4, d.port, d.idleTimeoutMs);
    const r = new UnicastResolver(ctx, d, fd);
    try {
      r.#hello();
    } catch (e) {
      close(fd);
      throw e;
    }
    return r;
  }

  /** The socket, for the worker's poll(). */
  get fd(): number {
    return this.#fd;
  }

  /** Pages asked for and not yet installed. */
  get outstanding(): number {
    return this.#owed;
  }

  /** Pages still owed (for the owner after a failure). */
  owed(): number[] {
    const pages: number[] = [];
    this.#askedAt.forEach((at, page) => at !== NOT_OWED && pages.push(page));
    return pages;
  }

  /** A fault read at `at` on `page` that someone already asked for: time it when it arrives. */
  noteFault(page: number, at: number): void {
    if (Number.isNaN(this.#askedAt[page])) this.#askedAt[page] = at;
  }

  /** Ask for claimed pages; `at` = when their faults were read (NaN: not a fault). */
  request(pages: number[], at: number): void {
    if (pages.length === 0) return;
    if (this.#owed === 0) this.#lastHeard = performance.now();
    for (const p of pages) {
      if (this.#askedAt[p] === NOT_OWED) this.#owed++;
      this.#askedAt[p] = at;
    }
    const runs = toRuns(pages);
    for (let i = 0; i < runs.length; i += MAX_REQUEST_RUNS) {
      const frame = encodeFrame({
        type: FRAME_REQUEST,
        seq: this.#tx++,
        forkId: this.#d.forkId,
        runs: runs.slice(i, i + MAX_REQUEST_RUNS),
      }, this.#txAuth);
      this.#sendAll(frame);
    }
  }

  /** Ask for every PRESENT page still missing; {@link filled} tells when all are in. */
  fill(): void {
    this.#filling = true;
    this.request(claimMissing(this.#ctx), NaN);
  }

  /** True once, when a fill() has completed. */
  filled(): boolean {
    if (!this.#filling || this.#owed > 0) return false;
    for (let p = 0; p < this.#ctx.pageCount; p++) {
      if (
        this.#ctx.marks[p] === PAGE_PRESENT && Atomics.load(this.#ctx.state, p) !== STATE_PRESENT
      ) {
        return false; // claimed by the owner's path; not ours to wait for here
      }
    }
    this.#filling = false;
    return true;
  }

  /** Read whatever has arrived and install the pages in it. Throws DirectError on trouble. */
  drain(): void {
    for (;;) {
      if (this.#buf.byteLength - this.#end < HEADER_BYTES + MAX_BODY_BYTES + MAC_BYTES) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const n = recv(
        "recv from memory server",
        this.#fd,
        this.#buf.subarray(this.#end),
        0x40, // MSG_DONTWAIT
        RECV_ALLOWED,
      );
      if (n === -Errno.EAGAIN) return;
      if (n <= 0) throw new DirectError("the memory server closed the connection");
      this.#end += n;
      this.#lastHeard = performance.now();
      this.#ctx.timing[TIME_BYTES_RX] += n;
      this.#frames();
    }
  }

  /** Throws DirectError when pages are outstanding and nothing was heard for the idle timeout. */
  checkIdle(): void {
    if (this.#owed === 0) return;
    if (performance.now() - this.#lastHeard > this.#d.idleTimeoutMs) {
      throw new DirectError(`no page from the memory server for ${this.#d.idleTimeoutMs} ms`);
    }
  }

  /** Close the connection and free the session's MACs; safe to call twice. */
  close(): void {
    if (this.#fd < 0) return;
    close(this.#fd);
    this.#fd = -1;
    this.#txAuth.free();
    this.#rxAuth.free();
  }

  #frames(): void {
    for (;;) {
      const avail = this.#end - this.#start;
      if (avail < HEADER_BYTES) return;
      const at = this.#start;
      let total: number;
      try {
        total = frameBytes(decodeHeader(this.#buf.subarray(at, at + HEADER_BYTES)));
      } catch (cause) {
        this.#ctx.timing[TIME_REJECTED]++;
        throw new DirectError(`bad frame: ${(cause as Error).message}`, { cause });
      }
      if (avail < total) return;
      this.#start += total;
      this.#ctx.timing[TIME_PACKETS_RX]++;
      let frame;
      try {
        frame = decodeFrame(this.#buf.subarray(at, at + total), this.#rxAuth);
      } catch (cause) {
        this.#ctx.timing[TIME_REJECTED]++;
        throw new DirectError(`bad frame: ${(cause as Error).message}`, { cause });
      }
      if (frame.seq !== ++this.#rx) {
        this.#ctx.timing[TIME_REJECTED]++;
        throw new DirectError(`frame ${frame.seq} out of order`);
      }
      if (frame.type === FRAME_ERROR) {
        throw new DirectError(`the server said: ${frame.message}`);
      }
      if (frame.type === FRAME_PAGES) this.#install(frame.first, frame.count, frame.bytes);
    }
  }

  #install(first: number, count: number, bytes: Uint8Array): void {
    const ctx = this.#ctx;
    if (first + count > ctx.pageCount || bytes.byteLength !== count * ctx.pageSize) {
      this.#ctx.timing[TIME_REJECTED]++;
      throw new DirectError(`pages ${first}+${count} do not fit the fork`);
    }
    // Install the sub-runs not yet present (the owner may have installed some meanwhile).
    let i = 0;
    while (i < count) {
      if (Atomics.load(ctx.state, first + i) === STATE_PRESENT) {
        i++;
        continue;
      }
      let end = i + 1;
      while (end < count && Atomics.load(ctx.state, first + end) !== STATE_PRESENT) end++;
      installRun(ctx, first + i, bytes.subarray(i * ctx.pageSize, end * ctx.pageSize));
      i = end;
    }
    const now = monotonicMicros();
    for (let p = first; p < first + count; p++) {
      const at = this.#askedAt[p];
      if (at === NOT_OWED) continue;
      this.#askedAt[p] = NOT_OWED;
      this.#owed--;
      if (!Number.isNaN(at)) recordLatency(ctx.timing, now - at);
    }
  }

  /** Send all of `frame`, reading (and installing) meanwhile so neither side can deadlock. */
  #sendAll(frame: Uint8Array): void {
    let done = 0;
    while (done < frame.byteLength) {
      const n = send("send to memory server", this.#fd, frame.subarray(done), 0x40, SEND_ALLOWED);
      if (n >= 0) {
        done += n;
        continue;
      }
      if (n !== -Errno.EAGAIN) throw new DirectError("the memory server closed the connection");
      this.#pv.setInt16(4, POLLIN | POLLOUT, true);
      this.#pv.setInt16(6, 0, true);
      if (poll(this.#pfd, 1, this.#d.idleTimeoutMs) === 0) {
        throw new DirectError(`cannot send to the memory server for ${this.#d.idleTimeoutMs} ms`);
      }
      const revents = this.#pv.getInt16(6, true);
      if (revents & (POLLERR | POLLHUP)) {
        throw new DirectError("the memory server closed the connection");
      }
      if (revents & POLLIN) this.drain();
    }
    this.#ctx.timing[TIME_BYTES_TX] += frame.byteLength;
    this.#ctx.timing[TIME_PACKETS_TX]++;
  }

  /** HELLO exchange: blocking with the idle timeout; sets the session MACs. */
  #hello(): void {
    const d = this.#d;
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    this.#sendAll(encodeFrame(
      { type: FRAME_HELLO, seq: 0, forkId: d.forkId, nonce },
      helloAuth(d.key, new Uint8Array(NONCE_BYTES)),
    ));
    const deadline = performance.now() + d.idleTimeoutMs;
    for (;;) {
      const avail = this.#end - this.#start;
      if (avail >= HEADER_BYTES) {
        const header = decodeHeader(this.#buf.subarray(this.#start, this.#start + HEADER_BYTES));
        const total = frameBytes(header);
        if (avail >= total) {
          const reply = decodeFrame(
            this.#buf.subarray(this.#start, this.#start + total),
            helloAuth(d.key, nonce),
          );
          this.#start += total;
          if (reply.type !== FRAME_HELLO || reply.seq !== 0 || reply.pageSize === undefined) {
            throw new DirectError(`Cannot open session: got frame type ${reply.type} first`);
          }
          if (reply.pageSize !== this.#ctx.pageSize || reply.pageCount !== this.#ctx.pageCount) {
            throw new DirectError(
              `Cannot open session: server has ${reply.pageCount} pages of ${reply.pageSize} bytes`,
            );
          }
          this.#txAuth = sessionAuth(d.key, nonce, reply.nonce, "client");
          this.#rxAuth = sessionAuth(d.key, nonce, reply.nonce, "server");
          return;
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new DirectError(`no answer to hello within ${d.idleTimeoutMs} ms`);
      this.#pv.setInt16(4, POLLIN, true);
      this.#pv.setInt16(6, 0, true);
      poll(this.#pfd, 1, Math.ceil(left));
      const n = recv("recv hello", this.#fd, this.#buf.subarray(this.#end), 0x40, RECV_ALLOWED);
      if (n === -Errno.EAGAIN) continue;
      if (n <= 0) throw new DirectError("the server closed the connection (unknown fork?)");
      this.#end += n;
    }
  }
}
