/**
 * The memory server of one agent: the forks whose clone-time pages this host serves, behind
 * any {@link PageServer} transport (unicast here, mcdist later). It owns each fork's page
 * reader and releases it (the parent's copy-on-write snapshot) when the fork is removed.
 *
 * @module
 */

import { countMarks } from "../descriptor/page_map.ts";
import type { PageReader, PageServer, ServedFork, TransportStats } from "./transport.ts";
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
  /** Pages read from the snapshot to be sent (each time it was sent). */
  pagesServed: number;
  transport: TransportStats;
}

interface Entry {
  fork: ServeFork;
  served: { pages: number };
  present: number;
}

/** The forks served by this host. */
export class MemoryServer {
  #transport: PageServer;
  #forks = new Map<string, Entry>();

  constructor(transport: PageServer) {
    this.#transport = transport;
  }

  /** Where clones reach this server ("host:port"). */
  get address(): string {
    return this.#transport.address;
  }

  /** Start serving a fork. */
  add(fork: ServeFork): void {
    const served = { pages: 0 };
    const reader: PageReader = {
      readPages(first, count) {
        served.pages += count;
        return fork.reader.readPages(first, count);
      },
    };
    this.#forks.set(toHex(fork.forkId), {
      fork,
      served,
      present: countMarks(fork.pageMap).present,
    });
    this.#transport.addFork({ ...fork, reader });
  }

  /** Stop serving a fork (its last clone is gone) and release its pages. Idempotent. */
  async remove(forkId: Uint8Array): Promise<void> {
    const id = toHex(forkId);
    const entry = this.#forks.get(id);
    if (entry === undefined) return;
    this.#forks.delete(id);
    this.#transport.removeFork(forkId);
    await entry.fork.release();
  }

  /** Figures of a fork still served, else undefined. */
  stats(forkId: Uint8Array): ForkServeStats | undefined {
    const entry = this.#forks.get(toHex(forkId));
    if (entry === undefined) return undefined;
    return {
      pages: entry.fork.pageCount,
      pagesPresent: entry.present,
      pagesServed: entry.served.pages,
      transport: this.#transport.stats(forkId),
    };
  }

  /** Remove every fork and close the transport. */
  async close(): Promise<void> {
    await Promise.all([...this.#forks.values()].map((e) => this.remove(e.fork.forkId)));
    await this.#transport.close();
  }
}
