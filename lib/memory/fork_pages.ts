/**
 * The clone side of one fork on one host: one page client shared by every local clone of the
 * fork. Any page that arrives (asked for by one clone, or pushed) is installed into every local
 * memtap that still lacks it, and kept: a clone that starts later, or faults after its siblings,
 * gets the page from this host instead of asking the memory server again, so a host fetches each
 * page once whenever its clones start. What arrived is copied into one store of the fork's size
 * (memory is taken only as pages are written): the transport's buffers are reused.
 *
 * With `pageFile`, the store is a memory file (page_file.ts) that the memtaps map over their
 * clones' memories: a page is then written once for all of them, not copied into each.
 *
 * @module
 */

import { HOST_ASKED, HOST_HELD } from "./fault_protocol.ts";
import { releasePages } from "./release_pages.ts";
import type { Memtap, PageSource } from "./memtap.ts";
import { PageFile } from "./page_file.ts";
import type { PageClient } from "./transport.ts";
import { OS_PAGE } from "../../native/libc.ts";

/** A fork's page client, the pages it brought, and the memtaps it feeds. */
export class ForkPages {
  #client: PageClient;
  #memtaps = new Set<Memtap>();
  /** Clone-time contents of the pages that arrived, at page × 4 KiB (without a page file). */
  #store: Uint8Array;
  /** The store as a file the memtaps map (open them with it as `backing`), if there is one. */
  readonly pageFile: PageFile | undefined;
  /**
   * Per page, shared with the clones' fault workers: asked for (HOST_ASKED), in the store
   * (HOST_HELD), or neither.
   */
  readonly asked: Uint8Array;
  #heldCount = 0;
  /** Why an arriving page could not be kept, once one could not. */
  #cannotKeep: Error | undefined;

  constructor(client: PageClient, pageCount: number, options: { pageFile?: boolean } = {}) {
    this.#client = client;
    this.pageFile = options.pageFile ? pageFileOrNone(pageCount) : undefined;
    this.#store = new Uint8Array(this.pageFile ? 0 : pageCount * OS_PAGE);
    this.asked = new Uint8Array(new SharedArrayBuffer(pageCount));
    client.onPages((first, bytes) => {
      let kept = bytes.byteLength / OS_PAGE;
      for (let i = 0; i < kept; i++) {
        // Held before installing: a fault worker that still sees HOST_ASKED afterwards has
        // already marked its page requested, so the install below reaches its clone.
        const before = Atomics.exchange(this.asked, first + i, HOST_HELD);
        if (before === HOST_HELD) continue;
        try {
          this.#keep(first + i, bytes.subarray(i * OS_PAGE, (i + 1) * OS_PAGE));
        } catch (error) {
          // Not held after all (e.g. no memory for the page file): nothing from here on is
          // installed, and the clones' next ask fails with the reason.
          Atomics.store(this.asked, first + i, before);
          this.#cannotKeep ??= error as Error;
          kept = i;
          break;
        }
        this.#heldCount++;
      }
      this.#installEverywhere(first, kept);
    });
  }

  /** The transport client (statistics, failure). */
  get client(): PageClient {
    return this.#client;
  }

  /** Pages this host holds. */
  get pagesHeld(): number {
    return this.#heldCount;
  }

  /** What a memtap asks: pages this host already holds are installed at once, the rest fetched. */
  readonly source: PageSource = {
    request: (pages) => {
      if (this.#cannotKeep) {
        throw new Error(`Cannot keep the fork's pages on this host: ${this.#cannotKeep.message}`, {
          cause: this.#cannotKeep,
        });
      }
      const missing: number[] = [];
      for (const page of pages) {
        if (this.asked[page] !== HOST_HELD) missing.push(page);
        else this.#installEverywhere(page, 1);
      }
      if (missing.length > 0) this.#client.request(missing);
    },
  };

  /**
   * Feed arriving pages to `memtap` until {@link detach}, starting with those this host holds
   * already: a clone made after its siblings got going would otherwise fault on each of them,
   * one round trip to this thread at a time.
   */
  attach(memtap: Memtap): void {
    this.#memtaps.add(memtap);
    let first = -1;
    for (let page = 0; page <= this.asked.length; page++) {
      const held = page < this.asked.length && this.asked[page] === HOST_HELD;
      if (held && first < 0) first = page;
      if (held || first < 0) continue;
      this.#install(memtap, first, page - first);
      first = -1;
    }
  }

  /** Stop feeding `memtap` (before closing it). */
  detach(memtap: Memtap): void {
    this.#memtaps.delete(memtap);
  }

  /**
   * Asks again for every page a clone asked for that has not arrived. Call after a memtap
   * closed: clones do not report faults on pages a sibling asked for, and a clone that goes may
   * take with it a report that never reached the page source.
   */
  askAgain(): void {
    if (this.#memtaps.size === 0) return; // nobody waits
    const pages: number[] = [];
    for (let page = 0; page < this.asked.length; page++) {
      if (Atomics.load(this.asked, page) === HOST_ASKED) pages.push(page);
    }
    if (pages.length > 0) this.#client.request(pages);
  }

  /**
   * Closes the client and gives the store's memory back at once, not when the garbage collector
   * gets to it. Call when no clone of the fork is left on this host.
   */
  async close(): Promise<void> {
    await this.#client.close();
    this.#memtaps.clear();
    if (this.pageFile) this.pageFile.close();
    else releasePages(this.#store.buffer);
  }

  #keep(page: number, bytes: Uint8Array): void {
    if (this.pageFile) this.pageFile.write(page, bytes);
    else this.#store.set(bytes, page * OS_PAGE);
  }

  #installEverywhere(first: number, count: number): void {
    for (const memtap of this.#memtaps) this.#install(memtap, first, count);
  }

  /** Gives `memtap` held pages: copied in, or only told about when it maps the page file. */
  #install(memtap: Memtap, first: number, count: number): void {
    if (this.pageFile) memtap.mapped(first, count);
    else {
      memtap.install(first, this.#store.subarray(first * OS_PAGE, (first + count) * OS_PAGE));
    }
  }
}

/** A page file, or none where memory files cannot be made or mapped: clones then get copies. */
function pageFileOrNone(pageCount: number): PageFile | undefined {
  try {
    return PageFile.create(pageCount);
  } catch {
    return undefined;
  }
}
