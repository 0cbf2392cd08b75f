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
export const STAT_SLOTS = 5;

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

/** Lazy memory: resolve missing faults (zero pages locally, others asked for). */
export interface InitMemtap extends InitCommon {
  role: "memtap";
  /** Uint8Array(pageCount) of page marks. */
  marks: SharedArrayBuffer;
  /** Uint8Array(pageCount): 0 missing, 1 requested, 2 present. */
  state: SharedArrayBuffer;
  /** Int32Array(STAT_SLOTS). */
  stats: SharedArrayBuffer;
}

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

/** Leave the serve loop for good and answer "stopped". */
export interface StopWorker {
  kind: "stop";
  gen: number;
}

/** Owner → worker. */
export type ToWorker = InitMemtap | InitSnapshot | AddSnapshot | RemoveSnapshot | StopWorker;

/** Worker → owner. */
export type FromWorker =
  | { kind: "ready" }
  | { kind: "stopped" }
  | { kind: "error"; message: string }
  /** Missing PRESENT pages, each newly marked requested; `at` = monotonicMicros() of the read. */
  | { kind: "fault"; pages: number[]; at: number };

/** memtap page states. */
export const STATE_MISSING = 0;
/** Asked for (memtap) or being zero-filled (worker). */
export const STATE_REQUESTED = 1;
/** Installed. */
export const STATE_PRESENT = 2;
