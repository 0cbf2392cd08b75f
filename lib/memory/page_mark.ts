/**
 * Page-map marks for the memory code: the descriptor's own (lib/descriptor/page_map.ts), one
 * byte per 4 KiB page, shared by the snapshot (which computes them), the descriptor (which
 * carries them) and memtap (which obeys them). Only PRESENT pages are ever fetched; every other
 * mark is installed locally as a zero page (avoidance heuristics).
 *
 * @module
 */

export {
  isPageMark,
  PAGE_FREE,
  PAGE_HINTED,
  PAGE_PRESENT,
  PAGE_UNTOUCHED,
  PAGE_ZERO,
} from "../descriptor/page_map.ts";
