/**
 * The unicast page client: one TCP connection per fork per host (WIRE.md), shared by that
 * host's clones of the fork. Requests are de-duplicated against pages still outstanding and
 * batched per event-loop turn into runs; a broken or silent connection is re-opened and every
 * outstanding page asked again; after `retries` failed attempts in a row {@link failed} settles.
 *
 * @module
 */

import type { ForkAccess, PageClient, TransportStats } from "../transport.ts";
import { emptyStats } from "../transport.ts";
import {
  decodeFrame,
  encodeFrame,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_REQUEST,
  FrameReader,
  helloAuth,
  MAX_REQUEST_RUNS,
  NONCE_BYTES,
  type SessionAuth,
  sessionAuth,
  toRuns,
  WireError,
} from "./wire.ts";

/** Options of {@link UnicastPageClient}. */
export interface UnicastClientOptions {
  /** Failed connection attempts in a row before giving up. Default 4. */
  retries?: number;
  /** First back-off between attempts, doubled each time. Default 100 ms. */
  retryDelayMs?: number;
  /** Pages outstanding and nothing heard for this long: the connection is dead. Default 2000 ms. */
  idleTimeoutMs?: number;
}

/** The pages of a fork could not be fetched. */
export class PageFetchError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PageFetchError";
  }
}

const ZERO_NONCE = new Uint8Array(NONCE_BYTES);

interface Session {
  conn: Deno.TcpConn;
  /** MACs of our frames and of the server's on this connection; freed when its read loop ends. */
  txAuth: SessionAuth;
  rxAuth: SessionAuth;
  tx: number;
  writing: Promise<void>;
}

/** Fetches the pages of one fork from its memory server over TCP. */
export class UnicastPageClient implements PageClient {
  #access: ForkAccess;
  #retries: number;
  #retryDelayMs: number;
  #idleTimeoutMs: number;
  #listeners: ((first: number, bytes: Uint8Array) => void)[] = [];
  #outstanding = new Set<number>();
  #queued: number[] = [];
  #flushScheduled = false;
  #session: Session | undefined;
  #connecting: Promise<void> | undefined;
  #stats = emptyStats();
  #closed = false;
  #failure = Promise.withResolvers<Error>();
  #failedWith: Error | undefined;
  #lastHeard = 0;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  readonly failed: Promise<Error> = this.#failure.promise;

  constructor(access: ForkAccess, options: UnicastClientOptions = {}) {
    this.#access = access;
    this.#retries = options.retries ?? 4;
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 2000;
  }

