import assert from "node:assert/strict";
import type { StatusView } from "../control/messages.ts";
import { statusEvents, type StatusSource } from "./events.ts";

class FakeMaster implements StatusSource {
  version = 0;
  listeners = new Set<() => void>();
  status(): StatusView {
    return {
      version: `v${this.version}`,
      allocator: "builtin",
      startedAt: "2026-01-01T00:00:00.000Z",
      hosts: [],
      tickets: [],
      clusters: [],
      rejectedMessages: 0,
    };
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  change(): void {
    this.version++;
    for (const l of this.listeners) l();
  }
}

/** Reads the next event block (up to a blank line) from the stream. */
function blocks(stream: ReadableStream<Uint8Array>): () => Promise<string | undefined> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    while (!buffered.includes("\n\n")) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      buffered += value;
    }
    const end = buffered.indexOf("\n\n");
    const block = buffered.slice(0, end);
    buffered = buffered.slice(end + 2);
    return block;
  };
}

Deno.test("statusEvents(): retry hint, the status at once, then the latest after changes", async () => {
  const master = new FakeMaster();
  const abort = new AbortController();
  const next = blocks(statusEvents(master, { signal: abort.signal }));
  assert.equal(await next(), "retry: 1000");
  assert.equal(await next(), `event: status\ndata: ${JSON.stringify(master.status())}`);
  master.change();
  master.change(); // a reader that was not waiting gets only the latest status
  assert.match((await next())!, /"version":"v2"/);
  abort.abort();
  assert.equal(await next(), undefined, "the stream ends when the listener shuts down");
  assert.equal(master.listeners.size, 0);
});

Deno.test("statusEvents(): keep-alive comments while nothing changes", async () => {
  const master = new FakeMaster();
  const abort = new AbortController();
  const next = blocks(statusEvents(master, { signal: abort.signal, keepAliveMs: 20 }));
  await next();
  await next();
  assert.equal(await next(), ": keep-alive");
  abort.abort();
});

Deno.test("statusEvents(): a client going away unsubscribes", async () => {
  const master = new FakeMaster();
  const stream = statusEvents(master, { signal: new AbortController().signal });
  const reader = stream.getReader();
  await reader.read();
  assert.equal(master.listeners.size, 1);
  await reader.cancel();
  assert.equal(master.listeners.size, 0);
});

Deno.test("statusEvents(): a listener already shut down gives an empty stream", async () => {
  const master = new FakeMaster();
  const abort = new AbortController();
  abort.abort();
  const next = blocks(statusEvents(master, { signal: abort.signal }));
  assert.equal(await next(), undefined);
  assert.equal(master.listeners.size, 0);
});
