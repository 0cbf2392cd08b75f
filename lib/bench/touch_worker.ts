/**
 * Benchmark helper thread: reads one word of each of the first `pages` pages of a shared
 * memory, one page at a time (each a page fault under memtap). The sum is returned so the JIT
 * keeps every load.
 */
/// <reference lib="deno.worker" />

self.onmessage = (event: MessageEvent<{ buffer: SharedArrayBuffer; pages: number }>) => {
  const words = new Int32Array(event.data.buffer);
  let sum = 0;
  for (let page = 0; page < event.data.pages; page++) sum += words[page * 1024];
  self.postMessage(sum);
};
