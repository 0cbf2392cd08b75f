import assert from "node:assert/strict";
import { dlmallocFreeRanges } from "./dlmalloc.ts";
import { buildHeap, wordsOf } from "./testdata/dlmalloc_heap.ts";

const MIB = 1 << 20;

Deno.test("dlmallocFreeRanges() finds free chunks' bodies and the top chunk", () => {
  const heap = buildHeap(MIB, [
    { size: 0x1010, free: false },
    { size: 0x20000, free: true },
    { size: 0x2000, free: false },
    { size: 0x20, free: true }, // nothing past its header
    { size: 0x800, free: false },
  ]);
  const b = heap.chunks[1];
  assert.deepEqual(dlmallocFreeRanges(wordsOf(heap.bytes), MIB), [
    { start: b + 32, end: b + 0x20000 },
    { start: heap.top + 32, end: heap.top + heap.topsize },
  ]);
});

Deno.test("dlmallocFreeRanges() calls nothing free when the chunk chain misses the top", () => {
  const heap = buildHeap(MIB, [
    { size: 0x1010, free: false },
    { size: 0x20000, free: true },
    { size: 0x2000, free: false },
  ]);
  // One corrupt size: the walk lands beside the top chunk, so this is not the heap it assumed.
  new DataView(heap.bytes.buffer).setUint32(heap.chunks[2] + 4, 0x2010 | 2, true);
  assert.deepEqual(dlmallocFreeRanges(wordsOf(heap.bytes), MIB), []);
});

Deno.test("dlmallocFreeRanges() finds nothing in a memory without a heap", () => {
  assert.deepEqual(dlmallocFreeRanges(wordsOf(new Uint8Array(MIB)), MIB), []);
});
