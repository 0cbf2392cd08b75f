/**
 * libxenforeignmemory (Xen 4.17): maps a guest's frames into dom0 so the
 * memory server reads them in place (no files).
 *
 * @module
 */
import { checkInt, checkPointer, XenCallError } from "./check.ts";
import { errnoName } from "../libc.ts";

const symbols = {
  // xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger, unsigned open_flags)
  xenforeignmemory_open: { parameters: ["pointer", "u32"], result: "pointer" },
  // int xenforeignmemory_close(xenforeignmemory_handle *fmem)
  xenforeignmemory_close: { parameters: ["pointer"], result: "i32" },
  // void *xenforeignmemory_map(fmem, uint32_t dom, int prot, size_t pages, const xen_pfn_t arr[], int err[])
  xenforeignmemory_map: {
    parameters: ["pointer", "u32", "i32", "usize", "buffer", "buffer"],
    result: "pointer",
  },
  // int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages)
  xenforeignmemory_unmap: { parameters: ["pointer", "pointer", "usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export const LIBXENFOREIGNMEMORY = "libxenforeignmemory.so.1";
const PROT_READ = 1;
const PAGE = 4096;

export class ForeignMemory {
  #lib: Deno.DynamicLibrary<typeof symbols>;
  #h: Deno.PointerObject;

  constructor(path = LIBXENFOREIGNMEMORY) {
    this.#lib = Deno.dlopen(path, symbols);
    this.#h = checkPointer(
      "xenforeignmemory_open",
      this.#lib.symbols.xenforeignmemory_open(null, 0),
    );
  }

  /**
   * Copies guest frames (PV: machine frames, from the guest's p2m) into `into(i)` (4096 bytes
   * each), read-only mapping them for the duration of the copy only.
   */
  copyFrames(domid: number, frames: readonly bigint[], into: (i: number) => Uint8Array): void {
    if (frames.length === 0) return;
    // arr and err are read/written by the call only; they outlive it.
    const arr = new BigUint64Array(frames);
    const err = new Int32Array(frames.length);
    const op = `xenforeignmemory_map(dom ${domid}, ${frames.length} frames)`;
    const p = checkPointer(
      op,
      this.#lib.symbols.xenforeignmemory_map(
        this.#h,
        domid,
        PROT_READ,
        BigInt(frames.length),
        arr,
        err,
      ),
    );
    try {
      const bad = err.findIndex((e) => e !== 0);
      if (bad >= 0) {
        const code = -err[bad];
        throw new XenCallError(
          `Cannot ${op}: frame 0x${frames[bad].toString(16)}: ${errnoName(code)} (${code})`,
          code,
        );
      }
      // The mapping is frames.length pages long and stays mapped until the unmap below.
      const view = new Deno.UnsafePointerView(p);
      for (let i = 0; i < frames.length; i++) {
        const to = into(i);
        if (to.length !== PAGE) throw new RangeError(`Cannot copy frame ${i}: ${to.length} bytes`);
        view.copyInto(to, i * PAGE);
      }
    } finally {
      checkInt(
        `xenforeignmemory_unmap(dom ${domid})`,
        this.#lib.symbols.xenforeignmemory_unmap(this.#h, p, BigInt(frames.length)),
      );
    }
  }

  close(): void {
    this.#lib.symbols.xenforeignmemory_close(this.#h);
    this.#lib.close();
  }
}
