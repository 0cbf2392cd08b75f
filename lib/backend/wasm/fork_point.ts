import type { WasiState } from "./wasi_fds.ts";

/** The value of one exported mutable global (`bigint` for i64). */
export interface GlobalValue {
  name: string;
  value: number | bigint;
}

/**
 * Everything a clone needs besides the parent's memory, captured while the
 * parent is unwound at `sf_clone` / `sf_checkpoint_parent`. Plain data, so the
 * agent can put it in a descriptor.
 */
export interface ForkPointState {
  kind: "clone" | "checkpoint";
  /** {@link PreparedModule.hash} of the module the parent runs. */
  moduleHash: string;
  /** Every mutable global after the unwind (the stack pointer among them). */
  globals: GlobalValue[];
  /**
   * The asyncify memory from offset 0 (its 8-byte header) to its write
   * pointer: the parent's unwound call stack, replayed by the clone.
   */
  asyncifyData: Uint8Array;
  wasi: WasiState;
  /** Size of the parent's memory in 64 KiB pages. */
  memoryPages: number;
  /**
   * sbrk(0). wasi-libc's sbrk only grows with memory.grow, so this is the end
   * of memory; nothing lies above it.
   */
  heapTop: number;
  /** The guest's C stack pointer (the lowest live stack byte), if known. */
  stackPointer: number | null;
}

/** What a {@link GuestHooks} implementation gets while the parent is paused. */
export interface ForkPoint {
  /**
   * The parent's live shared memory. It does not change until the hook's
   * promise settles; capture (copy, or write-protect) it before then.
   */
  memory: WebAssembly.Memory;
  state: ForkPointState;
  /** performance.now() on the host thread when the paused parent was reported. */
  pausedAt: number;
}
