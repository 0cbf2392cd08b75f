/**
 * Messages and shared-memory layout between a fault worker (fault_worker.ts) and its owner on
 * the main thread (fault_worker_handle.ts).
 *
 * Commands: the owner posts a command carrying `gen`, then stores `gen` in `control[GEN]` and
 * writes the eventfd. The worker, blocked in poll() or reading faults, sees `control[GEN]` move,
 * returns to its event loop, applies commands until its generation matches, then serves again.
 * Faults read in the same batch as a generation change are handled after the command, so a
 * snapshot added before its pages are write-protected never misses a fault.
 *
 * @module
 */

/** control[GEN]: generation of the newest command posted to the worker. */
export const GEN = 0;
/** Int32 slots in the control array. */
export const CONTROL_SLOTS = 1;

/** memtap stats slot: page-fault messages read. */
export const STAT_FAULTS = 0;
/** memtap stats slots 1..4: pages installed as zero for marks 2..5 (slot = mark - 1). */
/** memtap stats slot 5: PRESENT pages the worker installed itself (direct resolution). */
export const STAT_FETCHED = 5;
/** Int32 slots in a memtap's stats array. */
export const STAT_SLOTS = 6;

/** memtap timing slots (Float64Array, written by the worker only): faults timed. */
export const TIME_COUNT = 0;
/** Sum of fault service times (µs). */
export const TIME_STALLED_US = 1;
/** Bytes and frames the worker received / sent over its own connection. */
export const TIME_BYTES_RX = 2;
export const TIME_BYTES_TX = 3;
export const TIME_PACKETS_RX = 4;
export const TIME_PACKETS_TX = 5;
/** Frames rejected (bad MAC, out of order). */
export const TIME_REJECTED = 6;
/** First slot of the latency ring (fault read → page installed, µs). */
export const TIME_RING = 8;
/** Latencies kept in the ring. */
export const LATENCY_RING = 65536;
/** Float64 slots in a memtap's timing array. */
export const TIME_SLOTS = TIME_RING + LATENCY_RING;

/** snapshot stats slot: write-protect faults seen while the snapshot was active. */
export const SNAP_WP_FAULTS = 0;
/** snapshot stats slot: pages copied into the snapshot's store. */
export const SNAP_PAGES_SAVED = 1;
/** Int32 slots in a snapshot's stats array. */
export const SNAP_STAT_SLOTS = 2;

/** Fields common to both roles. */
export interface InitCommon {
  kind: "init";
  uffd: number;
  efd: number;
  /** Address of page 0 of the registered range. */
  base: number;
  pageSize: number;
  pageCount: number;
  control: SharedArrayBuffer;
}

/**
 * PRESENT pages resolved by the worker itself from a snapshot in this process: the parent's live
 * memory, unless the snapshot saved the page before the parent's first write (snapshot.ts).
 */
export interface DirectSnapshot {
  kind: "snapshot";
  live: SharedArrayBuffer;
  store: SharedArrayBuffer;
  /** Uint8Array(pages): 1 once the page is in `store`. */
  saved: SharedArrayBuffer;
}

/** PRESENT pages fetched by the worker itself over its own unicast connection (WIRE.md). */
export interface DirectUnicast {
  kind: "unicast";
  ipv4: string;
  port: number;
  forkId: Uint8Array;
  key: Uint8Array;
  /** Nothing heard this long with pages outstanding: give up and fall back. */
  idleTimeoutMs: number;
}

/** Lazy memory: resolve missing faults (zero pages locally, others asked for). */
export interface InitMemtap extends InitCommon {
  role: "memtap";
  /** Uint8Array(pageCount) of page marks. */
  marks: SharedArrayBuffer;
  /** Uint8Array(pageCount): 0 missing, 1 requested, 2 present. */
  state: SharedArrayBuffer;
  /** Int32Array(STAT_SLOTS). */
  stats: SharedArrayBuffer;
  /** Float64Array(TIME_SLOTS). */
  timing: SharedArrayBuffer;
  /** Resolve PRESENT pages in the worker; absent: report them to the owner ("fault"). */
  direct?: DirectSnapshot | DirectUnicast;
  /**
   * Uint8Array(pageCount) shared by every clone of the fork on this host (ForkPages): 0 nobody
   * asked, {@link HOST_ASKED} a clone's fault was reported and the page is on its way (it will be
   * installed into every clone: a fault on it is not reported again), {@link HOST_HELD} the host
   * holds it (a fault is reported, and answered from the host).
   */
  hostAsked?: SharedArrayBuffer;
}

export const HOST_ASKED = 1;
export const HOST_HELD = 2;

/** Copy-on-write: save then un-protect write-protected pages. */
export interface InitSnapshot extends InitCommon {
  role: "snapshot";
  /** The live memory (the registered range starts at its first byte). */
  memory: SharedArrayBuffer;
}

/** Start serving a snapshot: save pages into `store` and mark them in `saved`. */
export interface AddSnapshot {
  kind: "add";
  gen: number;
  id: number;
  store: SharedArrayBuffer;
  saved: SharedArrayBuffer;
  stats: SharedArrayBuffer;
}

/** Stop saving pages for snapshot `id`. */
export interface RemoveSnapshot {
  kind: "remove";
  gen: number;
  id: number;
}

/** Install every PRESENT page still missing (direct resolution only), then answer "filled". */
export interface FillMemory {
  kind: "fill";
  gen: number;
}

/**
 * End the session: leave the serve loop, forget the memory, answer "stopped"; the worker then
 * waits for another "init" (its owner may hand it to the next memtap or snapshot).
 */
export interface StopWorker {
  kind: "stop";
  gen: number;
}

/**
 * A worker that only write-protects ranges for snapshots (write_tracker.ts), so the main thread
 * is free (e.g. to talk to the master) while a big parent memory is being protected. It answers
 * every {@link ProtectRange} with {@link RangeProtected}, in order.
 */
export interface InitProtector {
  kind: "init-protector";
}

/** UFFDIO_WRITEPROTECT [start, start+len) of `uffd` with `mode`. */
export interface ProtectRange {
  kind: "protect";
  id: number;
  uffd: number;
  start: number;
  len: number;
  mode: bigint;
}

/** Answer to a {@link ProtectRange}; `error` is set when the ioctl failed. */
export interface RangeProtected {
  kind: "protected";
  id: number;
  micros: number;
  error?: string;
}

/** Owner → worker. */
export type ToWorker =
  | InitMemtap
  | InitSnapshot
  | AddSnapshot
  | RemoveSnapshot
  | FillMemory
  | StopWorker;

/** Worker → owner. */
export type FromWorker =
  | { kind: "ready" }
  | { kind: "stopped" }
  | { kind: "error"; message: string }
  /** Missing PRESENT pages, each newly marked requested; `at` = monotonicMicros() of the read. */
  | { kind: "fault"; pages: number[]; at: number }
  /** Every PRESENT page is installed (answer to "fill"). */
  | { kind: "filled" }
  /**
   * Direct resolution stopped (connection lost, bad frame, silence): the worker reports every
   * page it still owed as a "fault" right after, and from now on reports faults to the owner.
   */
  | { kind: "direct-failed"; message: string };

/** memtap page states. */
export const STATE_MISSING = 0;
/** Asked for (memtap) or being zero-filled (worker). */
export const STATE_REQUESTED = 1;
/** Installed. */
export const STATE_PRESENT = 2;
