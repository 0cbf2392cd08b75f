/**
 * memtap: memory-on-demand for a clone's WebAssembly memory.
 *
 * The clone's memory is emptied (madvise DONTNEED) and registered with a userfaultfd. When the
 * VM thread touches a missing page, the fault worker (fault_worker.ts, its own thread) either
 * maps a zero page at once (page marks ZERO/UNTOUCHED/HINTED/FREE: never fetched) or marks the
 * page requested in a shared state array and reports it here; memtap asks the page source, and
 * the page's bytes come back through {@link Memtap.install}, which resolves the fault with
 * UFFDIO_COPY from this thread (any thread but the VM's may). Pages may also arrive unasked
 * (prefetch, multicast); they are installed the same way and then never asked for.
 *
 * Each page is asked for once; it is asked again only after `fetchTimeoutMs` without an answer,
 * at most `retries` times; then {@link Memtap.failed} settles with a MemtapError. The VM thread
 * stays blocked in its fault until {@link Memtap.close}, whose UFFDIO_UNREGISTER wakes it (it then
 * reads zeros): the owner must stop the VM before closing.
 *
 * With a `backing` file (page_file.ts, shared by the clones of a fork on one host), the file is
 * mapped privately over the memory instead of emptying it: pages written to the file are read
 * from it with no fault to handle, and a page that arrives after its fault is only marked
 * present and woken ({@link Memtap.mapped}), never copied.
 *
 * Only `pageMap.length` pages are registered: pages added later by `memory.grow` were never the
 * parent's and are ordinary zero-filled memory, so they need no registration.
 *
 * @module
 */

import {
  addressOf,
  close,
  Errno,
  MADV_DONTNEED,
  madvise,
  mapPrivateAt,
  mapZeroAt,
  monotonicMicros,
} from "../../native/libc.ts";
import {
  openUserfaultfd,
  uffdApi,
  uffdCopy,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER_MODE_MISSING,
  uffdRegister,
  uffdUnregister,
  uffdWake,
} from "../../native/userfaultfd.ts";
import { isUserfaultfdAvailable } from "./availability.ts";
import {
  type DirectSnapshot,
  type DirectUnicast,
  STAT_FAULTS,
  STAT_FETCHED,
  STAT_SLOTS,
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
  TIME_SLOTS,
  TIME_STALLED_US,
} from "./fault_protocol.ts";
import type { ForkAccess } from "./transport.ts";
import type { PageFile } from "./page_file.ts";
import { FaultWorkerHandle } from "./fault_worker_handle.ts";
import {
  isPageMark,
  PAGE_FREE,
  PAGE_HINTED,
  PAGE_PRESENT,
  PAGE_UNTOUCHED,
  PAGE_ZERO,
} from "./page_mark.ts";

/** Where missing pages come from (unicast, mcdist, or a test double). */
export interface PageSource {
  /** Ask for pages; they arrive later (in any grouping) through {@link Memtap.install}. */
  request(pages: number[]): void;
}

/**
 * Where the fault worker itself may get PRESENT pages, with no main-thread hop: a snapshot of this
 * process (a local clone: its shared buffers, Snapshot.sharedBuffers()), or the fork's unicast
 * memory server over the worker's own connection. The page source stays the fallback, and pages
 * it delivers (multicast, a sibling's request) are installed as before.
 */
export type MemtapDirect =
  | { kind: "snapshot"; buffers: Omit<DirectSnapshot, "kind"> }
  | { kind: "unicast"; access: ForkAccess; idleTimeoutMs?: number };

