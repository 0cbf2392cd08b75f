/**
 * The clone side of one fork on one host: one page client shared by every local clone of the
 * fork. Any page that arrives (asked for by one clone, or pushed) is installed into every local
 * memtap that still lacks it, so siblings on a host never fetch a page twice.
 *
 * @module
 */

import type { Memtap, PageSource } from "./memtap.ts";
import type { PageClient } from "./transport.ts";

/** A fork's page client and the memtaps it feeds. */
export class ForkPages {
  #client: PageClient;
  #memtaps = new Set<Memtap>();

  constructor(client: PageClient) {
    this.#client = client;
    client.onPages((first, bytes) => {
      for (const memtap of this.#memtaps) memtap.install(first, bytes);
    });
  }

  /** The transport client (statistics, failure). */
  get client(): PageClient {
    return this.#client;
  }

  /** What a memtap asks. */
  readonly source: PageSource = { request: (pages) => this.#client.request(pages) };

  /** Feed arriving pages to `memtap` until {@link detach}. */
  attach(memtap: Memtap): void {
    this.#memtaps.add(memtap);
  }

  /** Stop feeding `memtap` (before closing it); true when no memtap is left. */
  detach(memtap: Memtap): boolean {
    this.#memtaps.delete(memtap);
    return this.#memtaps.size === 0;
  }
}
