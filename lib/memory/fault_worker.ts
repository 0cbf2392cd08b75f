/**
 * The fault worker: a dedicated thread that reads a userfaultfd and resolves what it can
 * without the main thread. It must never be the thread that touches the memory.
 *
 * - role "memtap": a missing fault on a page marked ZERO/UNTOUCHED/HINTED/FREE is resolved at
 *   once with UFFDIO_ZEROPAGE (extended over the following avoided pages); a PRESENT page is
 *   marked requested (compare-and-swap, so it is asked for once) and reported to the owner,
 *   whose `install` resolves it with UFFDIO_COPY. The worker keeps reading further faults.
 * - role "snapshot": a write-protect fault copies the page into every active snapshot that has
 *   not saved it yet, sets the snapshot's `saved` flag, then un-protects the page (which wakes
 *   the writer). Copy before flag before un-protect is what readers rely on.
 *
 * Protocol: see fault_protocol.ts.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  Errno,
  monotonicMicros,
  poll,
  POLLFD_SIZE,
  POLLIN,
  pollSpinning,
  read,
} from "../../native/libc.ts";
import {
  type DirectContext,
  DirectError,
  SnapshotResolver,
  UnicastResolver,
} from "./fault_direct.ts";
import {
  UFFD_EVENT_PAGEFAULT,
  UFFD_PAGEFAULT_FLAG_WP,
  UFFD_STRUCT_SIZE,
  uffdWake,
  uffdWriteprotect,
  uffdZeropage,
} from "../../native/userfaultfd.ts";
import {
  type FromWorker,
  GEN,
  HOST_ASKED,
  type InitMemtap,
  type InitProtector,
  type InitSnapshot,
  type ProtectRange,
  type RangeProtected,
  SNAP_PAGES_SAVED,
  SNAP_WP_FAULTS,
  STAT_FAULTS,
  STATE_MISSING,
  STATE_PRESENT,
  STATE_REQUESTED,
  type ToWorker,
} from "./fault_protocol.ts";
import { PAGE_PRESENT } from "./page_mark.ts";

const MSG = UFFD_STRUCT_SIZE.uffd_msg;
/** Messages read per read(2). */
const BATCH = 64;
/** Longest run of avoided pages zero-filled for one fault (1 MiB of 4 KiB pages). */
const ZERO_RUN = 256;
const AGAIN: readonly number[] = [Errno.EAGAIN];
/** How long to spin for due pages before sleeping. */
const SPIN_US = 100;

interface SnapshotTarget {
  store: Uint8Array;
  saved: Uint8Array;
  stats: Int32Array;
}

let init: InitMemtap | InitSnapshot | undefined;
let control: Int32Array;
let knownGen = 0;
// Fault messages read in one read(2); 64 × 32 bytes, owned by this thread for its lifetime.
const msgBuf = new Uint8Array(BATCH * MSG);
const msgView = new DataView(msgBuf.buffer);
// Three struct pollfd (uffd, eventfd, direct socket), 8 bytes each, owned by this thread.
const pollFds = new Uint8Array(3 * POLLFD_SIZE);
const pollView = new DataView(pollFds.buffer);
// eventfd counter (u64): 8 bytes, read synchronously.
const eventBuf = new Uint8Array(8);
/** A batch read just before a command arrived; handled after the command. */
let stash: Uint8Array | undefined;

// memtap role
let marks: Uint8Array;
let state: Uint8Array;
let stats: Int32Array;
let hostAsked: Uint8Array | undefined;
/** Direct resolution of PRESENT pages (memtap role), while it works. */
let direct: SnapshotResolver | UnicastResolver | undefined;
/** Poll interval while pages are outstanding on the direct connection (idle check). */
const IDLE_CHECK_MS = 100;
// snapshot role
let live: Uint8Array;
const snapshots = new Map<number, SnapshotTarget>();

function post(message: FromWorker): void {
  self.postMessage(message);
}

function setUp(message: InitMemtap | InitSnapshot): void {
  init = message;
  control = new Int32Array(message.control);
  knownGen = 0; // commands posted since the worker was created are still queued behind init
  pollView.setInt32(0, message.uffd, true);
  pollView.setInt16(4, POLLIN, true);
  pollView.setInt32(8, message.efd, true);
  pollView.setInt16(12, POLLIN, true);
  if (message.role === "memtap") {
    marks = new Uint8Array(message.marks);
    state = new Uint8Array(message.state);
    stats = new Int32Array(message.stats);
    hostAsked = message.hostAsked ? new Uint8Array(message.hostAsked) : undefined;
    openDirect(message);
  } else {
    live = new Uint8Array(message.memory);
  }
}

/** Forgets the session, so that the worker can serve another memtap or snapshot. */
function tearDown(): void {
  init = undefined;
  stash = undefined;
  hostAsked = undefined;
  snapshots.clear();
  // Nothing of the last VM's memory stays reachable from an idle worker.
  live = marks = state = new Uint8Array(0);
}

