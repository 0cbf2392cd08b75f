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
