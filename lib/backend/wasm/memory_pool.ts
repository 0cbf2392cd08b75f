/**
 * Guest memories for clones, reused once their VMs have ended. A new WebAssembly.Memory is a new
 * external allocation of the isolate that makes it (64 MiB for a 64 MiB guest), and V8 keeps
 * counting it while any isolate it was posted to still holds it: a VM worker, however idle,
 * until it collects its garbage. Every 16-clone fork of `bench fanout` raised each clone host's
 * external memory by 270 MB, and V8 answered with a full mark-compact of the agent's heap in the
 * middle of the fork (10–70 ms on the main thread, as much again on its helper threads). A
 * memory taken from the pool is no new allocation.
 *
 * @module
 */

import { releasePages } from "../../memory/release_pages.ts";
import type { PreparedModule } from "./prepare.ts";
import { WASM_PAGE } from "./guest_abi.ts";
import { createGuestMemory } from "./vm.ts";

export class GuestMemoryPool {
  readonly #capacity: number;
  #idle: WebAssembly.Memory[] = [];
  /** The maximum (pages) of every memory this pool made: others are never taken back. */
  #maximum = new WeakMap<WebAssembly.Memory, number>();

  /** Keeps at most `capacity` idle memories. */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new RangeError(`Cannot make a memory pool of ${capacity} memories`);
    }
    this.#capacity = capacity;
  }

  /** Memories waiting to be taken. */
  get idle(): number {
    return this.#idle.length;
  }

  /** A memory of `pages` pages and the module's maximum: an idle one (all zeros) or a new one. */
  take(module: PreparedModule, pages: number): WebAssembly.Memory {
    const bytes = pages * WASM_PAGE;
    const at = this.#idle.findIndex((memory) =>
      this.#maximum.get(memory) === module.maxPages && memory.buffer.byteLength === bytes
    );
    if (at >= 0) return this.#idle.splice(at, 1)[0];
    const memory = createGuestMemory(module, pages);
    this.#maximum.set(memory, module.maxPages);
    return memory;
  }

  /**
   * Takes back a memory nothing uses any more: its guest's thread finished with it (a guest
   * that returned, not one killed: a killed guest's thread runs on for a moment), and nothing
   * maps or watches it (its memtap is closed). Its pages are released; it reads as zeros. A
   * memory this pool did not make, or one too many, is only released.
   */
  give(memory: WebAssembly.Memory): void {
    releasePages(memory.buffer);
    if (!this.#maximum.has(memory) || this.#idle.includes(memory)) return;
    if (this.#idle.length < this.#capacity) this.#idle.push(memory);
  }
}
