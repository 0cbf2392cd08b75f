/**
 * Snapshot: the clone-time pages of one fork, served while the parent runs on.
 *
 * `capture` write-protects the parent's memory (userfaultfd WP, write_tracker.ts) and returns
 * at once. When the parent first writes a page, the fault worker copies the page into this
 * snapshot's store, sets the page's `saved` flag, and only then un-protects the page.
 *
 * Reading page p (readPage/readPages):
 *   1. if saved[p] is set, copy from the store;
 *   2. otherwise copy the live page, then load saved[p] again; if it is set now, copy from the
 *      store instead.
 * Why step 2 is safe: the worker sets saved[p] (an atomic store, after the copy into the store)
 * before it un-protects p, and the parent can change p only after the un-protect. If the load
 * that follows our read of the live page still sees saved[p] = 0, that whole read happened
 * before the flag was set, so before the un-protect, so before any write: it read clone-time
 * bytes. (Atomics give the ordering in JS; x86 loads are not reordered with later loads.)
 *
 * Several snapshots of one memory may be alive at once (see write_tracker.ts).
 *
 * @module
 */

import { releasePages } from "./release_pages.ts";
import { isUserfaultfdAvailable } from "./availability.ts";
import { holdFaultWorkers } from "./fault_worker_handle.ts";
import { SNAP_PAGES_SAVED, SNAP_STAT_SLOTS, SNAP_WP_FAULTS } from "./fault_protocol.ts";
import { PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "./page_mark.ts";
import { untouchedPages } from "./residency.ts";
import {
  prepareProtector,
  releaseProtector,
  type SnapshotBuffers,
  SnapshotError,
  WriteTracker,
} from "./write_tracker.ts";

export { SnapshotError };

/**
 * Start the thread that write-protects memory for {@link Snapshot.captureAsync}. Call it ahead
 * of time (e.g. when an agent starts), never inside a pause: starting a thread blocks ~10–20 ms.
 * Settles when that thread is ready; callers need not wait.
 */
export function prepareSnapshots(): Promise<void> {
  const started = prepareProtector();
  releaseSpares.push(holdFaultWorkers(1));
  return started;
}

/** Undo one {@link prepareSnapshots} (the last one ends the threads). */
export function releaseSnapshots(): void {
  releaseProtector();
  releaseSpares.pop()?.();
}

/** One per {@link prepareSnapshots} not undone yet: releases its spare fault worker. */
const releaseSpares: (() => void)[] = [];

/** Options of {@link Snapshot.capture}. */
export interface CaptureOptions {
  /** The parent's shared memory; the snapshot covers its current length. */
  memory: WebAssembly.Memory;
  /** Only 4096 is supported. */
  pageSize?: number;
}

/** Counters of a snapshot. */
export interface SnapshotStats {
  /** Write-protect faults taken while this snapshot was alive. */
  wpFaults: number;
  /** Pages copied into this snapshot's store. */
  pagesSaved: number;
  /** How long capture() kept the caller (the paused parent) waiting. */
  pauseMs: number;
}

/** The clone-time memory of one fork. */
export class Snapshot {
  #tracker: WriteTracker;
  #id: number;
  #live: Uint8Array;
  #liveWords: Int32Array;
  #store: Uint8Array;
  #storeWords: Int32Array;
  #saved: Uint8Array;
  #stats: Int32Array;
  #pauseMs: number;
  #released = false;
  /** Pages covered. */
  readonly pageCount: number;
  readonly pageSize: number;

  private constructor(
    tracker: WriteTracker,
    pageSize: number,
    startedAt: number,
    add: "now" | "later" = "now",
  ) {
    this.#tracker = tracker;
    this.pageSize = pageSize;
    this.pageCount = tracker.length / pageSize;
    this.#live = new Uint8Array(tracker.live);
    this.#liveWords = new Int32Array(tracker.live);
    const store = takeStore(Math.ceil(tracker.length / 65536));
    this.#store = new Uint8Array(store);
    this.#storeWords = new Int32Array(store);
    this.#saved = new Uint8Array(new SharedArrayBuffer(this.pageCount));
    this.#stats = new Int32Array(new SharedArrayBuffer(SNAP_STAT_SLOTS * 4));
    this.#buffers = {
      store,
      saved: this.#saved.buffer as SharedArrayBuffer,
      stats: this.#stats.buffer as SharedArrayBuffer,
    };
    this.#id = add === "now" ? tracker.add(this.#buffers) : 0;
    this.#pauseMs = performance.now() - startedAt;
  }

  #buffers: SnapshotBuffers;

  /**
   * Makes the store of a coming snapshot of `memory` now (e.g. when the parent asks for a
   * ticket), so that capture does not: allocating it was the biggest part of the pause.
   */
  static reserveStore(memory: WebAssembly.Memory): void {
    const wasmPages = memory.buffer.byteLength / 65536;
    if ((spareStores.get(wasmPages)?.length ?? 0) === 0) giveBackStore(takeStore(wasmPages));
  }

  /**
   * Write-protect `memory` and return at once: the parent may resume when this returns.
   * Writes before the fault worker is up ({@link ready}) just wait for it.
   */
  static capture(options: CaptureOptions): Snapshot {
    const startedAt = performance.now();
    const pageSize = options.pageSize ?? 4096;
    if (pageSize !== 4096) {
      throw new RangeError(`Cannot capture snapshot: page size ${pageSize} != 4096`);
    }
    if (!(options.memory.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError("Cannot capture snapshot: the memory must be shared");
    }
    const available = isUserfaultfdAvailable();
    if (!available.ok) throw new SnapshotError(`Cannot capture snapshot: ${available.reason}`);
    return new Snapshot(WriteTracker.of(options.memory, pageSize), pageSize, startedAt);
  }

  /**
   * {@link capture}, with the write-protection finished on the protector thread when one was
   * prepared ({@link prepareSnapshots}) and it takes more than a moment (memory not backed by
   * huge pages): the caller's event loop keeps running (e.g. a request to the master) while a
   * big memory is protected. The memory's owner must not write to it until this resolves.
   */
  static async captureAsync(options: CaptureOptions): Promise<Snapshot> {
    const startedAt = performance.now();
    const pageSize = options.pageSize ?? 4096;
    if (pageSize !== 4096) {
      throw new RangeError(`Cannot capture snapshot: page size ${pageSize} != 4096`);
    }
    if (!(options.memory.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError("Cannot capture snapshot: the memory must be shared");
    }
    const available = isUserfaultfdAvailable();
    if (!available.ok) throw new SnapshotError(`Cannot capture snapshot: ${available.reason}`);
    const tracker = WriteTracker.of(options.memory, pageSize);
    const snapshot = new Snapshot(tracker, pageSize, startedAt, "later");
    snapshot.#id = await tracker.addAsync(snapshot.#buffers);
    snapshot.#pauseMs = performance.now() - startedAt;
    return snapshot;
  }

  /** Settles when write faults are being served. */
  get ready(): Promise<void> {
    return this.#tracker.ready;
  }

  /** Copy page `index` as it was at capture into `into` (at least one page long). */
  readPage(index: number, into: Uint8Array): void {
    this.#checkReadable(index, 1);
    if (into.byteLength < this.pageSize) {
      throw new RangeError(`Cannot read page ${index}: buffer of ${into.byteLength} bytes`);
    }
    const start = index * this.pageSize;
    const end = start + this.pageSize;
    if (Atomics.load(this.#saved, index) === 0) {
      into.set(this.#live.subarray(start, end));
      if (Atomics.load(this.#saved, index) === 0) return; // see the module doc
    }
    into.set(this.#store.subarray(start, end));
  }

  /** Pages `first…first+count-1` as they were at capture. */
  readPages(first: number, count: number): Uint8Array {
    this.#checkReadable(first, count);
    const ps = this.pageSize;
    const out = new Uint8Array(count * ps);
    out.set(this.#live.subarray(first * ps, (first + count) * ps));
    // Re-check every flag after the bulk read (module doc), replacing pages saved meanwhile.
    for (let i = 0; i < count; i++) {
      const page = first + i;
      if (Atomics.load(this.#saved, page) !== 0) {
        out.set(this.#store.subarray(page * ps, (page + 1) * ps), i * ps);
      }
    }
    return out;
  }

  /**
   * Page marks: PAGE_UNTOUCHED for pages the parent never populated (residency.ts: they are not
   * read) and at or above `heapTop` (bytes), PAGE_ZERO for all-zero pages, PAGE_PRESENT for the
   * rest. Both describe clone-time contents, so the parent may run while this scans.
   */
  pageMap(heapTop: number = Infinity): Uint8Array {
    this.#checkReadable(0, 0);
    const marks = new Uint8Array(this.pageCount);
    const firstUntouched = Math.min(this.pageCount, Math.ceil(heapTop / this.pageSize));
    marks.fill(PAGE_UNTOUCHED, firstUntouched);
    const untouched = untouchedPages(this.#live.buffer as SharedArrayBuffer, this.pageSize);
    for (let page = 0; page < firstUntouched; page++) {
      marks[page] = untouched[page] === 1
        ? PAGE_UNTOUCHED
        : this.#isZeroPage(page)
        ? PAGE_ZERO
        : PAGE_PRESENT;
    }
    return marks;
  }

  #isZeroPage(page: number): boolean {
    const words = this.pageSize / 4;
    if (Atomics.load(this.#saved, page) === 0) {
      const zero = allZero(this.#liveWords, page * words, words);
      if (Atomics.load(this.#saved, page) === 0) return zero; // same argument as readPage
    }
    return allZero(this.#storeWords, page * words, words);
  }

  /**
   * The shared buffers behind {@link readPages}, for a fault worker of this process that serves
   * a local clone's faults itself (fault_direct.ts applies the same read-then-recheck rule).
   * Valid until {@link release}: after it, pages the parent writes are no longer saved.
   */
  sharedBuffers(): { live: SharedArrayBuffer; store: SharedArrayBuffer; saved: SharedArrayBuffer } {
    this.#checkReadable(0, 0);
    return {
      live: this.#live.buffer as SharedArrayBuffer,
      store: this.#store.buffer as SharedArrayBuffer,
      saved: this.#saved.buffer as SharedArrayBuffer,
    };
  }

  /** Counters. */
  stats(): SnapshotStats {
    return {
      wpFaults: Atomics.load(this.#stats, SNAP_WP_FAULTS),
      pagesSaved: Atomics.load(this.#stats, SNAP_PAGES_SAVED),
      pauseMs: this.#pauseMs,
    };
  }

  /** Stop saving pages for this snapshot; the last snapshot of a memory un-protects it. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#tracker.remove(this.#id);
    // No thread writes the store any more (removed), and readers check #released first.
    giveBackStore(this.#buffers.store);
  }

  #checkReadable(first: number, count: number): void {
    if (this.#released) throw new SnapshotError(`Cannot read page ${first}: snapshot released`);
    const broken = this.#tracker.broken;
    if (broken !== undefined) {
      throw new SnapshotError(`Cannot read page ${first}: ${broken.message}`, { cause: broken });
    }
    if (!Number.isInteger(first) || first < 0 || count < 0 || first + count > this.pageCount) {
      throw new RangeError(
        `Cannot read pages ${first}+${count}: snapshot has ${this.pageCount} pages`,
      );
    }
  }
}

/**
 * Stores of released snapshots, by size in Wasm pages, emptied. Making a 1 GiB shared memory
 * took up to 8 ms (measured), inside the parent's pause; a parent that forks again reuses one.
 */
const spareStores = new Map<number, SharedArrayBuffer[]>();
/** Spares kept per size: enough for a parent that forks again while its last fork is served. */
const SPARES_PER_SIZE = 2;

/** A shared memory of `wasmPages`: reserved, committed only where pages are saved. */
function takeStore(wasmPages: number): SharedArrayBuffer {
  return spareStores.get(wasmPages)?.pop() ??
    new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages, shared: true })
      .buffer as SharedArrayBuffer;
}

function giveBackStore(store: SharedArrayBuffer): void {
  const wasmPages = store.byteLength / 65536;
  const spares = spareStores.get(wasmPages) ?? [];
  if (spares.length >= SPARES_PER_SIZE) return; // dropped: the garbage collector unmaps it
  // Back to unpopulated zero pages: a spare holds no memory and no old contents.
  releasePages(store);
  spares.push(store);
  spareStores.set(wasmPages, spares);
}

function allZero(words: Int32Array, start: number, count: number): boolean {
  let acc = 0;
  for (let i = start, end = start + count; i < end; i += 8) {
    acc |= words[i] | words[i + 1] | words[i + 2] | words[i + 3] | words[i + 4] |
      words[i + 5] | words[i + 6] | words[i + 7];
    if (acc !== 0) return false;
  }
  return true;
}
