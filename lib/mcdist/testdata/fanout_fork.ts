/**
 * A synthetic fork for the fan-out bench and the mcdist tests: every page's contents follow
 * from its index and the fork id, so any host can check a page it received without the parent.
 *
 * @module
 */

import { PAGE_PRESENT, PAGE_ZERO } from "../../memory/page_mark.ts";
import type { ForkAccess, ServedFork } from "../../memory/transport.ts";

export interface SyntheticForkSpec {
  forkId: Uint8Array;
  key: Uint8Array;
  pageSize: number;
  pageCount: number;
  clones: number;
}

/** The clone-time contents of `page`: xorshift32 seeded by the page index and fork id. */
export function pageContent(forkId: Uint8Array, page: number, pageSize: number): Uint8Array {
  const out = new Uint8Array(pageSize);
  const words = new Uint32Array(out.buffer, 0, pageSize >> 2);
  let x = (page * 2654435761 ^ forkId[0] << 24 ^ forkId[1] << 16 ^ forkId[2] << 8 ^ forkId[3]) >>>
    0;
  x ||= 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return out;
}

/** Whether `bytes` are exactly the contents of `page`. */
export function isPageContent(
  forkId: Uint8Array,
  page: number,
  bytes: Uint8Array,
  pageSize: number,
): boolean {
  const want = pageContent(forkId, page, pageSize);
  return bytes.length === pageSize && bytes.every((b, i) => b === want[i]);
}

/** A fork whose pages are all PRESENT except every 16th (ZERO, never served). */
export function syntheticFork(spec: SyntheticForkSpec): ServedFork {
  const pageMap = new Uint8Array(spec.pageCount).fill(PAGE_PRESENT);
  for (let p = 15; p < spec.pageCount; p += 16) pageMap[p] = PAGE_ZERO;
  return {
    ...spec,
    pageMap,
    reader: {
      readPages(first: number, count: number): Uint8Array {
        const out = new Uint8Array(count * spec.pageSize);
        for (let i = 0; i < count; i++) {
          out.set(pageContent(spec.forkId, first + i, spec.pageSize), i * spec.pageSize);
        }
        return out;
      },
    },
  };
}

/** The PRESENT pages of a synthetic fork's first `count` pages: a working set. */
export function workingSet(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i).filter((p) => p % 16 !== 15);
}

export function accessOf(fork: ServedFork, server: string): ForkAccess {
  return {
    forkId: fork.forkId,
    key: fork.key,
    server,
    pageSize: fork.pageSize,
    pageCount: fork.pageCount,
  };
}
