/**
 * Test helper: a wasm32 memory image holding a dlmalloc heap laid out as wasi-libc's allocator
 * leaves it (dlmalloc.ts): the allocator state at `STATE`, one segment from `HEAP_BASE` to the end
 * of memory, the given chunks, then the top chunk.
 */

export const STATE = 0x400;
export const HEAP_BASE = 0x10000;
const TOP_FOOT_SIZE = 56;
const CINUSE = 2;
const PINUSE = 1;

export interface Chunk {
  /** Chunk size in bytes, a multiple of 16. */
  size: number;
  free: boolean;
}

export interface Heap {
  bytes: Uint8Array;
  /** Address of each chunk, in order, then of the top chunk. */
  chunks: number[];
  top: number;
  topsize: number;
}

export function buildHeap(memoryBytes: number, chunks: Chunk[]): Heap {
  const bytes = new Uint8Array(memoryBytes);
  const view = new DataView(bytes.buffer);
  const set = (address: number, value: number) => view.setUint32(address, value, true);
  bytes.fill(0xee, HEAP_BASE); // old contents everywhere in the heap
  let p = HEAP_BASE + 8; // align_as_chunk: chunk2mem (p + 8) is 16-aligned
  let prevFree = false;
  const addresses: number[] = [];
  for (const c of chunks) {
    addresses.push(p);
    set(p + 4, c.size | (c.free ? 0 : CINUSE) | (prevFree ? 0 : PINUSE));
    if (c.free) set(p + c.size, c.size); // the next chunk's prev_foot
    prevFree = c.free;
    p += c.size;
  }
  const top = p;
  const topsize = memoryBytes - TOP_FOOT_SIZE - top;
  set(top + 4, topsize | PINUSE);
  set(STATE + 12, topsize);
  set(STATE + 16, HEAP_BASE); // least_addr
  set(STATE + 24, top);
  set(STATE + 36, 0x58585858); // magic
  return { bytes, chunks: addresses, top, topsize };
}

/** Little-endian u32 reads of `bytes` (0 past its end). */
export function wordsOf(bytes: Uint8Array): (address: number) => number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return (address) => address + 4 <= bytes.byteLength ? view.getUint32(address, true) : 0;
}
