/**
 * The seam between a fork's memory server (parent host) and the memtaps of its
 * clones (other hosts): pages go one way, requests the other. Implemented by
 * unicast (lib/memory/unicast/) and multicast (lib/mcdist/); the control plane
 * never carries pages.
 */

import type { SharedPages } from "./shared_pages.ts";

/** Reads the clone-time contents of a fork's pages (a Snapshot, or a saved checkpoint). */
export interface PageReader {
  /** `count` pages from `first`, contiguous, `count * pageSize` bytes. */
  readPages(first: number, count: number): Uint8Array;
  /**
   * The same pages in shared memory, for a server thread of this process (sharePages() in
   * shared_pages.ts makes them from any reader).
   */
  readonly shared?: SharedPages;
}

/** One fork as its memory server knows it. */
export interface ServedFork {
  /** 16 bytes, from the descriptor. */
  forkId: Uint8Array;
  /** 32 bytes, from the descriptor: only holders may read the fork's pages. */
  key: Uint8Array;
  pageSize: number;
  pageCount: number;
  /** One PageMark per page; only PRESENT pages are ever served. */
  pageMap: Uint8Array;
  reader: PageReader;
  /** How many clones will ask (flow control, end game). */
  clones: number;
}

/** Counters every transport keeps, per fork and in total. */
export interface TransportStats {
  bytesSent: number;
  packetsSent: number;
  bytesReceived: number;
  packetsReceived: number;
  /** Requests sent again after a timeout (client) or pages sent again (server). */
  retransmits: number;
  /** Malformed, stale, replayed or forged packets dropped. */
  rejected: number;
  /** Bytes that went to a multicast group (the rest went unicast). */
  multicastBytes: number;
}

/** The parent host's side: one per agent, serving any number of forks. */
export interface PageServer {
  /** Where clones reach it ("host:port"); goes in the descriptor as the memory server. */
  readonly address: string;
  addFork(fork: ServedFork): void;
  /**
   * Stops serving a fork (its last clone is gone); later requests for it are rejected. A
   * returned promise settles once no thread reads the fork's pages any more: only then may
   * its reader be released.
   */
  removeFork(forkId: Uint8Array): void | Promise<void>;
  stats(forkId?: Uint8Array): TransportStats;
  close(): Promise<void>;
}

/** A transport that can also send pages before anybody asks for them (mcdist). */
export interface PushingPageServer extends PageServer {
  /** Sends `pages` (most likely first) to the fork's clones while they are idle. */
  pushPages(forkId: Uint8Array, pages: number[]): void;
  /** The fork's pages in the order its clones first asked for them. */
  demandOrder(forkId: Uint8Array): number[];
  /** Pages of the fork sent before anybody asked (pushed or read ahead). */
  pagesPushed(forkId: Uint8Array): number;
}

/** What a clone host needs to reach a fork's pages. */
export interface ForkAccess {
  forkId: Uint8Array;
  key: Uint8Array;
  /** The memory server's "host:port", from the descriptor. */
  server: string;
  pageSize: number;
  pageCount: number;
}

/** The clone host's side: one per fork per host, shared by that host's clones of the fork. */
export interface PageClient {
  /** Asks for pages (deduplicated and batched by the client); they arrive via onPages. */
  request(pages: number[]): void;
  /**
   * Every page run that arrives, asked for or not (a sibling's request is our prefetch). The
   * bytes are the transport's buffer, valid during the call only: copy what is kept.
   */
  onPages(listener: (firstPage: number, bytes: Uint8Array) => void): void;
  /** Settles with an error when the server stopped answering after retries. */
  readonly failed: Promise<Error>;
  stats(): TransportStats;
  close(): Promise<void>;
}

export function emptyStats(): TransportStats {
  return {
    bytesSent: 0,
    packetsSent: 0,
    bytesReceived: 0,
    packetsReceived: 0,
    retransmits: 0,
    rejected: 0,
    multicastBytes: 0,
  };
}
