/**
 * The unicast page server: one TCP listener per agent serving the pages of every fork it was
 * given (WIRE.md). Each connection belongs to one fork and must prove it holds the fork key.
 *
 * The connections live on a dedicated worker (server_worker.ts) that reads the forks' pages from
 * shared memory (../shared_pages.ts: a Snapshot's buffers, or an image of any other reader's
 * PRESENT pages made when the fork is added), so answering a fault never waits for this thread's
 * event loop. This side binds the listener (so the address is known at once), posts the forks to
 * the worker and reads its counters from shared memory.
 *
 * @module
 */

import { toHex } from "../../backend/wasm/fork_descriptor.ts";
import {
  close,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  eventfd,
  tcpListen,
  write,
} from "../../../native/libc.ts";
import { sharePages } from "../shared_pages.ts";
import { emptyStats, type PageServer, type ServedFork, type TransportStats } from "../transport.ts";
import {
  type AddFork,
  type CloseServer,
  CONTROL_SLOTS,
  type FromServerWorker,
  GEN,
  type InitServer,
  MAC_CONTEXTS,
  type RemoveFork,
  STAT_KEYS,
  STAT_SLOTS,
} from "./server_protocol.ts";

/** Options of {@link UnicastPageServer.listen}. */
export interface UnicastServerOptions {
  /** IPv4 address to bind (an interface address, or 0.0.0.0). */
  hostname: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Host clones reach this one at; default `hostname`. */
  advertise?: string;
}

/** The server's worker failed; it serves nothing any more. */
export class PageServerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PageServerError";
  }
}

type Command = Omit<AddFork, "gen"> | Omit<RemoveFork, "gen"> | Omit<CloseServer, "gen">;

const WORKER_URL = new URL("./server_worker.ts", import.meta.url);
const CLOSE_WAIT_MS = 1000;
// eventfd increment (u64 1), 8 bytes; written synchronously.
const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

/**
 * One worker thread of the server, its wake-up eventfd and command channel. Commands are applied
 * in order; a command settles once the worker applied it (or the thread is gone).
 */
class ServerThread {
  readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
  #worker: Worker;
  #efd: number;
  /** Commands awaited by generation, settled when the worker has applied them. */
  #waiting = new Map<number, () => void>();

  constructor(listenFd: number, total: SharedArrayBuffer, onFailure: (message: string) => void) {
    // Wakes the worker out of poll() for a command; closed after the worker has stopped.
    this.#efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    this.#worker = new Worker(WORKER_URL, { type: "module" });
    this.#worker.onmessage = (event: MessageEvent<FromServerWorker>) => {
      const message = event.data;
      if (message.kind === "applied") this.#settle(message.gen);
      else onFailure(message.message);
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      onFailure(`worker died: ${event.message}`);
    };
    const init: InitServer = {
      kind: "init",
      listenFd,
      efd: this.#efd,
      control: this.control.buffer as SharedArrayBuffer,
      total,
    };
    this.#worker.postMessage(init);
  }

  command(command: Command): Promise<void> {
    if (this.#efd < 0) return Promise.resolve();
    const gen = Atomics.load(this.control, GEN) + 1;
    const applied = Promise.withResolvers<void>();
    this.#waiting.set(gen, applied.resolve);
    this.#worker.postMessage({ ...command, gen });
    Atomics.store(this.control, GEN, gen);
    write("write eventfd", this.#efd, ONE);
    return applied.promise;
  }

  /**
   * Closes its connections and ends it; a worker that does not answer within a second is ended
   * anyway (its connections then close with the process). The listener stays open.
   */
  stop(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const wedged = new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_WAIT_MS));
    return Promise.race([this.command({ kind: "close" }), wedged]).then(() => {
      clearTimeout(timer);
      this.end();
    });
  }

  /** Ends the thread at once. */
  end(): void {
    if (this.#efd < 0) return;
    this.#worker.terminate();
    close(this.#efd);
    this.#efd = -1;
    this.#settle(Infinity);
  }

  /** Commands are applied in order: `gen` applied means every earlier one was. */
  #settle(gen: number): void {
    for (const [g, resolve] of this.#waiting) {
      if (g > gen) continue;
      this.#waiting.delete(g);
      resolve();
    }
  }
}