function openDirect(message: InitMemtap): void {
  const d = message.direct;
  if (d === undefined) return;
  const ctx: DirectContext = {
    uffd: message.uffd,
    base: message.base,
    pageSize: message.pageSize,
    pageCount: message.pageCount,
    marks,
    state,
    stats,
    timing: new Float64Array(message.timing),
  };
  try {
    direct = d.kind === "snapshot" ? new SnapshotResolver(ctx, d) : UnicastResolver.open(ctx, d);
  } catch (e) {
    post({ kind: "direct-failed", message: e instanceof Error ? e.message : String(e) });
  }
}

/** Direct resolution failed: hand what it owed to the owner, who serves faults from now on. */
function dropDirect(error: unknown): void {
  const resolver = direct;
  if (resolver === undefined) return;
  direct = undefined;
  const owed = resolver instanceof UnicastResolver ? resolver.owed() : [];
  if (resolver instanceof UnicastResolver) resolver.close();
  if (!(error instanceof DirectError) && !(error instanceof Error)) {
    error = new Error(String(error));
  }
  post({ kind: "direct-failed", message: (error as Error).message });
  if (owed.length > 0) post({ kind: "fault", pages: owed, at: monotonicMicros() });
}

/** Serve faults until a command arrives (the generation moves). */
function serve(): void {
  const { uffd, efd } = init!;
  for (;;) {
    if (Atomics.load(control, GEN) !== knownGen) return;
    const n = read("read userfaultfd", uffd, msgBuf, AGAIN);
    if (n > 0) {
      if (Atomics.load(control, GEN) !== knownGen) {
        stash = msgBuf.slice(0, n);
        return;
      }
      handle(msgBuf, n / MSG);
      continue;
    }
    const net = direct instanceof UnicastResolver ? direct : undefined;
    if (net !== undefined) {
      try {
        net.drain();
        net.checkIdle();
        if (net.filled()) post({ kind: "filled" });
      } catch (e) {
        dropDirect(e);
      }
    }
    // Nothing queued: sleep until a fault, a command or (direct) pages.
    pollView.setInt16(6, 0, true);
    pollView.setInt16(14, 0, true);
    pollView.setInt16(22, 0, true);
    if (net !== undefined && direct === net) {
      pollView.setInt32(16, net.fd, true);
      pollView.setInt16(20, POLLIN, true);
      // Pages are due from the memory server: spin briefly rather than sleep (pollSpinning).
      if (net.outstanding > 0) pollSpinning(pollFds, 3, SPIN_US, IDLE_CHECK_MS);
      else poll(pollFds, 3, -1);
    } else {
      poll(pollFds, 2, -1);
    }
    if (pollView.getInt16(14, true) & POLLIN) read("read eventfd", efd, eventBuf, AGAIN);
  }
}

function handle(bytes: Uint8Array, count: number): void {
  if (init!.role === "memtap") handleMissing(bytes, count);
  else handleWriteProtect(bytes, count);
}

function pageOf(bytes: Uint8Array, index: number): number {
  const view = bytes === msgBuf ? msgView : new DataView(bytes.buffer);
  const address = Number(view.getBigUint64(index * MSG + 16, true));
  return Math.floor((address - init!.base) / init!.pageSize);
}

function flagsOf(bytes: Uint8Array, index: number): number {
  const view = bytes === msgBuf ? msgView : new DataView(bytes.buffer);
  return Number(view.getBigUint64(index * MSG + 8, true));
}

function handleMissing(bytes: Uint8Array, count: number): void {
  const { pageCount, pageSize, base, uffd } = init!;
  let pages: number[] | undefined;
  const at = monotonicMicros();
  for (let i = 0; i < count; i++) {
    if (bytes[i * MSG] !== UFFD_EVENT_PAGEFAULT) continue;
    Atomics.add(stats, STAT_FAULTS, 1);
    const page = pageOf(bytes, i);
    if (page < 0 || page >= pageCount) continue; // not ours: cannot happen for our registration
    if (marks[page] === PAGE_PRESENT) {
      // Ask once: whoever moves it from missing owns the request.
      if (Atomics.compareExchange(state, page, STATE_MISSING, STATE_REQUESTED) === STATE_MISSING) {
        // A sibling on this host asked the page source already: the page will be installed
        // here too. Checked after the state moved to requested, which the owner reads after
        // marking a page held. Not while resolving directly: those pages reach this clone only.
        if (
          direct === undefined && hostAsked &&
          Atomics.compareExchange(hostAsked, page, 0, HOST_ASKED) === HOST_ASKED
        ) {
          continue;
        }
        (pages ??= []).push(page);
      } else if (Atomics.load(state, page) === STATE_PRESENT) {
        // Arrived before this fault was read. Installed by copying, the page is mapped and its
        // thread was woken; written to a page file, the thread may have gone to sleep after that
        // wake-up (the kernel saw no mapping yet): wake it now.
        uffdWake(uffd, base + page * pageSize, pageSize);
      } else if (direct instanceof UnicastResolver) {
        direct.noteFault(page, at); // asked for by fill(): time the fault that now waits on it
      }
    } else if (
      Atomics.compareExchange(state, page, STATE_MISSING, STATE_PRESENT) === STATE_MISSING
    ) {
      zeroRun(page);
    } else {
      uffdWake(uffd, base + page * pageSize, pageSize); // already zero-filled: just wake
    }
  }
  if (pages === undefined) return;
  if (direct !== undefined) {
    try {
      direct.request(pages, at);
      return;
    } catch (e) {
      if (direct instanceof SnapshotResolver) throw e; // a bug, not a lost connection
      dropDirect(e); // reports what the resolver owed, these pages included
      return;
    }
  }
  post({ kind: "fault", pages, at });
}