/** Options of {@link Memtap.open}. */
export interface MemtapOptions {
  /** The clone's shared memory, at least `pageMap.length * pageSize` bytes. */
  memory: WebAssembly.Memory;
  /** Only 4096 is supported. */
  pageSize?: number;
  /** One mark per page (page_mark.ts); only PAGE_PRESENT pages are fetched. */
  pageMap: Uint8Array;
  source: PageSource;
  /** Ask again for a page not installed after this long. Default 200 ms. */
  fetchTimeoutMs?: number;
  /** How many times to ask again before failing. Default 5. */
  retries?: number;
  /** Resolve PRESENT pages in the fault worker (see {@link MemtapDirect}). */
  direct?: MemtapDirect;
  /**
   * The host's record of the fork's pages asked for (ForkPages.asked): a fault on a page a
   * sibling clone already asked for is not reported, the page being installed everywhere.
   */
  hostAsked?: Uint8Array;
  /**
   * The fork's page file on this host (page_file.ts), mapped over the memory: pages arrive by
   * being written to it, then {@link Memtap.mapped}; {@link Memtap.install} is not for them.
   */
  backing?: PageFile;
}

/** Counters of a memtap. */
export interface MemtapStats {
  /** Missing-page faults read by the fault worker. */
  faults: number;
  /** Pages installed from the source (asked for or not). */
  pagesFetched: number;
  /** Pages installed as zero pages, never fetched, per mark. */
  pagesAvoided: { zero: number; untouched: number; hinted: number; free: number };
  /** Installed pages nobody had asked for (prefetch, multicast). */
  pagesInstalledUnrequested: number;
  /** Requests repeated after a timeout. */
  pagesReRequested: number;
  /**
   * Fault read → page installed, over the faults this memtap asked for (µs; last 65,536): not
   * those on pages a sibling clone had asked for already (see hostAsked).
   */
  faultP50Us: number;
  faultP99Us: number;
  /** Sum over the same faults of the time the faulting thread waited (ms). */
  stalledMs: number;
  /** How PRESENT pages are resolved now: by the worker itself, or through the page source. */
  resolver: "snapshot" | "unicast" | "source";
  /** Why direct resolution stopped, if it did. */
  directFailure?: string;
  /** Traffic of the worker's own connection (direct unicast). */
  direct: {
    bytesReceived: number;
    bytesSent: number;
    packetsReceived: number;
    packetsSent: number;
    rejected: number;
  };
}

/** memtap failed: it cannot open, or a page could not be fetched. */
export class MemtapError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MemtapError";
  }
}

interface InFlight {
  sentAt: number;
  tries: number;
  /** monotonicMicros() when the fault was read, if a fault caused the request. */
  faultAt?: number;
}

const LATENCY_RING = 65536;
/**
 * Pages fill() has on their way at once; it asks for more as they arrive. A transport asks again
 * for what has not come within its timeout, which follows the round trip, not the queue ahead:
 * 61,440 pages asked for at once over mcdist were asked for again 322,000–587,000 times and took
 * 2.2–2.9 s; in windows of 256, 2,809 times and 1.5–1.75 s (windows of 1,024: 27,140 times).
 */
const FILL_WINDOW = 256;
type RequiredOptions =
  & Required<Omit<MemtapOptions, "direct" | "hostAsked" | "backing">>
  & Pick<MemtapOptions, "direct" | "hostAsked" | "backing">;

/** Memory-on-demand for one clone memory. */
export class Memtap {
  #memory: WebAssembly.Memory;
  #uffd: number;
  #base: number;
  #length: number;
  #pageSize: number;
  #pageCount: number;
  #marks: Uint8Array;
  #state: Uint8Array;
  #backed: boolean;
  /** fill() completed: closing keeps the contents (a backed memory copies them out of the file). */
  #complete = false;
  #workerStats: Int32Array;
  #timing: Float64Array;
  #resolver: MemtapStats["resolver"];
  #directFailure: string | undefined;
  #directFilled: PromiseWithResolvers<boolean> | undefined;
  #source: PageSource;
  #timeoutMs: number;
  #retries: number;
  #worker: FaultWorkerHandle;
  #inFlight = new Map<number, InFlight>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  /** Pages installed but not woken yet: [#wakeFrom, #wakeTo), or -1 (none). */
  #wakeFrom = -1;
  #wakeTo = -1;
  #failure = Promise.withResolvers<MemtapError>();
  #failedWith: MemtapError | undefined;
  #pagesFetched = 0;
  #unrequested = 0;
  #reRequested = 0;
  #latencies = new Float64Array(LATENCY_RING);
  #latencyCount = 0;
  #stalledUs = 0;
  /** PRESENT pages not installed yet (fill() waits for 0). */
  #presentLeft = 0;
  /** The page fill() looks at next for one to ask for, or -1 (not filling, or all asked). */
  #fillNext = -1;
  #filled: PromiseWithResolvers<void> | undefined;

