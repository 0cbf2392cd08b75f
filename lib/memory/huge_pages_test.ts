import assert from "node:assert/strict";
import { addressOf } from "../../native/libc.ts";
import { adviseHugePages } from "./huge_pages.ts";
import { hugeBytesAt, hugePageMode } from "./testdata/smaps.ts";

const WASM_PAGE = 65536;

Deno.test("adviseHugePages() backs the memory with huge pages, grown pages too", () => {
  if (hugePageMode() === "never") {
    console.warn("skipped: transparent huge pages are off (never)");
    return;
  }
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 4096, shared: true });
  assert.equal(adviseHugePages(memory, 4096), true);
  memory.grow(512); // 4 MiB → 36 MiB: pages the advice was given for before they existed
  new Uint8Array(memory.buffer).fill(1);
  const grown = addressOf(memory.buffer) + 64 * WASM_PAGE;
  assert.ok(hugeBytesAt(grown) >= 16 << 20, `${hugeBytesAt(grown)} bytes in huge pages`);
});

Deno.test("adviseHugePages() refuses a memory that is not shared", () => {
  assert.throws(
    () => adviseHugePages(new WebAssembly.Memory({ initial: 1 }), 1),
    { name: "TypeError", message: "Cannot advise huge pages: the memory must be shared" },
  );
});
