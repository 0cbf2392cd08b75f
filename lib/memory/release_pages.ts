/**
 * Giving a memory's pages back to the kernel while its buffer lives on (until every isolate
 * that holds it has collected its garbage).
 *
 * @module
 */

import { addressOf, MADV_DONTNEED, madvise, OS_PAGE } from "../../native/libc.ts";

/**
 * Drops the pages wholly inside `buffer` (MADV_DONTNEED): their memory is freed now, and they
 * read as zeros from then on. Only for a buffer nobody reads or writes any more, or one meant
 * to be empty. A buffer from the allocator need not start on a page: its partial first and
 * last pages are left alone.
 */
export function releasePages(buffer: ArrayBufferLike): void {
  const start = addressOf(buffer);
  const first = Math.ceil(start / OS_PAGE) * OS_PAGE;
  const end = Math.floor((start + buffer.byteLength) / OS_PAGE) * OS_PAGE;
  if (end > first) madvise(first, end - first, MADV_DONTNEED);
}
