/**
 * Which pages of a guest memory were never populated, for the "untouched" heuristic: such a page
 * reads as zero, so its clones install a zero page and nobody has to read it (not even the zero
 * scan, which would populate it).
 *
 * Why "not resident" (mincore(2)) means "all zero at fork time", even when asked after the
 * parent resumed: guest memory is private anonymous memory that nothing discards (Wasm cannot,
 * and the memory of a clone is complete before it forks), so a page goes from not resident to
 * resident only, and a page that is not resident has never been written. Userfaultfd
 * write-protect markers on unpopulated pages count as not resident, as they should. The one
 * exception is swap: a page swapped out (and out of the swap cache) is not resident yet holds
 * data, so with swap active every page counts as touched.
 *
 * @module
 */

import { addressOf, mincore } from "../../native/libc.ts";

/**
 * One flag per page of `buffer` (its whole length): 1 where the page was never populated. All 0
 * when swap is active (see the module doc) or the page size is not the kernel's.
 */
export function untouchedPages(buffer: SharedArrayBuffer, pageSize: number): Uint8Array {
  const pageCount = Math.floor(buffer.byteLength / pageSize);
  const untouched = new Uint8Array(pageCount);
  if (pageSize !== 4096 || swapActive()) return untouched;
  // The buffer is mapped for its whole length while it is alive (it is, as our argument).
  mincore(addressOf(buffer), pageSize, untouched);
  for (let p = 0; p < pageCount; p++) untouched[p] = (untouched[p] & 1) ^ 1;
  return untouched;
}

/** Whether any swap area is in use (/proc/swaps lists more than its header); unsure = yes. */
export function swapActive(): boolean {
  try {
    return Deno.readTextFileSync("/proc/swaps").trim().split("\n").length > 1;
  } catch {
    return true;
  }
}