  /** Settles (resolves with the error) when a page cannot be fetched or the worker dies. */
  readonly failed: Promise<MemtapError> = this.#failure.promise;

  private constructor(
    options: RequiredOptions,
    uffd: number,
    base: number,
    direct: DirectSnapshot | DirectUnicast | undefined,
  ) {
    this.#memory = options.memory;
    this.#uffd = uffd;
    this.#base = base;
    this.#pageSize = options.pageSize;
    this.#pageCount = options.pageMap.length;
    this.#length = this.#pageCount * this.#pageSize;
    this.#source = options.source;
    this.#timeoutMs = options.fetchTimeoutMs;
    this.#retries = options.retries;
    this.#backed = options.backing !== undefined;
    const marks = new Uint8Array(new SharedArrayBuffer(this.#pageCount));
    marks.set(options.pageMap);
    for (const mark of options.pageMap) if (mark === PAGE_PRESENT) this.#presentLeft++;
    this.#marks = marks;
    this.#state = new Uint8Array(new SharedArrayBuffer(this.#pageCount));
    this.#workerStats = new Int32Array(new SharedArrayBuffer(STAT_SLOTS * 4));
    this.#timing = new Float64Array(new SharedArrayBuffer(TIME_SLOTS * 8));
    this.#resolver = direct?.kind ?? "source";
    this.#worker = new FaultWorkerHandle({
      role: "memtap",
      uffd,
      base,
      pageSize: this.#pageSize,
      pageCount: this.#pageCount,
      marks: marks.buffer as SharedArrayBuffer,
      state: this.#state.buffer as SharedArrayBuffer,
      stats: this.#workerStats.buffer as SharedArrayBuffer,
      timing: this.#timing.buffer as SharedArrayBuffer,
      ...(direct ? { direct } : {}),
      ...(options.hostAsked ? { hostAsked: options.hostAsked.buffer as SharedArrayBuffer } : {}),
    }, {
      onFault: (pages, at) => this.#onFault(pages, at),
      onFilled: () => this.#directFilled?.resolve(true),
      onDirectFailed: (message) => this.#onDirectFailed(message),
      onError: (error) => this.#fail(new MemtapError(error.message, { cause: error })),
    });
  }

  /** Empty the memory, register it, start the fault worker. */
  static async open(options: MemtapOptions): Promise<Memtap> {
    const available = isUserfaultfdAvailable();
    if (!available.ok) throw new MemtapError(`Cannot open memtap: ${available.reason}`);
    const full: RequiredOptions = {
      pageSize: 4096,
      fetchTimeoutMs: 200,
      retries: 5,
      ...options,
    };
    validate(full);
    const buffer = full.memory.buffer;
    // The memory's SharedArrayBuffer is 64 KiB aligned and lives as long as the memory, which
    // the Memtap holds; the range registered is within its current length.
    const base = addressOf(buffer);
    const length = full.pageMap.length * full.pageSize;
    const uffd = openUserfaultfd({ nonblocking: true });
    try {
      uffdApi(uffd, 0n);
      if (full.backing) mapPrivateAt(base, length, full.backing.fd);
      else madvise(base, length, MADV_DONTNEED);
      uffdRegister(uffd, base, length, UFFDIO_REGISTER_MODE_MISSING);
    } catch (cause) {
      close(uffd);
      throw new MemtapError(`Cannot open memtap: ${(cause as Error).message}`, { cause });
    }
    const memtap = new Memtap(full, uffd, base, await directOf(full.direct));
    try {
      await memtap.#worker.ready;
    } catch (cause) {
      await memtap.close();
      throw new MemtapError(`Cannot open memtap: ${(cause as Error).message}`, { cause });
    }
    return memtap;
  }

