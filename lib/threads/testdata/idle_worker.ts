/// <reference lib="deno.worker" />
// Test helper: a worker that waits to be terminated.
self.onmessage = () => {};
