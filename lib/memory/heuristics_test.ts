import assert from "node:assert/strict";
import { applyHeuristics, type Heuristic, HEURISTICS, parseHeuristics } from "./heuristics.ts";
import { PAGE_FREE, PAGE_HINTED, PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "./page_mark.ts";
import { buildHeap, HEAP_BASE } from "./testdata/dlmalloc_heap.ts";
import type { PageReader } from "./transport.ts";

const PS = 4096;

function readerOf(bytes: Uint8Array): PageReader & { reads: number } {
  const reader = {
    reads: 0,
    readPages(first: number, count: number): Uint8Array {
      reader.reads++;
      return bytes.slice(first * PS, (first + count) * PS);
    },
  };
  return reader;
}

const all = (): Set<Heuristic> => new Set(HEURISTICS);
const without = (h: Heuristic): Set<Heuristic> => new Set(HEURISTICS.filter((x) => x !== h));

Deno.test("parseHeuristics() reads all, none and lists, and names the choices on a typo", () => {
  assert.deepEqual(parseHeuristics("all"), all());
  assert.deepEqual(parseHeuristics("none"), new Set());
  assert.deepEqual(parseHeuristics("zero, free"), new Set(["zero", "free"]));
  assert.throws(() => parseHeuristics("zeros"), /choose from zero, untouched, hinted, free/);
});

Deno.test("applyHeuristics() keeps untouched pages unread, or reads them when untouched is off", () => {
  const bytes = new Uint8Array(4 * PS);
  bytes[3 * PS + 1] = 1; // a page above the heap top that holds something
  const baseMap = Uint8Array.of(PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO, PAGE_UNTOUCHED);
  const common = { baseMap, pageSize: PS, hints: [] };
  const on = readerOf(bytes);
  assert.deepEqual(
    applyHeuristics({ ...common, reader: on, avoid: without("free") }),
    baseMap,
  );
  assert.equal(on.reads, 0, "untouched pages are not read");
  const off = applyHeuristics({ ...common, reader: readerOf(bytes), avoid: without("untouched") });
  assert.deepEqual(off, Uint8Array.of(PAGE_PRESENT, PAGE_ZERO, PAGE_ZERO, PAGE_PRESENT));
  const none = applyHeuristics({ ...common, reader: readerOf(bytes), avoid: new Set() });
  assert.deepEqual(none, Uint8Array.of(PAGE_PRESENT, PAGE_PRESENT, PAGE_PRESENT, PAGE_PRESENT));
});

Deno.test("applyHeuristics() marks hinted ranges and pages wholly inside free malloc chunks", () => {
  const memoryBytes = 64 * PS;
  const heap = buildHeap(memoryBytes, [
    { size: 2 * PS, free: false },
    { size: 8 * PS, free: true },
    { size: 4 * PS, free: false },
  ]);
  // Everything present (the heap image has no zero pages) but the last 8 pages, untouched.
  const baseMap = new Uint8Array(64).fill(PAGE_PRESENT).fill(PAGE_UNTOUCHED, 56);
  const hints = [{ start: 2 * PS, end: 4 * PS + 100 }];
  const map = applyHeuristics({
    baseMap,
    reader: readerOf(heap.bytes),
    pageSize: PS,
    hints,
    avoid: all(),
  });
  const firstHeapPage = HEAP_BASE / PS;
  const free = heap.chunks[1];
  for (let p = 0; p < 64; p++) {
    const inFree = p >= Math.ceil((free + 32) / PS) && p < Math.floor((free + 8 * PS) / PS);
    const inTop = p >= Math.ceil((heap.top + 32) / PS) && p < 56;
    const want = p >= 56
      ? PAGE_UNTOUCHED
      : p >= 2 && p < 4
      ? PAGE_HINTED
      : inFree || inTop
      ? PAGE_FREE
      : PAGE_PRESENT;
    assert.equal(map[p], want, `page ${p} (heap from page ${firstHeapPage})`);
  }
  assert.equal(
    map.filter((m) => m === PAGE_FREE).length,
    7 + (56 - Math.ceil((heap.top + 32) / PS)),
  );
  const noFree = applyHeuristics({
    baseMap,
    reader: readerOf(heap.bytes),
    pageSize: PS,
    hints,
    avoid: without("free"),
  });
  assert.equal(noFree.filter((m) => m === PAGE_FREE).length, 0);
});
