/**
 * One userfaultfd write-protect registration of a parent's memory, shared by every snapshot of
 * that memory that is alive (a range can belong to one registration only).
 *
 * Several snapshots at once work: each capture adds its snapshot to the fault worker (a
 * command, so the worker knows it before any fault that follows) and then write-protects the
 * whole range again. A write fault copies the page into every snapshot that has not saved it,
 * then un-protects it. A page is un-protected only after every snapshot alive at that moment
 * saved it, and a later capture protects it again, so "not saved by S" implies "unchanged since
 * S was captured". The last release stops the worker, un-protects everything and unregisters.
 *
 * Not supported (fails clearly): capturing a memory that grew since the oldest snapshot still
 * alive, and a memory that is also a memtap clone (one registration per range).
 *
 * @module
 */

import { addressOf, close } from "../../native/libc.ts";
import {
  openUserfaultfd,
  UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  UFFD_FEATURE_WP_UNPOPULATED,
  uffdApi,
  UFFDIO_REGISTER_MODE_WP,
  UFFDIO_WRITEPROTECT_MODE_WP,
  uffdRegister,
  uffdUnregister,
  uffdWriteprotect,
} from "../../native/userfaultfd.ts";
import { FaultWorkerHandle } from "./fault_worker_handle.ts";
import type { ProtectRange, RangeProtected } from "./fault_protocol.ts";

/** A snapshot cannot be taken, read or released. */
export class SnapshotError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SnapshotError";
  }
}

/** The shared buffers the fault worker fills for one snapshot. */
export interface SnapshotBuffers {
  store: SharedArrayBuffer;
  saved: SharedArrayBuffer;
  stats: SharedArrayBuffer;
}

const trackers = new WeakMap<WebAssembly.Memory, WriteTracker>();

/**
 * How long {@link WriteTracker.addAsync} write-protects on the calling thread before it hands the
 * rest to the protector thread, and the piece it protects at a time (a multiple of 2 MiB, the
 * huge page size: 1 GiB of huge pages takes ~0.1 ms, 32 MiB of 4 KiB pages ~0.8 ms).
 */
const INLINE_PROTECT_MS = 2;
const INLINE_PROTECT_STEP = 32 << 20;

/** Id of the protector's warm-up call; real calls count from 1. */
const WARM_UP = 0;

/**
 * A thread that write-protects ranges for captures (the fault worker's protector role), so the
 * main thread stays free while a big memory is protected: the parent's pause then overlaps the
 * protection with the master's answer instead of adding them. Spawning a Worker blocks the
 * spawning thread for ~10–20 ms, so it is started ahead of time ({@link prepareProtector}), never
 * inside a pause; captures before it is ready protect on the calling thread. Likewise the
 * thread's first ioctl binds libc there (dlopen and FFI set-up, ~10–15 ms): a warm-up call that
 * fails at once (fd -1) does it before the protector counts as ready.
 */
class Protector {
  #worker: Worker;
  #ready = false;
  #started = Promise.withResolvers<void>();
  #nextId = 1;
  #waiting = new Map<number, PromiseWithResolvers<RangeProtected>>();

  constructor() {
    this.#worker = new Worker(new URL("./fault_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (event: MessageEvent<RangeProtected | { kind: "ready" }>) => {
      const m = event.data;
      if (m.kind === "ready") return; // the warm-up's answer follows
      if (m.id === WARM_UP) {
        this.#ready = true;
        this.#started.resolve();
        return;
      }
      const w = this.#waiting.get(m.id);
      this.#waiting.delete(m.id);
      w?.resolve(m);
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#ready = false;
      this.#started.resolve();
      for (const w of this.#waiting.values()) w.reject(new SnapshotError(event.message));
      this.#waiting.clear();
    };
    this.#worker.postMessage({ kind: "init-protector" });
    const warmUp: ProtectRange = {
      kind: "protect",
      id: WARM_UP,
      uffd: -1,
      start: 0,
      len: 0,
      mode: 0n,
    };
    this.#worker.postMessage(warmUp);
  }

