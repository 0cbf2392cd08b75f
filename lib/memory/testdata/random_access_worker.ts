/**
 * Test helper: reads and writes random bytes of a clone's memory, as a program would, and counts
 * the bytes that are neither the clone-time contents nor what this thread wrote there.
 */

/// <reference lib="deno.worker" />

export interface RandomAccessRequest {
  buffer: SharedArrayBuffer;
  /** Clone-time contents of the memory. */
  contents: Uint8Array;
  accesses: number;
  seed: number;
}

export interface RandomAccessResult {
  wrong: number;
  /** The first wrong byte, described. */
  first?: string;
}

self.onmessage = (event: MessageEvent<RandomAccessRequest>) => {
  const { buffer, contents, accesses } = event.data;
  const memory = new Uint8Array(buffer);
  const written = new Map<number, number>();
  let seed = event.data.seed;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const result: RandomAccessResult = { wrong: 0 };
  for (let i = 0; i < accesses; i++) {
    const at = Math.floor(random() * contents.length);
    const want = written.get(at) ?? contents[at];
    if (memory[at] !== want) {
      result.wrong++;
      result.first ??= `byte ${at} (page ${Math.floor(at / 4096)}) is ${memory[at]}, not ${want}`;
    }
    if (random() < 0.5) {
      const value = Math.floor(random() * 256);
      memory[at] = value;
      written.set(at, value);
    }
  }
  self.postMessage(result);
};
