/**
 * Free memory of a wasi-libc guest, found by walking its allocator's heap (dlmalloc 2.8.6 as
 * wasi-libc builds it: 32-bit, MALLOC_ALIGNMENT 16, no footers, one contiguous sbrk segment
 * that starts at __heap_base and ends at the end of memory).
 *
 * The prepared module no longer knows __heap_base, so the allocator's state (`_gm_`, a static
 * struct) is found by its fingerprint instead: `top + topsize + TOP_FOOT_SIZE` is the end of
 * the segment (within the last 64 KiB of memory), `least_addr ≤ top`, and — the real proof — the
 * chunk chain from the first chunk at `least_addr` lands exactly on `top`. A struct that passes
 * all of that by chance would have to spell out a whole valid heap; if nothing passes, no page
 * is called free.
 *
 * @module
 */

/** Reads little-endian u32s of the clone-time memory. */
export type WordReader = (address: number) => number;

/** A byte range [start, end). */
export interface ByteRange {
  start: number;
  end: number;
}

// dlmalloc's struct malloc_state on wasm32 (USE_LOCKS 0): byte offsets of the fields used.
const MS_TOPSIZE = 12;
const MS_LEAST_ADDR = 16;
const MS_TOP = 24;
const MS_MAGIC = 36;
/** TOP_FOOT_SIZE: align_offset(8) 8 + pad_request(sizeof(msegment)) 32 + MIN_CHUNK_SIZE 16. */
const TOP_FOOT_SIZE = 56;
const MIN_CHUNK_SIZE = 16;
const CINUSE = 2;
const FLAG_BITS = 7;
/** A free chunk's bytes from here on hold nothing (prev_foot, head, fd, bk, tree links before). */
const FREE_CHUNK_HEADER = 32;
/** How far into memory to look for the allocator's state (it is static data, low in memory). */
const SCAN_LIMIT = 8 << 20;
/** Longest chain walked (a heap of more chunks is not analysed). */
const MAX_CHUNKS = 4_000_000;

/** Free byte ranges of the heap (free chunks' bodies and the top chunk), or [] if not found. */
export function dlmallocFreeRanges(u32: WordReader, memoryBytes: number): ByteRange[] {
  const limit = Math.min(memoryBytes, SCAN_LIMIT) - 64;
  for (let at = 0; at < limit; at += 4) {
    const top = u32(at + MS_TOP);
    const topsize = u32(at + MS_TOPSIZE);
    const end = top + topsize + TOP_FOOT_SIZE;
    if (top === 0 || topsize === 0 || end > memoryBytes || memoryBytes - end >= 65536) continue;
    const least = u32(at + MS_LEAST_ADDR);
    if (least === 0 || least > top || least <= at || (top & 15) !== 8) continue;
    if (u32(at + MS_MAGIC) === 0) continue;
    const ranges = walk(u32, least, top, topsize);
    if (ranges !== undefined) return ranges;
  }
  return [];
}

/** The free ranges if the chain from `least` reaches `top` exactly, else undefined. */
function walk(
  u32: WordReader,
  least: number,
  top: number,
  topsize: number,
): ByteRange[] | undefined {
  if ((u32(top + 4) & ~FLAG_BITS) >>> 0 !== topsize) return undefined;
  const ranges: ByteRange[] = [];
  let p = least + ((16 - ((least + 8) & 15)) & 15); // align_as_chunk
  for (let n = 0; p < top; n++) {
    if (n > MAX_CHUNKS) return undefined;
    const head = u32(p + 4);
    const size = (head & ~FLAG_BITS) >>> 0;
    if (size < MIN_CHUNK_SIZE || (size & 15) !== 0 || p + size > top) return undefined;
    if ((head & CINUSE) === 0 && size > FREE_CHUNK_HEADER) {
      ranges.push({ start: p + FREE_CHUNK_HEADER, end: p + size });
    }
    p += size;
  }
  if (p !== top) return undefined;
  ranges.push({ start: top + FREE_CHUNK_HEADER, end: top + topsize });
  return ranges;
}