/** Zero-fill `first` (already claimed) and the missing avoided pages after it. */
function zeroRun(first: number): void {
  const { pageCount, pageSize, base, uffd } = init!;
  Atomics.add(stats, marks[first] - 1, 1);
  let end = first + 1;
  while (
    end < pageCount && end - first < ZERO_RUN && marks[end] !== PAGE_PRESENT &&
    Atomics.compareExchange(state, end, STATE_MISSING, STATE_PRESENT) === STATE_MISSING
  ) {
    Atomics.add(stats, marks[end] - 1, 1);
    end++;
  }
  let at = first;
  while (at < end) {
    const result = uffdZeropage(uffd, base + at * pageSize, (end - at) * pageSize);
    if (result.errno === 0) return;
    // EEXIST: a page is already mapped; EAGAIN: mappings changed. Go on page by page.
    at += Math.floor(result.bytes / pageSize);
    if (result.errno === Errno.EEXIST && result.bytes === 0) {
      uffdWake(uffd, base + at * pageSize, pageSize);
      at++;
    }
  }
}

function handleWriteProtect(bytes: Uint8Array, count: number): void {
  const { pageCount, pageSize, base, uffd } = init!;
  for (let i = 0; i < count; i++) {
    if (bytes[i * MSG] !== UFFD_EVENT_PAGEFAULT) continue;
    const page = pageOf(bytes, i);
    if (page < 0 || page >= pageCount) continue;
    const start = page * pageSize;
    if (flagsOf(bytes, i) & UFFD_PAGEFAULT_FLAG_WP) {
      for (const target of snapshots.values()) {
        Atomics.add(target.stats, SNAP_WP_FAULTS, 1);
        if (Atomics.load(target.saved, page) !== 0) continue;
        // The page is still protected and its writer blocked: these are clone-time contents.
        target.store.set(live.subarray(start, start + pageSize), start);
        Atomics.store(target.saved, page, 1);
        Atomics.add(target.stats, SNAP_PAGES_SAVED, 1);
      }
    }
    // Un-protect (mode 0) also wakes the writer.
    uffdWriteprotect(uffd, base + start, pageSize, 0n);
  }
}

function apply(message: ToWorker): void {
  switch (message.kind) {
    case "add":
      snapshots.set(message.id, {
        store: new Uint8Array(message.store),
        saved: new Uint8Array(message.saved),
        stats: new Int32Array(message.stats),
      });
      break;
    case "remove":
      snapshots.delete(message.id);
      break;
    case "fill":
      fill();
      break;
    case "stop":
      if (direct instanceof UnicastResolver) direct.close();
      direct = undefined;
      break;
    default:
      throw new TypeError(`Cannot apply command ${(message as ToWorker).kind}`);
  }
  knownGen = message.gen;
}

/** Install every PRESENT page still missing through the direct resolver. */
function fill(): void {
  const resolver = direct;
  if (resolver === undefined) return; // the owner fills through its page source
  if (resolver instanceof SnapshotResolver) {
    resolver.fill();
    post({ kind: "filled" });
    return;
  }
  try {
    resolver.fill();
    if (resolver.filled()) post({ kind: "filled" });
  } catch (e) {
    dropDirect(e);
  }
}

function resume(): void {
  if (Atomics.load(control, GEN) !== knownGen) return; // more commands queued
  if (stash !== undefined) {
    const batch = stash;
    stash = undefined;
    handle(batch, batch.byteLength / MSG);
  }
  serve();
}

/** The protector role (fault_protocol.ts): write-protect ranges on request, nothing else. */
function protect(message: ProtectRange): void {
  const t0 = monotonicMicros();
  let error: string | undefined;
  try {
    uffdWriteprotect(message.uffd, message.start, message.len, message.mode);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  const answer: RangeProtected = {
    kind: "protected",
    id: message.id,
    micros: monotonicMicros() - t0,
    ...(error !== undefined ? { error } : {}),
  };
  self.postMessage(answer);
}

self.onmessage = (event: MessageEvent<ToWorker | InitProtector | ProtectRange>) => {
  const message = event.data;
  if (message.kind === "protect") return protect(message);
  if (message.kind === "init-protector") return post({ kind: "ready" });
  try {
    if (message.kind === "init") {
      setUp(message);
      post({ kind: "ready" });
      resume();
      return;
    }
    apply(message);
    if (message.kind === "stop") {
      tearDown();
      post({ kind: "stopped" });
      return;
    }
    resume();
  } catch (e) {
    post({ kind: "error", message: e instanceof Error ? e.message : String(e) });
  }
};
