/**
 * Test helper: touches pages of a shared memory from its own thread (never the fault handler's).
 * "checksum" hashes every 32-bit word of each page; "touch" loads one word per page and times it.
 * Every loaded value feeds the result, so the JIT cannot drop the loads.
 */

/// <reference lib="deno.worker" />

import { pageChecksum } from "./checksum.ts";

export interface TouchRequest {
  buffer: SharedArrayBuffer;
  pages: number[];
  pageSize: number;
  mode: "checksum" | "touch";
}

export interface TouchResult {
  sums: number[];
  /** Per page, µs (this thread's clock). */
  micros: number[];
  totalMs: number;
}

self.onmessage = (event: MessageEvent<TouchRequest>) => {
  const { buffer, pages, pageSize, mode } = event.data;
  const words = new Int32Array(buffer);
  const perPage = pageSize / 4;
  const sums: number[] = [];
  const micros: number[] = [];
  const start = performance.now();
  for (const page of pages) {
    const t0 = performance.now();
    if (mode === "checksum") {
      sums.push(pageChecksum(words.subarray(page * perPage, (page + 1) * perPage)));
    } else {
      sums.push(words[page * perPage]);
    }
    micros.push((performance.now() - t0) * 1000);
  }
  const result: TouchResult = { sums, micros, totalMs: performance.now() - start };
  self.postMessage(result);
};
