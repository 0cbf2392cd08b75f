// GOLDEN FILE GENERATOR: run once per format version, then check the output in.
//   deno run --allow-write lib/descriptor/testdata/make_golden.ts
// format_test.ts compares encodeDescriptor(goldenDescriptor()) with wasm_v1.bin byte for byte, so
// regenerating it hides a layout change; a new version gets a new file instead.
import type { Descriptor } from "../format.ts";
import { encodeDescriptor } from "../format.ts";
import { PAGE_FREE, PAGE_HINTED, PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "../page_map.ts";

export const GOLDEN_V1_URL: URL = new URL("./wasm_v1.bin", import.meta.url);

/** A small wasm descriptor that uses every field: 2 wasm pages = 32 pages of 4 KiB. */
export function goldenDescriptor(): Descriptor {
  const pageMap = new Uint8Array(32);
  pageMap.fill(PAGE_PRESENT, 0, 4);
  pageMap.fill(PAGE_ZERO, 4, 10);
  pageMap[10] = PAGE_HINTED;
  pageMap[11] = PAGE_FREE;
  pageMap.fill(PAGE_PRESENT, 12, 14);
  pageMap.fill(PAGE_UNTOUCHED, 14, 32);
  return {
    kind: "wasm",
    forkId: sequence(16, 0x00),
    forkKey: sequence(32, 0xa0),
    memoryServer: "10.0.0.1:7070",
    parentVm: "vm-parent-1",
    ticket: "ticket-42",
    clones: 3,
    pageSize: 4096,
    pageMap,
    inlinePages: [{ index: 13, bytes: sequence(4096, 0x5a) }],
    wasm: {
      moduleHash: sequence(32, 0x10),
      memory: { pages: 2, maxPages: 256 },
      globals: [
        { name: "__stack_pointer", type: "i32", value: 50_000 },
        { name: "g_i64", type: "i64", value: -2n },
        { name: "g_f32", type: "f32", value: 1.5 },
        { name: "g_f64", type: "f64", value: -0.1 },
      ],
      asyncifyData: sequence(24, 0xc0),
      heapTop: 49_152,
      wasi: {
        args: ["prog", "héllo wörld"],
        env: ["HOME=/", "LANG=C.UTF-8"],
        fds: [
          { fd: 0, kind: "stdin", path: "", position: 0n, flags: 0 },
          { fd: 1, kind: "stdout", path: "", position: 0n, flags: 1 },
          { fd: 2, kind: "stderr", path: "", position: 0n, flags: 1 },
          { fd: 3, kind: "preopen", path: "/data", position: 0n, flags: 0 },
          { fd: 4, kind: "file", path: "/data/in.txt", position: 1234n, flags: 4 },
          { fd: 5, kind: "dir", path: "/data/sub", position: 0n, flags: 0 },
        ],
      },
    },
  };
}

function sequence(length: number, first: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (first + i) & 0xff);
}

if (import.meta.main) {
  await Deno.writeFile(GOLDEN_V1_URL, encodeDescriptor(goldenDescriptor()));
}