  /** End the thread; protections still pending fail. */
  terminate(): void {
    this.#ready = false;
    this.#worker.terminate();
    for (const w of this.#waiting.values()) w.reject(new SnapshotError("protector stopped"));
    this.#waiting.clear();
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Settles when the thread is ready, or has failed (captures then protect inline). */
  get started(): Promise<void> {
    return this.#started.promise;
  }

  /** UFFDIO_WRITEPROTECT on the protector thread; resolves with its answer. */
  protect(uffd: number, start: number, len: number, mode: bigint): Promise<RangeProtected> {
    const id = this.#nextId++;
    const w = Promise.withResolvers<RangeProtected>();
    this.#waiting.set(id, w);
    this.#worker.postMessage({ kind: "protect", id, uffd, start, len, mode });
    return w.promise;
  }
}

let protector: Protector | undefined;
let protectorUsers = 0;

/**
 * Start the protector thread now (outside any pause) so later captures can write-protect off
 * the main thread ({@link WriteTracker.addAsync}). Counted: each call needs one
 * {@link releaseProtector} (a live Worker keeps the process running). Settles when the thread
 * is ready (or failed); callers need not wait.
 */
export function prepareProtector(): Promise<void> {
  protectorUsers++;
  protector ??= new Protector();
  return protector.started;
}

/** Undo one {@link prepareProtector}; the last one ends the thread. */
export function releaseProtector(): void {
  if (protectorUsers === 0) return;
  if (--protectorUsers > 0) return;
  protector?.terminate();
  protector = undefined;
}

/** The write-protect registration of one memory. */
export class WriteTracker {
  #memory: WebAssembly.Memory;
  #uffd: number;
  #base: number;
  #length: number;
  #pageSize: number;
  #worker: FaultWorkerHandle;
  #ids = new Set<number>();
  #nextId = 1;
  #closing: Promise<void> | undefined;
  #broken: Error | undefined;
  /** The memory as it was at registration (the range served). */
  readonly live: SharedArrayBuffer;

  /** The tracker of `memory`, registering it on first use. */
  static of(memory: WebAssembly.Memory, pageSize: number): WriteTracker {
    const existing = trackers.get(memory);
    if (existing !== undefined) {
      if (existing.#closing !== undefined) {
        throw new SnapshotError(
          "Cannot capture snapshot: the previous snapshots of this memory are still being " +
            "released (await release())",
        );
      }
      if (memory.buffer.byteLength !== existing.#length) {
        throw new SnapshotError(
          `Cannot capture snapshot: memory grew from ${existing.#length} to ${memory.buffer.byteLength}` +
            " bytes since an earlier snapshot that is still alive",
        );
      }
      return existing;
    }
    const tracker = new WriteTracker(memory, pageSize);
    trackers.set(memory, tracker);
    return tracker;
  }

  private constructor(memory: WebAssembly.Memory, pageSize: number) {
    this.#memory = memory;
    this.#pageSize = pageSize;
    this.live = memory.buffer as SharedArrayBuffer;
    this.#length = this.live.byteLength;
    // The memory's SharedArrayBuffer is 64 KiB aligned and outlives the registration (held in
    // #memory and `live`); the range is its length at registration.
    this.#base = addressOf(this.live);
    this.#uffd = openUserfaultfd({ nonblocking: true });
    try {
      uffdApi(this.#uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED);
      uffdRegister(this.#uffd, this.#base, this.#length, UFFDIO_REGISTER_MODE_WP);
    } catch (cause) {
      close(this.#uffd);
      throw new SnapshotError(`Cannot capture snapshot: ${(cause as Error).message}`, { cause });
    }
    this.#worker = new FaultWorkerHandle({
      role: "snapshot",
      uffd: this.#uffd,
      base: this.#base,
      pageSize,
      pageCount: this.#length / pageSize,
      memory: this.live,
    }, { onError: (error) => this.#breakDown(error) });
  }

  /** Settles when the fault worker serves (writes before then wait in the kernel). */
  get ready(): Promise<void> {
    return this.#worker.ready;
  }

  /** Bytes registered. */
  get length(): number {
    return this.#length;
  }

  /** Why the tracker stopped serving, if it did. */
  get broken(): Error | undefined {
    return this.#broken;
  }

  /** Add a snapshot and write-protect the whole range; returns its id. */
  add(buffers: SnapshotBuffers): number {
    if (this.#broken !== undefined) {
      throw new SnapshotError(`Cannot capture snapshot: ${this.#broken.message}`, {
        cause: this.#broken,
      });
    }
    const id = this.#nextId++;
    this.#worker.command({ kind: "add", id, ...buffers });
    this.#ids.add(id);
    uffdWriteprotect(this.#uffd, this.#base, this.#length, UFFDIO_WRITEPROTECT_MODE_WP);
    return id;
  }

  /**
   * {@link add}, with the write-protection left to the protector thread (when it is ready) once
   * it has taken {@link INLINE_PROTECT_MS} on this thread: the caller's event loop runs
   * meanwhile. Memory backed by huge pages (huge_pages.ts) is protected whole within that time,
   * without a round trip to the thread, which costs more than the protection itself (0.5–1 ms,
   * tens of ms on a busy machine). Resolves once the whole range is protected (only then may the
   * memory's owner write to it again).
   */
  async addAsync(buffers: SnapshotBuffers): Promise<number> {
    if (protector === undefined || !protector.ready) return this.add(buffers);
    if (this.#broken !== undefined) {
      throw new SnapshotError(`Cannot capture snapshot: ${this.#broken.message}`, {
        cause: this.#broken,
      });
    }
    const id = this.#nextId++;
    // The worker learns the snapshot before any fault the protection below can cause.
    this.#worker.command({ kind: "add", id, ...buffers });
    this.#ids.add(id);
    const end = this.#base + this.#length;
    const since = performance.now();
    let at = this.#base;
    try {
      while (at < end && performance.now() - since < INLINE_PROTECT_MS) {
        // Pieces end on huge-page boundaries: protecting part of a huge page would split it.
        const next = Math.min(
          end,
          (Math.floor(at / INLINE_PROTECT_STEP) + 1) * INLINE_PROTECT_STEP,
        );
        uffdWriteprotect(this.#uffd, at, next - at, UFFDIO_WRITEPROTECT_MODE_WP);
        at = next;
      }
    } catch (cause) {
      this.#ids.delete(id);
      throw new SnapshotError(`Cannot capture snapshot: ${(cause as Error).message}`, { cause });
    }
    if (at === end) return id;
    const done = await protector.protect(this.#uffd, at, end - at, UFFDIO_WRITEPROTECT_MODE_WP);
    if (done.error !== undefined) {
      this.#ids.delete(id);
      throw new SnapshotError(`Cannot capture snapshot: ${done.error}`);
    }
    return id;
  }

  /** Forget a snapshot; the last one closes the registration. */
  async remove(id: number): Promise<void> {
    if (!this.#ids.delete(id)) return;
    if (this.#ids.size > 0) {
      if (this.#broken === undefined) this.#worker.command({ kind: "remove", id });
      return;
    }
    this.#closing ??= this.#close();
    await this.#closing;
  }

  async #close(): Promise<void> {
    await this.#worker.stop();
    this.#release();
  }

  #breakDown(error: Error): void {
    this.#broken = error;
    this.#release(); // let the parent run on: nothing saves pages any more
  }

  #release(): void {
    if (this.#uffd < 0) return;
    try {
      // Un-protect (mode 0) wakes blocked writers; unregister drops the range.
      uffdWriteprotect(this.#uffd, this.#base, this.#length, 0n);
      uffdUnregister(this.#uffd, this.#base, this.#length);
    } finally {
      close(this.#uffd);
      this.#uffd = -1;
      if (trackers.get(this.#memory) === this) trackers.delete(this.#memory);
    }
  }
}