  /** The registered memory. */
  get memory(): WebAssembly.Memory {
    return this.#memory;
  }

  /**
   * Install pages `firstPage…` from `bytes` (a whole number of pages). Pages already present or
   * not marked PRESENT are skipped; each contiguous run of the rest is one UFFDIO_COPY, which
   * also wakes threads waiting on it.
   */
  install(firstPage: number, bytes: Uint8Array): void {
    if (this.#backed) throw new MemtapError("Cannot install pages: they come from the page file");
    const ps = this.#pageSize;
    this.#eachWantedRun("install", firstPage, bytes.byteLength / ps, (first, end) => {
      this.#copyRun(first, bytes.subarray((first - firstPage) * ps, (end - firstPage) * ps));
    });
  }

  /**
   * Pages `firstPage…firstPage+count-1` are in the backing file now: those not present yet are
   * marked present and their waiters woken (the clone reads them from the file).
   */
  mapped(firstPage: number, count: number): void {
    if (!this.#backed) throw new MemtapError("Cannot map pages: this memtap has no page file");
    this.#eachWantedRun("map", firstPage, count, (first, end) => {
      this.#wakeLater(first, end);
      this.#markInstalled(first, end - first);
    });
  }

  /** Calls `run(first, end)` for each run of pages in the range that are PRESENT and missing. */
  #eachWantedRun(
    op: string,
    firstPage: number,
    count: number,
    run: (first: number, end: number) => void,
  ): void {
    if (this.#closed) throw new MemtapError(`Cannot ${op} pages: memtap is closed`);
    if (!Number.isInteger(count) || !Number.isInteger(firstPage) || firstPage < 0) {
      throw new RangeError(`Cannot ${op} pages: ${count} pages at page ${firstPage}`);
    }
    if (firstPage + count > this.#pageCount) {
      throw new RangeError(
        `Cannot ${op} pages: ${firstPage}+${count} is past the ${this.#pageCount} pages`,
      );
    }
    let page = firstPage;
    while (page < firstPage + count) {
      if (!this.#wanted(page)) {
        page++;
        continue;
      }
      let end = page + 1;
      while (end < firstPage + count && this.#wanted(end)) end++;
      run(page, end);
      page = end;
    }
  }

  /**
   * The clone will overwrite pages `first…first+count-1` before reading them
   * (sf_hint_overwrite): those not yet fetched or asked for become HINTED, so a fault on them
   * maps a zero page and nothing is fetched. Call it only while the VM thread is blocked (in the
   * hint call), so no fault on these pages can be in flight. Returns the pages re-marked.
   */
  hintOverwrite(first: number, count: number): number {
    let marked = 0;
    const end = Math.min(this.#pageCount, first + count);
    for (let page = Math.max(0, first); page < end; page++) {
      if (this.#marks[page] !== PAGE_PRESENT) continue;
      if (Atomics.load(this.#state, page) !== STATE_MISSING) continue;
      this.#marks[page] = PAGE_HINTED;
      marked++;
    }
    this.#presentLeft -= marked;
    return marked;
  }

  /**
   * Fetch every PRESENT page not yet installed and resolve once all are (rejects if memtap
   * fails). Afterwards the memory can be read from any thread, e.g. to fork a clone again.
   */
  async fill(): Promise<void> {
    await this.#fill();
    this.#complete = true;
  }

  async #fill(): Promise<void> {
    if (this.#resolver !== "source") {
      this.#directFilled = Promise.withResolvers<boolean>();
      this.#worker.command({ kind: "fill" });
      const failed = this.failed.then((e) => Promise.reject(e));
      if (await Promise.race([this.#directFilled.promise, failed])) return;
      // Direct resolution failed meanwhile: the page source fills the rest.
    }
    this.#recountPresentLeft();
    if (this.#presentLeft === 0) return;
    this.#filled ??= Promise.withResolvers<void>();
    this.#fillNext = 0;
    this.#askFillWindow();
    const failed = this.failed.then((e) => Promise.reject(e));
    await Promise.race([this.#filled.promise, failed]);
  }

  /** Asks for fill()'s next missing pages, so that at most FILL_WINDOW are on their way. */
  #askFillWindow(): void {
    if (this.#fillNext < 0 || this.#inFlight.size > FILL_WINDOW / 2) return;
    const ask: number[] = [];
    const now = performance.now();
    while (this.#fillNext < this.#pageCount && this.#inFlight.size < FILL_WINDOW) {
      const page = this.#fillNext++;
      if (this.#marks[page] !== PAGE_PRESENT) continue;
      // Claim it as the worker would: a later fault on it then just waits for the install.
      if (
        Atomics.compareExchange(this.#state, page, STATE_MISSING, STATE_REQUESTED) !== STATE_MISSING
      ) {
        continue;
      }
      this.#inFlight.set(page, { sentAt: now, tries: 1 });
      ask.push(page);
    }
    if (this.#fillNext >= this.#pageCount) this.#fillNext = -1;
    if (ask.length > 0) this.#ask(ask);
  }

  #onDirectFailed(message: string): void {
    this.#resolver = "source";
    this.#directFailure = message;
    this.#directFilled?.resolve(false);
  }

  /** PRESENT pages not installed yet (the worker installs some itself while it resolves). */
  #recountPresentLeft(): void {
    let left = 0;
    for (let page = 0; page < this.#pageCount; page++) {
      if (this.#marks[page] === PAGE_PRESENT && Atomics.load(this.#state, page) !== STATE_PRESENT) {
        left++;
      }
    }
    this.#presentLeft = left;
  }

  #wanted(page: number): boolean {
    return this.#marks[page] === PAGE_PRESENT && Atomics.load(this.#state, page) !== STATE_PRESENT;
  }

  #copyRun(first: number, bytes: Uint8Array): void {
    const ps = this.#pageSize;
    let done = 0;
    while (done < bytes.byteLength) {
      // bytes: read by the kernel during this synchronous ioctl; the caller's view holds it.
      const result = uffdCopy(
        this.#uffd,
        this.#base + first * ps + done,
        bytes.subarray(done),
        UFFDIO_COPY_MODE_DONTWAKE,
      );
      if (result.errno === 0) {
        done = bytes.byteLength;
        break;
      }
      done += result.bytes - (result.bytes % ps);
      // Already mapped (should not happen: only we install PRESENT pages): the wake below.
      if (result.errno === Errno.EEXIST && result.bytes === 0) done += ps;
      // EAGAIN, or EEXIST after progress: carry on from where the kernel stopped.
    }
    this.#wakeLater(first, first + bytes.byteLength / ps);
    this.#markInstalled(first, bytes.byteLength / ps);
  }

  /**
   * Wakes the threads waiting on pages [from, to) once the current task is over, together with
   * every other page installed meanwhile. Pages come in batches (a datagram batch, a sibling's
   * run): a VM woken on the first would run into the next before it is installed, and fault
   * again; woken after the batch, it runs through all of them. Any page installed may have a
   * waiter (its fault not read yet), so the whole span is woken; a thread woken on a page
   * still missing just faults again.
   */
  #wakeLater(from: number, to: number): void {
    if (this.#wakeFrom < 0) {
      this.#wakeFrom = from;
      this.#wakeTo = to;
      queueMicrotask(() => this.#wakeInstalled());
    } else {
      this.#wakeFrom = Math.min(this.#wakeFrom, from);
      this.#wakeTo = Math.max(this.#wakeTo, to);
    }
  }

  #wakeInstalled(): void {
    const ps = this.#pageSize;
    const [from, to] = [this.#wakeFrom, this.#wakeTo];
    this.#wakeFrom = this.#wakeTo = -1;
    // Closing unregistered the range, which woke everyone.
    if (!this.#closed) uffdWake(this.#uffd, this.#base + from * ps, (to - from) * ps);
  }

  #markInstalled(first: number, count: number): void {
    const now = monotonicMicros();
    for (let page = first; page < first + count; page++) {
      Atomics.store(this.#state, page, STATE_PRESENT);
      this.#pagesFetched++;
      this.#presentLeft--;
      const entry = this.#inFlight.get(page);
      if (entry === undefined) {
        this.#unrequested++;
        continue;
      }
      this.#inFlight.delete(page);
      if (entry.faultAt !== undefined) {
        const waited = now - entry.faultAt;
        this.#latencies[this.#latencyCount++ % LATENCY_RING] = waited;
        this.#stalledUs += waited;
      }
    }
    if (this.#presentLeft === 0) this.#filled?.resolve();
    else this.#askFillWindow();
  }

  #onFault(pages: number[], at: number): void {
    if (this.#closed) return;
    const ask: number[] = [];
    const now = performance.now();
    for (const page of pages) {
      if (Atomics.load(this.#state, page) === STATE_PRESENT) continue;
      if (this.#inFlight.has(page)) {
        this.#inFlight.get(page)!.faultAt ??= at;
        continue;
      }
      this.#inFlight.set(page, { sentAt: now, tries: 1, faultAt: at });
      ask.push(page);
    }
    if (ask.length > 0) this.#ask(ask);
  }

  #ask(pages: number[]): void {
    if (this.#failedWith !== undefined) return;
    this.#startTimer();
    try {
      this.#source.request(pages);
    } catch (cause) {
      this.#fail(new MemtapError(`Cannot fetch pages: the page source threw`, { cause }));
    }
  }

  #startTimer(): void {
    if (this.#timer !== undefined) return;
    const every = Math.max(1, Math.floor(this.#timeoutMs / 4));
    this.#timer = setInterval(() => this.#checkTimeouts(), every);
  }

  #stopTimer(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #checkTimeouts(): void {
    // Stopped here rather than when the last page arrives: a clone that faults again at once
    // (most do) would otherwise start and stop a timer a fault.
    if (this.#inFlight.size === 0) return this.#stopTimer();
    const now = performance.now();
    const again: number[] = [];
    for (const [page, entry] of this.#inFlight) {
      if (now - entry.sentAt < this.#timeoutMs) continue;
      if (entry.tries > this.#retries) {
        this.#fail(
          new MemtapError(
            `Cannot fetch page ${page}: no answer after ${entry.tries} requests ` +
              `(${this.#timeoutMs} ms each)`,
          ),
        );
        return;
      }
      entry.tries++;
      entry.sentAt = now;
      again.push(page);
    }
    if (again.length > 0) {
      this.#reRequested += again.length;
      this.#ask(again);
    }
  }

  #fail(error: MemtapError): void {
    if (this.#failedWith !== undefined) return;
    this.#failedWith = error;
    this.#stopTimer();
    this.#failure.resolve(error);
  }

  /** Counters; percentiles over the most recent 65,536 fetched faults. */
  stats(): MemtapStats {
    const mine = this.#latencies.subarray(0, Math.min(this.#latencyCount, LATENCY_RING));
    const t = this.#timing;
    const theirs = t.subarray(TIME_RING, TIME_RING + Math.min(t[TIME_COUNT], LATENCY_RING));
    const sorted = new Float64Array(mine.length + theirs.length);
    sorted.set(mine);
    sorted.set(theirs, mine.length);
    sorted.sort();
    const n = sorted.length;
    const pct = (p: number) => (n === 0 ? 0 : sorted[Math.min(n - 1, Math.floor(n * p))]);
    const w = this.#workerStats;
    return {
      faults: Atomics.load(w, STAT_FAULTS),
      pagesFetched: this.#pagesFetched + Atomics.load(w, STAT_FETCHED),
      pagesAvoided: {
        zero: Atomics.load(w, PAGE_ZERO - 1),
        untouched: Atomics.load(w, PAGE_UNTOUCHED - 1),
        hinted: Atomics.load(w, PAGE_HINTED - 1),
        free: Atomics.load(w, PAGE_FREE - 1),
      },
      pagesInstalledUnrequested: this.#unrequested,
      pagesReRequested: this.#reRequested,
      faultP50Us: pct(0.5),
      faultP99Us: pct(0.99),
      stalledMs: (this.#stalledUs + t[TIME_STALLED_US]) / 1000,
      resolver: this.#resolver,
      ...(this.#directFailure !== undefined ? { directFailure: this.#directFailure } : {}),
      direct: {
        bytesReceived: t[TIME_BYTES_RX],
        bytesSent: t[TIME_BYTES_TX],
        packetsReceived: t[TIME_PACKETS_RX],
        packetsSent: t[TIME_PACKETS_TX],
        rejected: t[TIME_REJECTED],
      },
    };
  }

  /**
   * Stop the worker, unregister (waking any thread still blocked in a fault: it then sees a
   * zero page, so stop the VM first) and close the userfaultfd. Idempotent. A backed memory
   * stops mapping the page file: after {@link fill} its contents are copied into memory of its
   * own (the VM goes on with them), else it is emptied (its VM is over).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopTimer();
    await this.#worker.stop();
    try {
      uffdUnregister(this.#uffd, this.#base, this.#length);
    } finally {
      close(this.#uffd);
    }
    if (this.#backed) this.#unmapBacking();
  }

  #unmapBacking(): void {
    const view = new Uint8Array(this.#memory.buffer, 0, this.#length);
    const kept = this.#complete ? view.slice() : undefined;
    mapZeroAt(this.#base, this.#length);
    if (kept !== undefined) view.set(kept);
  }
}

/** The worker's form of `direct`: a unicast server's host resolved to an IPv4 address. */
async function directOf(
  direct: MemtapDirect | undefined,
): Promise<DirectSnapshot | DirectUnicast | undefined> {
  if (direct === undefined) return undefined;
  if (direct.kind === "snapshot") return { kind: "snapshot", ...direct.buffers };
  const { server, forkId, key } = direct.access;
  const at = server.lastIndexOf(":");
  const host = server.slice(0, at).replace(/^\[|\]$/g, "");
  const port = Number(server.slice(at + 1));
  let ipv4: string | undefined;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) ipv4 = host;
  else if (host === "localhost") ipv4 = "127.0.0.1";
  else {
    try {
      ipv4 = (await Deno.resolveDns(host, "A"))[0];
    } catch {
      ipv4 = undefined; // unresolvable here: the page source (which resolves itself) serves
    }
  }
  if (ipv4 === undefined || !(port > 0 && port < 65536)) return undefined;
  return {
    kind: "unicast",
    ipv4,
    port,
    forkId,
    key,
    idleTimeoutMs: direct.idleTimeoutMs ?? 2000,
  };
}

function validate(options: RequiredOptions): void {
  const { memory, pageSize, pageMap, fetchTimeoutMs, retries } = options;
  if (!(memory.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError("Cannot open memtap: the memory must be shared");
  }
  if (pageSize !== 4096) throw new RangeError(`Cannot open memtap: page size ${pageSize} != 4096`);
  if (pageMap.length * pageSize > memory.buffer.byteLength) {
    throw new RangeError(
      `Cannot open memtap: page map covers ${pageMap.length} pages, memory has ${
        memory.buffer.byteLength / pageSize
      }`,
    );
  }
  for (let i = 0; i < pageMap.length; i++) {
    if (!isPageMark(pageMap[i])) {
      throw new RangeError(`Cannot open memtap: page ${i} has unknown mark ${pageMap[i]}`);
    }
  }
  if (!(fetchTimeoutMs > 0) || !(retries >= 0)) {
    throw new RangeError("Cannot open memtap: fetchTimeoutMs must be > 0 and retries >= 0");
  }
}
