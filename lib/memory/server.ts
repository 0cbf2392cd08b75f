/**
 * The memory server of one agent: the forks whose clone-time pages this host serves, behind
 * its {@link PageServer} transports: unicast (TCP, for clones on this host and as the fallback)
 * and, where enabled, mcdist (multicast, for clones on other hosts). It owns each fork's page
 * reader and releases it (the parent's copy-on-write snapshot) when the fork is removed.
 *
 * @module
 */

import { countMarks } from "../descriptor/page_map.ts";
import {
  emptyStats,
  type PageReader,
  type PageServer,
  type PushingPageServer,
  type ServedFork,
  type TransportStats,
} from "./transport.ts";
import { sharePages } from "./shared_pages.ts";
import { toHex } from "../backend/wasm/fork_descriptor.ts";

/** A fork to serve, and how to free what backs it. */
export interface ServeFork extends Omit<ServedFork, "reader"> {
  reader: PageReader;
  /** Frees the pages' backing store (e.g. Snapshot.release). */
  release(): Promise<void>;
}

/** What the memory server did for one fork. */
export interface ForkServeStats {
  pages: number;
  pagesPresent: number;
  /** Pages read from the snapshot to be sent (each time it was sent), by any thread. */
  pagesServed: number;
  /** Pages sent before any clone asked (mcdist push and read-ahead). */
  pagesPushed: number;
  transport: TransportStats;
}

interface Entry {
  fork: ServeFork;
  /** BigInt64Array(1): SharedPages.read, pages read by every transport and thread. */
  served: BigInt64Array;
  present: number;
}

/** The forks served by this host. */
export class MemoryServer {
  #unicast: PageServer;
  #multicast: PushingPageServer | undefined;
  #forks = new Map<string, Entry>();

  constructor(unicast: PageServer, multicast?: PushingPageServer) {
    this.#unicast = unicast;
    this.#multicast = multicast;
  }

  #transports(): PageServer[] {
    return this.#multicast ? [this.#unicast, this.#multicast] : [this.#unicast];
  }

  /** Where clones reach the unicast server ("host:port"); goes in the descriptor. */
  get address(): string {
    return this.#unicast.address;
  }

  /** Where clones on other hosts reach the multicast server, when there is one. */
  get multicastAddress(): string | undefined {
    return this.#multicast?.address;
  }

  /**
   * Start serving a fork. Its pages are shared with the transports' threads: a Snapshot's own
   * buffers, else a copy of the PRESENT pages (see shared_pages.ts).
   */
  add(fork: ServeFork): void {
    const shared = sharePages(fork.reader, fork.pageMap, fork.pageSize);
    const served = new BigInt64Array(shared.read);
    const reader: PageReader = {
      readPages(first, count) {
        Atomics.add(served, 0, BigInt(count));
        return fork.reader.readPages(first, count);
      },
      shared,
    };
    this.#forks.set(toHex(fork.forkId), {
      fork,
      served,
      present: countMarks(fork.pageMap).present,
    });
    for (const t of this.#transports()) t.addFork({ ...fork, reader });
  }

  /** The fork's pages in the order clones on other hosts first asked for them (mcdist). */
  demandOrder(forkId: Uint8Array): number[] {
    return this.#forks.has(toHex(forkId)) ? this.#multicast?.demandOrder(forkId) ?? [] : [];
  }

  /** Streams `pages` to the fork's clones on other hosts while they are idle (mcdist). */
  push(forkId: Uint8Array, pages: number[]): void {
    if (pages.length > 0 && this.#forks.has(toHex(forkId))) {
      this.#multicast?.pushPages(forkId, pages);
    }
  }

  /** Stop serving a fork (its last clone is gone) and release its pages. Idempotent. */
  async remove(forkId: Uint8Array): Promise<void> {
    const id = toHex(forkId);
    const entry = this.#forks.get(id);
    if (entry === undefined) return;
    this.#forks.delete(id);
    // Released only once no transport thread reads the pages any more.
    await Promise.all(this.#transports().map((t) => t.removeFork(forkId)));
    await entry.fork.release();
  }

  /** Figures of a fork still served, else undefined. */
  stats(forkId: Uint8Array): ForkServeStats | undefined {
    const entry = this.#forks.get(toHex(forkId));
    if (entry === undefined) return undefined;
    return {
      pages: entry.fork.pageCount,
      pagesPresent: entry.present,
      pagesServed: Number(Atomics.load(entry.served, 0)),
      pagesPushed: this.#multicast?.pagesPushed(forkId) ?? 0,
      transport: this.#transports().map((t) => t.stats(forkId)).reduce(addStats, emptyStats()),
    };
  }

  /** Remove every fork and close the transport. */
  async close(): Promise<void> {
    await Promise.all([...this.#forks.values()].map((e) => this.remove(e.fork.forkId)));
    await Promise.all(this.#transports().map((t) => t.close()));
  }
}

function addStats(a: TransportStats, b: TransportStats): TransportStats {
  const sum = { ...a };
  for (const k of Object.keys(sum) as (keyof TransportStats)[]) sum[k] += b[k];
  return sum;
}
