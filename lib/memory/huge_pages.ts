/**
 * Transparent huge pages for guest memory, so that a fork's write-protection is cheap.
 *
 * Write-protecting a snapshot (write_tracker.ts) walks the page tables inside the parent's
 * pause: 262,144 PTEs for 1 GiB of 4 KiB pages (~25 ms), 512 PMDs when the memory is backed by
 * 2 MiB pages (~0.1 ms). Copy-on-write stays per 4 KiB page: a write to a protected huge page
 * faults with the written address, and un-protecting that 4 KiB page splits the PMD, its other
 * PTEs staying protected (kernel mm/mprotect.c, change_pmd_range). Clones' memory (memtap)
 * carries the advice too but fills through userfaultfd MISSING faults, which install 4 KiB
 * pages whatever the advice; khugepaged never collapses a range with uffd-wp or missing PTEs.
 *
 * The advice matters with THP "madvise" (Debian's default); "always" needs none, "never"
 * ignores it. The cost: a guest that touches one byte of a 2 MiB region gets all of it.
 *
 * @module
 */

import { addressOf, Errno, MADV_HUGEPAGE, madvise, SyscallError } from "../../native/libc.ts";

const WASM_PAGE = 65536;

/**
 * Advise huge pages for `memory` up to its maximum of `maxPages` Wasm pages. Covering the
 * maximum, not the current length, keeps the advice on pages `memory.grow` adds later (V8
 * reserves the whole maximum of a shared memory up front and only changes its protection).
 * Returns false where the kernel has no transparent huge pages (the memory works as before).
 */
export function adviseHugePages(memory: WebAssembly.Memory, maxPages: number): boolean {
  if (!(memory.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError("Cannot advise huge pages: the memory must be shared");
  }
  try {
    // The reservation lives as long as `memory`; madvise only sets a flag on its mapping.
    madvise(addressOf(memory.buffer), maxPages * WASM_PAGE, MADV_HUGEPAGE);
    return true;
  } catch (e) {
    if (e instanceof SyscallError && e.errno === Errno.EINVAL) return false; // no THP
    throw e;
  }
}
