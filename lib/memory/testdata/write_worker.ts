/**
 * Test helper: writes random words into random pages of a shared memory until told to stop.
 * control[0]: set to 1 to stop; control[1]: writes done (updated as it goes).
 */

/// <reference lib="deno.worker" />

export interface WriteRequest {
  buffer: SharedArrayBuffer;
  pageCount: number;
  pageSize: number;
  control: SharedArrayBuffer;
}

self.onmessage = (event: MessageEvent<WriteRequest>) => {
  const { buffer, pageCount, pageSize, control } = event.data;
  const words = new Int32Array(buffer);
  const flags = new Int32Array(control);
  const perPage = pageSize / 4;
  let writes = 0;
  while (Atomics.load(flags, 0) === 0) {
    const page = Math.floor(Math.random() * pageCount);
    words[page * perPage + Math.floor(Math.random() * perPage)] = (Math.random() * 2 ** 31) | 1;
    Atomics.store(flags, 1, ++writes);
  }
  self.postMessage(writes);
};
