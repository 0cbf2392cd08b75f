/**
 * The unicast page server: one TCP listener per agent serving the pages of every fork it was
 * given (WIRE.md). Each connection belongs to one fork and must prove it holds the fork key.
 *
 * @module
 */

import { toHex } from "../../backend/wasm/fork_descriptor.ts";
import { emptyStats, type PageServer, type ServedFork, type TransportStats } from "../transport.ts";
import { PAGE_PRESENT } from "../page_mark.ts";
import {
  decodeFrame,
  encodeFrame,
  type Frame,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_REQUEST,
  type FrameAuth,
  FrameReader,
  helloAuth,
  MAX_RUN_PAGES,
  NONCE_BYTES,
  type PageRun,
  sessionAuth,
} from "./wire.ts";

/** Options of {@link UnicastPageServer.listen}. */
export interface UnicastServerOptions {
  /** Address to bind (an interface address, or 0.0.0.0). */
  hostname: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Host clones reach this one at; default `hostname`. */
  advertise?: string;
}

const ZERO_NONCE = new Uint8Array(NONCE_BYTES);

/** One authenticated connection. */
interface Session {
  id: string;
  fork: ServedFork;
  rx: number;
  tx: number;
  /** MACs of the client's frames and of ours. */
  rxAuth: FrameAuth;
  txAuth: FrameAuth;
}
const SEND_BATCH_BYTES = 1 << 20;

/** Serves the pages of forks over TCP. */
export class UnicastPageServer implements PageServer {
  #listener: Deno.TcpListener;
  #forks = new Map<string, ServedFork>();
  #stats = new Map<string, TransportStats>();
  #total = emptyStats();
  #conns = new Set<Deno.TcpConn>();
  #accepting: Promise<void>;
  #closed = false;
  readonly address: string;

  private constructor(listener: Deno.TcpListener, advertise: string) {
    this.#listener = listener;
    this.address = `${advertise}:${listener.addr.port}`;
    this.#accepting = this.#accept();
  }

  /** Bind and start accepting. */
  static listen(o: UnicastServerOptions): UnicastPageServer {
    const listener = Deno.listen({ hostname: o.hostname, port: o.port ?? 0, transport: "tcp" });
    return new UnicastPageServer(listener, o.advertise ?? o.hostname);
  }

  addFork(fork: ServedFork): void {
    const id = toHex(fork.forkId);
    this.#forks.set(id, fork);
    this.#stats.set(id, emptyStats());
  }

  removeFork(forkId: Uint8Array): void {
    this.#forks.delete(toHex(forkId));
  }