/**
 * Serves the pages of forks over TCP, from its worker thread. Once it serves no fork any more,
 * the worker is replaced by a fresh one: a worker keeps the shared memory of the forks it was
 * given until it collects its garbage, which a thread that mostly waits in poll(2) hardly ever
 * does (measured: a parent's host kept every job's 64 MiB parent memory mapped).
 */
export class UnicastPageServer implements PageServer {
  #thread: ServerThread;
  #listenFd: number;
  #total = new Float64Array(new SharedArrayBuffer(STAT_SLOTS * 8));
  /** Counters of each fork served. */
  #stats = new Map<string, Float64Array>();
  /** Replaced threads still closing their connections. */
  #retiring = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;
  #failure: PageServerError | undefined;
  readonly address: string;

  private constructor(listenFd: number, address: string) {
    this.#listenFd = listenFd;
    this.address = address;
    this.#thread = this.#startThread();
  }

  /** Bind and start serving (connections queue in the kernel until the worker is up). */
  static listen(o: UnicastServerOptions): UnicastPageServer {
    const { fd, port } = tcpListen(o.hostname, o.port ?? 0);
    return new UnicastPageServer(fd, `${o.advertise ?? o.hostname}:${port}`);
  }

  /** Session cipher contexts the worker holds: two per authenticated connection. */
  get macContexts(): number {
    return Atomics.load(this.#thread.control, MAC_CONTEXTS);
  }

  /** The worker's failure, if it failed (then no fork is served). */
  get failure(): PageServerError | undefined {
    return this.#failure;
  }

  /** Serve a fork; a reader without shared pages is copied (its PRESENT pages) first. */
  addFork(fork: ServedFork): void {
    const stats = new SharedArrayBuffer(STAT_SLOTS * 8);
    this.#stats.set(toHex(fork.forkId), new Float64Array(stats));
    this.#command({
      kind: "add",
      forkId: fork.forkId,
      key: fork.key,
      pageSize: fork.pageSize,
      pageCount: fork.pageCount,
      pageMap: fork.pageMap,
      pages: sharePages(fork.reader, fork.pageMap, fork.pageSize),
      stats,
    });
  }

  /** Settles once the worker has closed the fork's connections and reads none of its pages. */
  removeFork(forkId: Uint8Array): Promise<void> {
    const removed = this.#command({ kind: "remove", forkId });
    if (this.#stats.delete(toHex(forkId)) && this.#stats.size === 0) this.#replaceThread();
    return removed;
  }

  stats(forkId?: Uint8Array): TransportStats {
    const slots = forkId === undefined ? this.#total : this.#stats.get(toHex(forkId));
    const stats = emptyStats();
    if (slots !== undefined) STAT_KEYS.forEach((key, i) => stats[key] = slots[i]);
    return stats;
  }

  /** Close every connection, end the worker and close the listener. */
  close(): Promise<void> {
    this.#closing ??= Promise.all([this.#thread.stop(), ...this.#retiring]).then(() =>
      this.#finish()
    );
    return this.#closing;
  }

  #startThread(): ServerThread {
    const thread: ServerThread = new ServerThread(
      this.#listenFd,
      this.#total.buffer as SharedArrayBuffer,
      (message) => {
        if (thread === this.#thread) {
          this.#fail(new PageServerError(`Cannot serve pages: ${message}`));
        }
      },
    );
    return thread;
  }

  /**
   * A fresh thread takes over the listener; the old one closes what connections it has left
   * (none of a fork: every fork was removed) and ends. Both poll the listener until the old one
   * applies its close, moments later: a connection it takes meanwhile is for no fork it knows
   * and is refused, as it would be by any server; clones of a fork added later connect only
   * once its descriptor went out.
   */
  #replaceThread(): void {
    if (this.#closing !== undefined || this.#failure !== undefined) return;
    const old = this.#thread;
    this.#thread = this.#startThread();
    const retired = old.stop().then(() => {
      this.#retiring.delete(retired);
    });
    this.#retiring.add(retired);
  }

  #command(command: Command): Promise<void> {
    if (this.#failure !== undefined || this.#closing !== undefined) return Promise.resolve();
    return this.#thread.command(command);
  }

  #fail(error: PageServerError): void {
    this.#failure ??= error;
    this.#thread.end();
    this.#finish();
  }

  #finish(): void {
    if (this.#listenFd < 0) return;
    close(this.#listenFd);
    this.#listenFd = -1;
  }
}
