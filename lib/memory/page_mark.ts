/**
 * Page-map marks: one byte per 4 KiB page of a fork's memory, shared by the snapshot (which
 * computes them), the descriptor (which carries them) and memtap (which obeys them).
 *
 * Only PRESENT pages are ever fetched from the parent; every other mark is installed locally as a
 * zero page (avoidance heuristics).
 *
 * @module
 */

/** Fetch this page from the page source. */
export const PAGE_PRESENT = 1;
/** The page was all zeros at fork time. */
export const PAGE_ZERO = 2;
/** The page lies above the guest's heap top: never touched. */
export const PAGE_UNTOUCHED = 3;
/** The guest hinted that it will overwrite the page (e.g. a buffer about to be filled). */
export const PAGE_HINTED = 4;
/** The guest's allocator reports the page free. */
export const PAGE_FREE = 5;

/** True for a mark memtap understands. */
export function isPageMark(mark: number): boolean {
  return mark >= PAGE_PRESENT && mark <= PAGE_FREE;
}
