/**
 * A fork's clone-time pages in shared memory, readable from any thread of this process: the
 * unicast memory server's worker (unicast/server_worker.ts) serves them, and a local clone's
 * fault worker (fault_direct.ts) installs them, without waiting for the main thread.
 *
 * Two sources: a {@link Snapshot}'s own buffers (the parent's live memory, read with the
 * read-then-recheck rule of snapshot.ts), or an image: a copy of the PRESENT pages of any other
 * {@link PageReader} (a checkpoint's bytes, the Xen backend's captured pages), made once when the
 * fork is shared.
 *
 * @module
 */

import type { DirectSnapshot } from "./fault_protocol.ts";
import { PAGE_PRESENT } from "./page_mark.ts";
import { Snapshot } from "./snapshot.ts";
import type { PageReader } from "./transport.ts";

/** A copy of a fork's PRESENT pages, page p at p × page size; the other pages stay zero. */
export interface SharedImage {
  kind: "image";
  bytes: SharedArrayBuffer;
}

/** Where the pages are. */
export type SharedPageSource = DirectSnapshot | SharedImage;

/** A fork's pages for another thread, and a count of pages read by every thread. */
export interface SharedPages {
  source: SharedPageSource;
  /** BigInt64Array(1), updated with Atomics: pages read to be sent, by whichever thread. */
  read: SharedArrayBuffer;
}

/** Most pages copied per readPages call while making an image (bounds the temporary copy). */
const IMAGE_RUN = 64;

/**
 * The pages of `reader` in shared memory: its own when it has them (`shared`, a Snapshot),
 * else an image of its PRESENT pages (untouched pages of a fresh SharedArrayBuffer cost no
 * memory, so the copy costs what the PRESENT pages do).
 */
export function sharePages(
  reader: PageReader,
  pageMap: Uint8Array,
  pageSize: number,
): SharedPages {
  if (reader.shared !== undefined) return reader.shared;
  const read = new SharedArrayBuffer(8);
  if (reader instanceof Snapshot) {
    return { source: { kind: "snapshot", ...reader.sharedBuffers() }, read };
  }
  const bytes = new SharedArrayBuffer(pageMap.length * pageSize);
  const image = new Uint8Array(bytes);
  let page = 0;
  while (page < pageMap.length) {
    if (pageMap[page] !== PAGE_PRESENT) {
      page++;
      continue;
    }
    const first = page;
    while (page < pageMap.length && pageMap[page] === PAGE_PRESENT && page - first < IMAGE_RUN) {
      page++;
    }
    image.set(reader.readPages(first, page - first), first * pageSize);
  }
  return { source: { kind: "image", bytes }, read };
}

/** Reads shared pages as they were at clone time, on any thread. */
export class SharedPageReader {
  #pageSize: number;
  #live: Uint8Array;
  #store: Uint8Array | undefined;
  #saved: Uint8Array | undefined;

  /** Throws RangeError if the source holds fewer than `pageCount` pages. */
  constructor(source: SharedPageSource, pageSize: number, pageCount: number) {
    this.#pageSize = pageSize;
    if (source.kind === "snapshot") {
      this.#live = new Uint8Array(source.live);
      this.#store = new Uint8Array(source.store);
      this.#saved = new Uint8Array(source.saved);
    } else {
      this.#live = new Uint8Array(source.bytes);
    }
    if (this.#live.byteLength < pageCount * pageSize) {
      throw new RangeError(
        `Cannot read shared pages: ${this.#live.byteLength} bytes hold fewer than ${pageCount} pages`,
      );
    }
  }

  /** Pages `first…first+count-1` into `out` (exactly `count` pages long). */
  read(first: number, count: number, out: Uint8Array): void {
    const ps = this.#pageSize;
    out.set(this.#live.subarray(first * ps, (first + count) * ps));
    const saved = this.#saved;
    if (saved === undefined) return;
    // snapshot.ts: a page whose saved flag is set after the live copy may have been written
    // since; its clone-time contents are in the store (copied there before the flag was set).
    for (let k = 0; k < count; k++) {
      const page = first + k;
      if (Atomics.load(saved, page) !== 0) {
        out.set(this.#store!.subarray(page * ps, (page + 1) * ps), k * ps);
      }
    }
  }
}
