/**
 * The clone side of one fork on one host: one page client shared by every local clone of the
 * fork. Any page that arrives (asked for by one clone, or pushed) is installed into every local
 * memtap that still lacks it, and kept: a clone that starts later, or faults after its siblings,
 * gets the page from this host instead of asking the memory server again, so a host fetches each
 * page once whenever its clones start.
 *
 * @module
 */

import type { Memtap, PageSource } from "./memtap.ts";
import type { PageClient } from "./transport.ts";

/** Memtap's only page size. */
const PAGE_BYTES = 4096;

/** A fork's page client, the pages it brought, and the memtaps it feeds. */
export class ForkPages {
  #client: PageClient;
  #memtaps = new Set<Memtap>();
  /** Page number → its clone-time contents (views of what arrived; nothing is copied). */
  #received = new Map<number, Uint8Array>();

  constructor(client: PageClient) {
    this.#client = client;
    client.onPages((first, bytes) => {
      for (let i = 0; i * PAGE_BYTES < bytes.byteLength; i++) {
        this.#received.set(first + i, bytes.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES));
      }
      this.#installEverywhere(first, bytes);
    });
  }

  /** The transport client (statistics, failure). */
  get client(): PageClient {
    return this.#client;
  }

  /** Pages this host holds. */
  get pagesHeld(): number {
    return this.#received.size;
  }

  /** What a memtap asks: pages this host already holds are installed at once, the rest fetched. */
  readonly source: PageSource = {
    request: (pages) => {
      const missing: number[] = [];
      for (const page of pages) {
        const bytes = this.#received.get(page);
        if (bytes === undefined) missing.push(page);
        else this.#installEverywhere(page, bytes);
      }
      if (missing.length > 0) this.#client.request(missing);
    },
  };

  /** Feed arriving pages to `memtap` until {@link detach}. */
  attach(memtap: Memtap): void {
    this.#memtaps.add(memtap);
  }

  /** Stop feeding `memtap` (before closing it). */
  detach(memtap: Memtap): void {
    this.#memtaps.delete(memtap);
  }

  #installEverywhere(first: number, bytes: Uint8Array): void {
    for (const memtap of this.#memtaps) memtap.install(first, bytes);
  }
}
