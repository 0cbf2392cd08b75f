import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { PAGE_PRESENT, PAGE_ZERO } from "../page_mark.ts";
import type { ForkAccess, ServedFork } from "../transport.ts";
import { UnicastPageClient } from "./client.ts";
import { UnicastPageServer } from "./server.ts";
import { decodeFrame, encodeFrame, type Frame, FRAME_REQUEST, toRuns, WireError } from "./wire.ts";

const PAGES = 64;

function fork(): ServedFork {
  const bytes = new Uint8Array(PAGES * 4096);
  for (let i = 0; i < bytes.length; i += 4096) bytes.fill(i / 4096 + 1, i, i + 4096);
  const pageMap = new Uint8Array(PAGES).fill(PAGE_PRESENT);
  for (let p = 0; p < PAGES; p += 4) pageMap[p] = PAGE_ZERO;
  return {
    forkId: crypto.getRandomValues(new Uint8Array(16)),
    key: crypto.getRandomValues(new Uint8Array(32)),
    pageSize: 4096,
    pageCount: PAGES,
    pageMap,
    reader: { readPages: (first, count) => bytes.slice(first * 4096, (first + count) * 4096) },
    clones: 1,
  };
}

function access(f: ServedFork, server: string, key = f.key): ForkAccess {
  return { forkId: f.forkId, key, server, pageSize: 4096, pageCount: PAGES };
}

Deno.test("encodeFrame()/decodeFrame() round-trip and reject a frame under another key", () => {
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(16).fill(9);
  const frame: Frame = {
    type: FRAME_REQUEST,
    seq: 3,
    forkId: new Uint8Array(16).fill(1),
    runs: [{ first: 5, count: 2 }],
  };
  const bytes = encodeFrame(frame, key, nonce);
  const back = decodeFrame(bytes, key, nonce);
  assert.deepEqual(back, { ...frame, runs: [{ first: 5, count: 2 }] });
  assert.throws(() => decodeFrame(bytes, new Uint8Array(32), nonce), WireError);
  // The MAC is standard HMAC-SHA256 over nonce ‖ frame, truncated to 16 bytes.
  const signed = bytes.subarray(0, bytes.byteLength - 16);
  const want = createHmac("sha256", key).update(nonce).update(signed).digest().subarray(0, 16);
  assert.deepEqual(bytes.subarray(bytes.byteLength - 16), new Uint8Array(want));
  assert.throws(() => decodeFrame(bytes, key, new Uint8Array(16)), WireError);
});

Deno.test("toRuns() sorts, de-duplicates and coalesces pages", () => {
  assert.deepEqual(toRuns([7, 3, 4, 5, 3, 9]), [
    { first: 3, count: 3 },
    { first: 7, count: 1 },
    { first: 9, count: 1 },
  ]);
});

Deno.test("unicast client fetches PRESENT pages only, in runs", async () => {
  const served = fork();
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(served);
  const client = new UnicastPageClient(access(served, server.address));
  try {
    const got = new Map<number, number>();
    const all = Promise.withResolvers<void>();
    client.onPages((first, bytes) => {
      for (let i = 0; i < bytes.byteLength / 4096; i++) got.set(first + i, bytes[i * 4096]);
      if (got.size === PAGES - PAGES / 4) all.resolve();
    });
    client.request(Array.from({ length: PAGES }, (_, i) => i));
    await all.promise;
    for (const [page, first] of got) {
      assert.notEqual(page % 4, 0, "zero pages are never sent");
      assert.equal(first, page + 1);
    }
    assert.equal(server.stats(served.forkId).rejected, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("unicast client with the wrong fork key fails after its retries", async () => {
  const served = fork();
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(served);
  const client = new UnicastPageClient(
    access(served, server.address, new Uint8Array(32)),
    { retries: 1, retryDelayMs: 10 },
  );
  try {
    client.request([1]);
    const error = await client.failed;
    assert.match(error.message, /Cannot fetch pages from memory server/);
    assert.ok(server.stats(served.forkId).rejected > 0);
  } finally {
    await client.close();
    await server.close();
  }
});