  stats(forkId?: Uint8Array): TransportStats {
    if (forkId === undefined) return { ...this.#total };
    return { ...(this.#stats.get(toHex(forkId)) ?? emptyStats()) };
  }

  async close(): Promise<void> {
    if (this.#closed) return await this.#accepting;
    this.#closed = true;
    this.#listener.close();
    for (const conn of this.#conns) conn.close();
    await this.#accepting;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // closed
      }
      conn.setNoDelay(true);
      this.#conns.add(conn);
      this.#serve(conn).finally(() => {
        this.#conns.delete(conn);
        try {
          conn.close();
        } catch { /* already closed */ }
      });
    }
  }

  /** One connection: HELLO, then REQUESTs answered with PAGES, until either side closes. */
  async #serve(conn: Deno.TcpConn): Promise<void> {
    const reader = new FrameReader();
    const buf = new Uint8Array(256 * 1024);
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    let session: Session | undefined;
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        return;
      }
      if (n === null) return;
      reader.push(buf.subarray(0, n));
      for (let next = reader.next(); next !== undefined; next = reader.next()) {
        const id = toHex(next.header.forkId);
        const fork = this.#forks.get(id);
        const stats = this.#stats.get(id);
        if (fork === undefined || (session !== undefined && session.id !== id)) {
          this.#total.rejected++; // unknown or removed fork: nobody here can authenticate it
          return;
        }
        this.#count(stats, "received", next.bytes.byteLength);
        let frame: Frame;
        try {
          frame = decodeFrame(
            next.bytes,
            session === undefined ? helloAuth(fork.key, ZERO_NONCE) : session.rxAuth,
          );
        } catch {
          this.#reject(stats);
          return;
        }
        if (session === undefined) {
          if (frame.type !== FRAME_HELLO || frame.seq !== 0) return this.#reject(stats);
          session = {
            id,
            fork,
            rx: 0,
            tx: 0,
            rxAuth: sessionAuth(fork.key, frame.nonce, nonce, "client"),
            txAuth: sessionAuth(fork.key, frame.nonce, nonce, "server"),
          };
          const hello = encodeFrame(
            {
              type: FRAME_HELLO,
              seq: session.tx++,
              forkId: fork.forkId,
              nonce,
              pageSize: fork.pageSize,
              pageCount: fork.pageCount,
            },
            helloAuth(fork.key, frame.nonce),
          );
          if (!await this.#send(conn, stats, [hello])) return;
          continue;
        }
        if (frame.seq !== ++session.rx || frame.type !== FRAME_REQUEST) return this.#reject(stats);
        // Written in batches of about 1 MiB: big requests (eager clones) never sit whole in memory.
        let batch: Uint8Array[] = [];
        let batchBytes = 0;
        for (const reply of this.#answer(session, frame.runs)) {
          batch.push(reply);
          batchBytes += reply.byteLength;
          if (batchBytes < SEND_BATCH_BYTES) continue;
          if (!await this.#send(conn, stats, batch)) return;
          batch = [];
          batchBytes = 0;
        }
        if (!await this.#send(conn, stats, batch)) return;
      }
    }
  }

  /** PAGES frames for the PRESENT pages of `runs` (others are never sent), or one ERROR. */
  *#answer(session: Session, runs: PageRun[]): Generator<Uint8Array> {
    const { fork } = session;
    const frame = (body: Parameters<typeof encodeFrame>[0]) => encodeFrame(body, session.txAuth);
    for (const run of runs) {
      if (run.count === 0 || run.first + run.count > fork.pageCount) {
        yield frame({
          type: FRAME_ERROR,
          seq: session.tx++,
          forkId: fork.forkId,
          message: `pages ${run.first}+${run.count} outside the fork's ${fork.pageCount}`,
        });
        continue;
      }
      for (const piece of presentPieces(fork.pageMap, run)) {
        yield frame({
          type: FRAME_PAGES,
          seq: session.tx++,
          forkId: fork.forkId,
          first: piece.first,
          count: piece.count,
          bytes: fork.reader.readPages(piece.first, piece.count),
        });
      }
    }
  }

  async #send(conn: Deno.TcpConn, stats: TransportStats | undefined, frames: Uint8Array[]) {
    if (frames.length === 0) return true;
    const bytes = frames.length === 1 ? frames[0] : concat(frames);
    try {
      for (let done = 0; done < bytes.byteLength;) done += await conn.write(bytes.subarray(done));
    } catch {
      return false;
    }
    this.#count(stats, "sent", bytes.byteLength, frames.length);
    return true;
  }

  #count(stats: TransportStats | undefined, dir: "sent" | "received", bytes: number, packets = 1) {
    for (const s of stats === undefined ? [this.#total] : [stats, this.#total]) {
      if (dir === "sent") {
        s.bytesSent += bytes;
        s.packetsSent += packets;
      } else {
        s.bytesReceived += bytes;
        s.packetsReceived += packets;
      }
    }
  }

  #reject(stats: TransportStats | undefined): void {
    if (stats !== undefined) stats.rejected++;
    this.#total.rejected++;
  }
}

/** The PRESENT sub-runs of `run`, each at most MAX_RUN_PAGES long. */
function* presentPieces(pageMap: Uint8Array, run: PageRun): Generator<PageRun> {
  const end = run.first + run.count;
  let page = run.first;
  while (page < end) {
    if (pageMap[page] !== PAGE_PRESENT) {
      page++;
      continue;
    }
    const first = page;
    while (page < end && pageMap[page] === PAGE_PRESENT && page - first < MAX_RUN_PAGES) page++;
    yield { first, count: page - first };
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
