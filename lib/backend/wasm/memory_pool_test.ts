import assert from "node:assert/strict";
import { WASM_PAGE } from "./guest_abi.ts";
import { GuestMemoryPool } from "./memory_pool.ts";
import type { PreparedModule } from "./prepare.ts";

// Only the maximum of a module shapes its memories.
const module = (maxPages: number) => ({ maxPages }) as PreparedModule;

Deno.test("a memory given back is taken again, emptied, for the same shape only", () => {
  const pool = new GuestMemoryPool(2);
  const memory = pool.take(module(64), 16);
  assert.equal(memory.buffer.byteLength, 16 * WASM_PAGE);
  new Uint8Array(memory.buffer).fill(0x5a);
  pool.give(memory);
  assert.equal(pool.idle, 1);
  assert.notEqual(pool.take(module(64), 8), memory, "another size");
  assert.notEqual(pool.take(module(32), 16), memory, "another maximum");
  const again = pool.take(module(64), 16);
  assert.equal(again, memory);
  assert.ok(new Uint8Array(again.buffer).every((byte) => byte === 0), "its pages were released");
  assert.equal(pool.idle, 0);
});

Deno.test("the pool keeps no more than its capacity, and none it did not make", () => {
  const pool = new GuestMemoryPool(1);
  const [a, b] = [pool.take(module(8), 1), pool.take(module(8), 1)];
  pool.give(a);
  pool.give(b);
  pool.give(a);
  assert.equal(pool.idle, 1);
  const stranger = new WebAssembly.Memory({ initial: 1, maximum: 8, shared: true });
  new Uint8Array(stranger.buffer)[0] = 1;
  pool.give(stranger);
  assert.equal(pool.idle, 1);
  assert.equal(new Uint8Array(stranger.buffer)[0], 0, "released all the same");
  assert.throws(() => new GuestMemoryPool(-1), RangeError);
});

Deno.test("a memory that grew is taken only for its new size", () => {
  const pool = new GuestMemoryPool(2);
  const memory = pool.take(module(8), 1);
  memory.grow(1);
  pool.give(memory);
  assert.notEqual(pool.take(module(8), 1), memory);
  assert.equal(pool.take(module(8), 2), memory);
});
