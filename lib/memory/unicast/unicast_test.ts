import assert from "node:assert/strict";
import { createCipheriv, createHmac } from "node:crypto";
import { liveMacContexts } from "../../../native/libcrypto.ts";
import { PAGE_PRESENT, PAGE_ZERO } from "../page_mark.ts";
import type { ForkAccess, ServedFork } from "../transport.ts";
import { UnicastPageClient } from "./client.ts";
import { UnicastPageServer } from "./server.ts";
import {
  decodeFrame,
  encodeFrame,
  type Frame,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_REQUEST,
  helloAuth,
  sessionAuth,
  toRuns,
  WIRE_VERSION,
  WireError,
} from "./wire.ts";

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

Deno.test("encodeFrame()/decodeFrame() round-trip HELLO under HMAC-SHA256 and reject another key", () => {
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(16).fill(9);
  const frame: Frame = {
    type: FRAME_HELLO,
    seq: 0,
    forkId: new Uint8Array(16).fill(1),
    nonce: new Uint8Array(16).fill(4),
  };
  const bytes = encodeFrame(frame, helloAuth(key, nonce));
  assert.equal(bytes[4], WIRE_VERSION);
  assert.deepEqual(decodeFrame(bytes, helloAuth(key, nonce)), frame);
  assert.throws(() => decodeFrame(bytes, helloAuth(new Uint8Array(32), nonce)), WireError);
  // The HELLO MAC is standard HMAC-SHA256 over nonce ‖ frame, truncated to 16 bytes.
  const signed = bytes.subarray(0, bytes.byteLength - 16);
  const want = createHmac("sha256", key).update(nonce).update(signed).digest().subarray(0, 16);
  assert.deepEqual(bytes.subarray(bytes.byteLength - 16), new Uint8Array(want));
  assert.throws(() => decodeFrame(bytes, helloAuth(key, new Uint8Array(16))), WireError);
});

Deno.test("session frames: round trip; forged, replayed, reflected and cross-connection rejected", () => {
  const key = new Uint8Array(32).fill(7);
  const nc = new Uint8Array(16).fill(1);
  const ns = new Uint8Array(16).fill(2);
  const fromClient = sessionAuth(key, nc, ns, "client");
  const frame: Frame = {
    type: FRAME_REQUEST,
    seq: 3,
    forkId: new Uint8Array(16).fill(1),
    runs: [{ first: 5, count: 2 }],
  };
  const bytes = encodeFrame(frame, fromClient);
  assert.deepEqual(decodeFrame(bytes, sessionAuth(key, nc, ns, "client")), frame);
  // Another fork key, another connection (nonce), the other direction: all fail the MAC.
  assert.throws(() => decodeFrame(bytes, sessionAuth(new Uint8Array(32), nc, ns, "client")));
  assert.throws(() => decodeFrame(bytes, sessionAuth(key, nc, new Uint8Array(16), "client")));
  assert.throws(() => decodeFrame(bytes, sessionAuth(key, nc, ns, "server")), WireError);
  // A flipped bit anywhere (header, body, MAC) fails.
  for (const at of [8, 33, bytes.byteLength - 1]) {
    const forged = bytes.slice();
    forged[at] ^= 1;
    assert.throws(() => decodeFrame(forged, fromClient), WireError);
  }
  // Replayed under another sequence number: the number is in the MAC's nonce.
  const replayed = bytes.slice();
  new DataView(replayed.buffer).setUint32(8, 4, false);
  assert.throws(() => decodeFrame(replayed, fromClient), WireError);
  // PAGES: the page bytes are covered too.
  const pages: Frame = {
    type: FRAME_PAGES,
    seq: 1,
    forkId: frame.forkId,
    first: 9,
    count: 2,
    bytes: new Uint8Array(8192).fill(3),
  };
  const fromServer = sessionAuth(key, nc, ns, "server");
  const encoded = encodeFrame(pages, fromServer);
  assert.deepEqual(decodeFrame(encoded, fromServer), pages);
  encoded[32 + 8 + 5000] ^= 0x80;
  assert.throws(() => decodeFrame(encoded, fromServer), WireError);
});

Deno.test("sessionAuth() tag is ChaCha20-Poly1305 (RFC 8439) of empty plaintext over the frame", () => {
  const key = new Uint8Array(32).fill(7);
  const nc = new Uint8Array(16).fill(1);
  const ns = new Uint8Array(16).fill(2);
  const frame: Frame = { type: FRAME_REQUEST, seq: 5, forkId: nc, runs: [{ first: 1, count: 1 }] };
  const bytes = encodeFrame(frame, sessionAuth(key, nc, ns, "server"));
  const info = new Uint8Array([...new TextEncoder().encode("SFPG v2 session key"), ...nc, ...ns]);
  const sessionKey = createHmac("sha256", key).update(info).digest();
  const iv = new Uint8Array([0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5]);
  let want: Uint8Array;
  try {
    const c = createCipheriv("chacha20-poly1305", sessionKey, iv, { authTagLength: 16 });
    c.setAAD(bytes.subarray(0, bytes.byteLength - 16), { plaintextLength: 0 });
    c.final();
    want = new Uint8Array(c.getAuthTag());
  } catch (e) {
    console.warn(`skipped: node:crypto has no chacha20-poly1305 here (${(e as Error).message})`);
    return;
  }
  assert.deepEqual(bytes.subarray(bytes.byteLength - 16), want);
});

Deno.test("toRuns() sorts, de-duplicates and coalesces pages", () => {
  assert.deepEqual(toRuns([7, 3, 4, 5, 3, 9]), [
    { first: 3, count: 3 },
    { first: 7, count: 1 },
    { first: 9, count: 1 },
  ]);
  // Already ascending (a fill), ascending but for one repeat, and a set.
  assert.deepEqual(toRuns([1, 2, 3, 5]), [{ first: 1, count: 3 }, { first: 5, count: 1 }]);
  assert.deepEqual(toRuns([1, 2, 2, 3]), [{ first: 1, count: 3 }]);
  assert.deepEqual(toRuns(new Set([4, 2, 3])), [{ first: 2, count: 3 }]);
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

Deno.test("unicast client frees each session's MACs when the session ends, however it ends", async () => {
  const served = fork();
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(served);
  const before = liveMacContexts();
  const settled = async () => {
    const deadline = performance.now() + 2000;
    while (liveMacContexts() !== before && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(liveMacContexts(), before);
  };
  try {
    for (let i = 0; i < 10; i++) {
      const client = new UnicastPageClient(access(served, server.address));
      const got = Promise.withResolvers<void>();
      client.onPages(() => got.resolve());
      client.request([1]);
      await got.promise;
      assert.equal(liveMacContexts(), before + 2);
      await client.close(); // ended by us
      await settled();
    }
    // Ended by the server (the fork removed): the client's reconnects are refused, it fails.
    const client = new UnicastPageClient(access(served, server.address), { retryDelayMs: 1 });
    const got = Promise.withResolvers<void>();
    client.onPages(() => got.resolve());
    client.request([1]);
    await got.promise;
    await server.removeFork(served.forkId);
    client.request([2]);
    assert.match((await client.failed).message, /Cannot fetch pages/);
    await client.close();
    await settled();
  } finally {
    await server.close();
  }
});