  request(pages: number[]): void {
    if (this.#closed || this.#failedWith !== undefined) return;
    for (const page of pages) {
      if (!Number.isInteger(page) || page < 0 || page >= this.#access.pageCount) {
        throw new RangeError(`Cannot request page ${page}: the fork has ${this.#access.pageCount}`);
      }
      if (this.#outstanding.has(page)) continue;
      this.#outstanding.add(page);
      this.#queued.push(page);
    }
    if (this.#queued.length === 0 || this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => this.#flush());
  }

  onPages(listener: (firstPage: number, bytes: Uint8Array) => void): void {
    this.#listeners.push(listener);
  }

  stats(): TransportStats {
    return { ...this.#stats };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stopWatchdog();
    this.#session?.conn.close();
    this.#session = undefined;
    await this.#connecting?.catch(() => {});
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closed || this.#failedWith !== undefined || this.#queued.length === 0) return;
    const session = this.#session;
    if (session === undefined) {
      this.#connect(); // the session sends everything outstanding once it is up
      return;
    }
    const runs = toRuns(this.#queued);
    this.#queued = [];
    this.#sendRuns(session, runs);
  }

  #sendRuns(session: Session, runs: { first: number; count: number }[]): void {
    const { forkId } = this.#access;
    const frames: Uint8Array[] = [];
    for (let i = 0; i < runs.length; i += MAX_REQUEST_RUNS) {
      const part = runs.slice(i, i + MAX_REQUEST_RUNS);
      frames.push(encodeFrame(
        { type: FRAME_REQUEST, seq: session.tx++, forkId, runs: part },
        session.txAuth,
      ));
    }
    this.#lastHeard = performance.now();
    this.#startWatchdog();
    session.writing = session.writing.then(async () => {
      for (const frame of frames) {
        for (let done = 0; done < frame.byteLength;) {
          done += await session.conn.write(frame.subarray(done));
        }
        this.#stats.bytesSent += frame.byteLength;
        this.#stats.packetsSent++;
      }
    }).catch(() => session.conn.close()); // the read loop sees the close and reconnects
  }

  #connect(): void {
    if (this.#connecting !== undefined || this.#closed) return;
    this.#connecting = this.#connectWithRetries().finally(() => this.#connecting = undefined);
  }

  /**
   * Open a session, retrying with back-off. `#failures` counts attempts and connections that
   * ended without delivering a page since the last page arrived, so a server that accepts and
   * then drops us cannot keep a clone waiting for ever.
   */
  async #connectWithRetries(): Promise<void> {
    for (;;) {
      if (this.#closed) return;
      if (this.#failures > this.#retries) break;
      if (this.#failures > 0) await sleep(this.#retryDelayMs * 2 ** (this.#failures - 1));
      try {
        const session = await this.#open();
        this.#session = session;
        this.#readLoop(session, new FrameReader());
        // Everything not yet received is asked again on the new connection.
        this.#queued = [];
        if (this.#everConnected) this.#stats.retransmits += this.#outstanding.size;
        this.#everConnected = true;
        if (this.#outstanding.size > 0) this.#sendRuns(session, toRuns(this.#outstanding));
        return;
      } catch (e) {
        this.#lastError = e;
        this.#failures++;
      }
    }
    const last = this.#lastError;
    this.#fail(
      new PageFetchError(
        `Cannot fetch pages from memory server ${this.#access.server}: ${
          (last as Error)?.message ?? last
        } (${this.#retries + 1} attempts)`,
        { cause: last },
      ),
    );
  }

  #failures = 0;
  #lastError: unknown;
  #everConnected = false;

  /** Connect and exchange HELLOs. */
  async #open(): Promise<Session> {
    const { hostname, port } = splitAddress(this.#access.server);
    const conn = await withTimeout(
      Deno.connect({ hostname, port, transport: "tcp" }),
      this.#idleTimeoutMs,
      `no connection to ${this.#access.server} within ${this.#idleTimeoutMs} ms`,
    );
    conn.setNoDelay(true);
    try {
      const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
      const { forkId, key } = this.#access;
      const hello = encodeFrame(
        { type: FRAME_HELLO, seq: 0, forkId, nonce },
        helloAuth(key, ZERO_NONCE),
      );
      await conn.write(hello);
      this.#stats.bytesSent += hello.byteLength;
      this.#stats.packetsSent++;
      const reader = new FrameReader();
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await withTimeout(
          conn.read(buf),
          this.#idleTimeoutMs,
          `no answer to hello within ${this.#idleTimeoutMs} ms`,
        );
        if (n === null) {
          throw new PageFetchError("the server closed the connection (unknown fork?)");
        }
        reader.push(buf.subarray(0, n));
        const next = reader.next();
        if (next === undefined) continue;
        const reply = decodeFrame(next.bytes, helloAuth(key, nonce));
        this.#stats.bytesReceived += next.bytes.byteLength;
        this.#stats.packetsReceived++;
        if (reply.type !== FRAME_HELLO || reply.seq !== 0) {
          throw new WireError(`Cannot open session: got frame type ${reply.type} first`);
        }
        if (
          reply.pageSize !== this.#access.pageSize || reply.pageCount !== this.#access.pageCount
        ) {
          throw new WireError(
            `Cannot open session: server has ${reply.pageCount} pages of ${reply.pageSize} bytes`,
          );
        }
        return {
          conn,
          txAuth: sessionAuth(key, nonce, reply.nonce, "client"),
          rxAuth: sessionAuth(key, nonce, reply.nonce, "server"),
          tx: 1,
          writing: Promise.resolve(),
        };
      }
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  async #readLoop(session: Session, reader: FrameReader): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    let rx = 0;
    try {
      for (;;) {
        const n = await session.conn.read(buf);
        if (n === null) break;
        this.#lastHeard = performance.now();
        reader.push(buf.subarray(0, n));
        for (let next = reader.next(); next !== undefined; next = reader.next()) {
          this.#stats.bytesReceived += next.bytes.byteLength;
          this.#stats.packetsReceived++;
          let frame;
          try {
            frame = decodeFrame(next.bytes, session.rxAuth);
          } catch {
            this.#stats.rejected++;
            throw new WireError("Cannot read pages: a frame failed authentication");
          }
          if (frame.seq !== ++rx) {
            throw new WireError(`Cannot read pages: frame ${frame.seq} out of order`);
          }
          if (frame.type === FRAME_ERROR) {
            this.#fail(new PageFetchError(`Cannot fetch pages: the server said: ${frame.message}`));
            return;
          }
          if (frame.type === FRAME_PAGES) this.#deliver(frame.first, frame.count, frame.bytes);
        }
      }
    } catch {
      // fall through: reconnect if pages are still wanted
    } finally {
      try {
        session.conn.close();
      } catch { /* already closed */ }
      // Unset with the MACs it frees, on every way out: a freed MAC must never seal a request.
      if (this.#session === session) this.#session = undefined;
      session.txAuth.free();
      session.rxAuth.free();
    }
    if (!this.#closed && this.#outstanding.size > 0) {
      this.#lastError = new PageFetchError("the connection dropped with pages outstanding");
      this.#failures++;
      this.#connect();
    }
  }

  #deliver(first: number, count: number, bytes: Uint8Array): void {
    if (
      first + count > this.#access.pageCount || bytes.byteLength !== count * this.#access.pageSize
    ) {
      this.#stats.rejected++;
      return;
    }
    this.#failures = 0;
    for (let p = first; p < first + count; p++) this.#outstanding.delete(p);
    if (this.#outstanding.size === 0) this.#stopWatchdog();
    for (const listener of this.#listeners) listener(first, bytes);
  }

  #startWatchdog(): void {
    if (this.#watchdog !== undefined) return;
    this.#watchdog = setInterval(() => {
      const silent = performance.now() - this.#lastHeard;
      if (this.#outstanding.size > 0 && silent > this.#idleTimeoutMs) {
        this.#session?.conn.close(); // the read loop reconnects
        this.#lastHeard = performance.now();
      }
    }, Math.max(10, this.#idleTimeoutMs / 4));
  }

  #stopWatchdog(): void {
    if (this.#watchdog === undefined) return;
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
  }

  #fail(error: Error): void {
    if (this.#failedWith !== undefined) return;
    this.#failedWith = error;
    this.#stopWatchdog();
    this.#session?.conn.close();
    this.#failure.resolve(error);
  }
}

function splitAddress(address: string): { hostname: string; port: number } {
  const at = address.lastIndexOf(":");
  const port = Number(address.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new TypeError(`Cannot reach memory server: bad address ${address}`);
  }
  return { hostname: address.slice(0, at).replace(/^\[|\]$/g, ""), port };
}

async function withTimeout<T>(work: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PageFetchError(why)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
