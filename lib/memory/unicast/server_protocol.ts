/**
 * Messages and shared-memory layout between the unicast page server (server.ts, main thread)
 * and its worker (server_worker.ts), which owns every connection.
 *
 * Commands follow fault_protocol.ts: the owner posts a command carrying `gen`, stores `gen` in
 * `control[GEN]` and writes the eventfd. The worker, blocked in poll(), wakes, returns to its
 * event loop, applies commands until its generation matches, then serves again. A hello for a
 * fork the worker does not know yet while commands are pending waits for them, so a fork added
 * before its descriptor left is never refused.
 *
 * @module
 */

import type { SharedPages } from "../shared_pages.ts";
import type { TransportStats } from "../transport.ts";

/** control[GEN]: generation of the newest command posted to the worker. */
export const GEN = 0;
/**
 * control[MAC_CONTEXTS]: cipher contexts the worker holds (two per authenticated connection),
 * written by the worker whenever a session starts or ends; a leak shows as a count that grows.
 */
export const MAC_CONTEXTS = 1;
/** Int32 slots in the control array. */
export const CONTROL_SLOTS = 2;

/**
 * Float64 slots of a stats array (per fork, and one for the total), in this order; written by
 * the worker only, read by the owner.
 */
export const STAT_KEYS = [
  "bytesSent",
  "packetsSent",
  "bytesReceived",
  "packetsReceived",
  "retransmits",
  "rejected",
  "multicastBytes",
] as const satisfies readonly (keyof TransportStats)[];
export const STAT_BYTES_SENT = 0;
export const STAT_PACKETS_SENT = 1;
export const STAT_BYTES_RECEIVED = 2;
export const STAT_PACKETS_RECEIVED = 3;
export const STAT_REJECTED = 5;
/** Float64 slots in a stats array. */
export const STAT_SLOTS = STAT_KEYS.length;

/** First message: the listening socket (owned by the owner) and where to count. */
export interface InitServer {
  kind: "init";
  listenFd: number;
  efd: number;
  control: SharedArrayBuffer;
  /** Float64Array(STAT_SLOTS): every connection, known fork or not. */
  total: SharedArrayBuffer;
}

/** Serve a fork. */
export interface AddFork {
  kind: "add";
  gen: number;
  forkId: Uint8Array;
  key: Uint8Array;
  pageSize: number;
  pageCount: number;
  pageMap: Uint8Array;
  pages: SharedPages;
  /** Float64Array(STAT_SLOTS) of this fork. */
  stats: SharedArrayBuffer;
}

/** Stop serving a fork: close its connections, forget its key, read none of its pages. */
export interface RemoveFork {
  kind: "remove";
  gen: number;
  forkId: Uint8Array;
}

/** Close every connection and stop; the owner then closes the listening socket. */
export interface CloseServer {
  kind: "close";
  gen: number;
}

/** Owner → worker. */
export type ToServerWorker = InitServer | AddFork | RemoveFork | CloseServer;

/** Worker → owner. */
export type FromServerWorker =
  /** Commands up to `gen` are applied (a removed fork's pages are no longer read). */
  | { kind: "applied"; gen: number }
  | { kind: "error"; message: string };
