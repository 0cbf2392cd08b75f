import { type ByteReader, ByteWriter } from "./cursor.ts";
import { DescriptorError, fail, type Op } from "./errors.ts";

/** What a clone does with a page: the page map holds one mark per page. 0 is invalid. */
export type PageMark = 1 | 2 | 3 | 4 | 5;

/** Must be fetched from the memory server. */
export const PAGE_PRESENT = 1;
/** All-zero at clone time: install a zero page locally. */
export const PAGE_ZERO = 2;
/** Above the heap top, never touched by the parent. */
export const PAGE_UNTOUCHED = 3;
/** The guest said the clone will overwrite it (sf_hint_overwrite). */
export const PAGE_HINTED = 4;
/** Wholly inside a free malloc chunk. */
export const PAGE_FREE = 5;

export type PageMarkName = "present" | "zero" | "untouched" | "hinted" | "free";

// A run is one varint: (count - 1) × 8 + mark, so runs of up to 16 pages take one byte and
// the encoded map is never longer than one byte per page.
const MARK_BITS = 8;

export function isPageMark(value: number): value is PageMark {
  return value >= PAGE_PRESENT && value <= PAGE_FREE && Number.isInteger(value);
}

/** How many pages carry each mark; throws DescriptorError on an invalid mark. */
export function countMarks(pageMap: Uint8Array): Record<PageMarkName, number> {
  const counts = [0, 0, 0, 0, 0, 0];
  for (const mark of pageMap) counts[mark <= PAGE_FREE ? mark : 0]++;
  if (counts[0] > 0) {
    const page = pageMap.findIndex((mark) => !isPageMark(mark));
    throw new DescriptorError(
      `Cannot count page marks: page ${page} has invalid mark ${pageMap[page]}`,
    );
  }
  return {
    present: counts[1],
    zero: counts[2],
    untouched: counts[3],
    hinted: counts[4],
    free: counts[5],
  };
}

export function checkPageMap(op: Op, pageMap: Uint8Array): void {
  if (!(pageMap instanceof Uint8Array)) fail(op, "page map is not a Uint8Array");
  if (pageMap.length > 0xffff_ffff) fail(op, `page count ${pageMap.length} is not a u32`);
  const page = pageMap.findIndex((mark) => !isPageMark(mark));
  if (page >= 0) fail(op, `page ${page} has invalid mark ${pageMap[page]}`);
}

/** page count u32, run bytes u32, then the runs. */
export function writePageMap(w: ByteWriter, pageMap: Uint8Array): void {
  const runs = new ByteWriter();
  let start = 0;
  for (let i = 1; i <= pageMap.length; i++) {
    if (i === pageMap.length || pageMap[i] !== pageMap[start]) {
      runs.varint((i - start - 1) * MARK_BITS + pageMap[start]);
      start = i;
    }
  }
  w.u32(pageMap.length);
  w.u32(runs.length);
  w.raw(runs.finish());
}

/** Rejects maps of more than maxPages before allocating one byte per page. */
export function readPageMap(r: ByteReader, maxPages: number): Uint8Array {
  const pageCount = r.u32("page count");
  if (pageCount > maxPages) {
    fail("decode", `page count ${pageCount} exceeds the backend's limit of ${maxPages} pages`);
  }
  const runs = r.sub(r.u32("page map length"), "page map");
  const pageMap = new Uint8Array(pageCount);
  let covered = 0;
  let previous = 0;
  for (let run = 0; runs.remaining > 0; run++) {
    const value = runs.varint(`page map run ${run}`);
    const mark = value % MARK_BITS;
    const count = Math.floor(value / MARK_BITS) + 1;
    if (!isPageMark(mark)) fail("decode", `page map run ${run} has invalid mark ${mark}`);
    // Equal neighbours would be one run: rejecting them keeps one encoding per map.
    if (mark === previous) fail("decode", `page map run ${run} repeats mark ${mark}`);
    if (count > pageCount - covered) {
      fail("decode", `page map run ${run} of ${count} pages passes page count ${pageCount}`);
    }
    pageMap.fill(mark, covered, covered + count);
    covered += count;
    previous = mark;
  }
  if (covered !== pageCount) {
    fail("decode", `page map runs cover ${covered} of ${pageCount} pages`);
  }
  return pageMap;
}
