/**
 * Avoidance heuristics: which pages of a fork its clones never fetch. Each is switchable (for
 * comparison, `SNOWFLOCK_AVOID`) and counted on its own by memtap:
 * - untouched: pages the parent never populated (residency.ts), or above the guest's heap top;
 *   found without reading them;
 * - zero: all-zero pages at fork time;
 * - hinted: ranges the guest said would be overwritten (sf_hint_overwrite);
 * - free: pages wholly inside free chunks of wasi-libc's allocator (dlmalloc.ts).
 * A page gets the first mark that applies in that order; the rest stay PRESENT. With
 * "untouched" off, an untouched page is read like any other (it may then be a zero page).
 *
 * @module
 */

import { type ByteRange, dlmallocFreeRanges } from "./dlmalloc.ts";
import { PAGE_FREE, PAGE_HINTED, PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "./page_mark.ts";
import type { PageReader } from "./transport.ts";

export type { ByteRange };

export const HEURISTICS = ["zero", "untouched", "hinted", "free"] as const;
export type Heuristic = typeof HEURISTICS[number];

/** Environment variable naming the heuristics in use: "all" (default), "none", or a list. */
export const AVOID_ENV = "SNOWFLOCK_AVOID";

/** "all", "none", or comma-separated names. */
export function parseHeuristics(text: string): Set<Heuristic> {
  const t = text.trim();
  if (t === "" || t === "all") return new Set(HEURISTICS);
  if (t === "none") return new Set();
  const out = new Set<Heuristic>();
  for (const name of t.split(",").map((s) => s.trim())) {
    if (!(HEURISTICS as readonly string[]).includes(name)) {
      throw new RangeError(
        `Cannot use avoidance heuristic ${name}: choose from ${HEURISTICS.join(", ")}, all, none`,
      );
    }
    out.add(name as Heuristic);
  }
  return out;
}

/** The heuristics named by SNOWFLOCK_AVOID (all when unset). */
export function heuristicsFromEnv(): Set<Heuristic> {
  let text: string | undefined;
  try {
    text = Deno.env.get(AVOID_ENV);
  } catch {
    text = undefined; // no --allow-env: the default
  }
  return parseHeuristics(text ?? "all");
}

/** Inputs of {@link applyHeuristics}. */
export interface HeuristicsInput {
  /** Marks from the snapshot: PRESENT, ZERO, UNTOUCHED (Snapshot.pageMap, pageMapOf). */
  baseMap: Uint8Array;
  /** Clone-time contents, for the allocator walk. */
  reader: PageReader;
  pageSize: number;
  /** Ranges the guest hinted it will overwrite in its clones. */
  hints: ByteRange[];
  avoid: Set<Heuristic>;
}

/** The final page map: the base map with disabled marks turned PRESENT and hints/free added. */
export function applyHeuristics(o: HeuristicsInput): Uint8Array {
  const map = o.baseMap.slice();
  for (let p = 0; p < map.length; p++) {
    if (map[p] === PAGE_UNTOUCHED && !o.avoid.has("untouched")) {
      map[p] = isZeroPage(o.reader.readPages(p, 1)) ? PAGE_ZERO : PAGE_PRESENT;
    }
    if (map[p] === PAGE_ZERO && !o.avoid.has("zero")) map[p] = PAGE_PRESENT;
  }
  if (o.avoid.has("hinted")) markRanges(map, o.hints, o.pageSize, PAGE_HINTED);
  if (o.avoid.has("free")) {
    const words = cachedWords(o.reader, o.pageSize, map.length);
    markRanges(map, dlmallocFreeRanges(words, map.length * o.pageSize), o.pageSize, PAGE_FREE);
  }
  return map;
}

function isZeroPage(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** Mark PRESENT pages wholly inside any range. */
function markRanges(map: Uint8Array, ranges: ByteRange[], pageSize: number, mark: number): void {
  for (const r of ranges) {
    const first = Math.ceil(r.start / pageSize);
    const end = Math.min(map.length, Math.floor(r.end / pageSize));
    for (let p = first; p < end; p++) if (map[p] === PAGE_PRESENT) map[p] = mark;
  }
}

/** u32 reads over a page reader, a page read once. */
function cachedWords(reader: PageReader, pageSize: number, pageCount: number) {
  const pages = new Map<number, DataView>();
  return (address: number): number => {
    const page = Math.floor(address / pageSize);
    const offset = address - page * pageSize;
    if (page < 0 || page >= pageCount) return 0;
    if (offset + 4 > pageSize) {
      let v = 0;
      for (let i = 3; i >= 0; i--) v = v * 256 + byteAt(address + i);
      return v;
    }
    let view = pages.get(page);
    if (view === undefined) {
      const bytes = reader.readPages(page, 1);
      view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      pages.set(page, view);
    }
    return view.getUint32(offset, true);
  };
  function byteAt(address: number): number {
    const page = Math.floor(address / pageSize);
    if (page >= pageCount) return 0;
    return reader.readPages(page, 1)[address - page * pageSize];
  }
}
