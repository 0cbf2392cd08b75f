import assert from "node:assert/strict";
import { CryptoError, liveMacContexts } from "../../native/libcrypto.ts";
import { type DirectContext, UnicastResolver } from "./fault_direct.ts";
import { STAT_SLOTS, TIME_SLOTS } from "./fault_protocol.ts";
import { Memtap, type PageSource } from "./memtap.ts";
import { PAGE_PRESENT, PAGE_ZERO } from "./page_mark.ts";
import { Snapshot } from "./snapshot.ts";
import { pageChecksum } from "./testdata/checksum.ts";
import { touchPages } from "./testdata/touch.ts";
import type { WriteRequest } from "./testdata/write_worker.ts";
import { UnicastPageServer } from "./unicast/server.ts";

const PS = 4096;

function sharedMemory(wasmPages: number): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages, shared: true });
}

function randomFill(bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length; off += 65536) {
    crypto.getRandomValues(bytes.subarray(off, Math.min(bytes.length, off + 65536)));
  }
}

function checksumOf(bytes: Uint8Array, page: number): number {
  return pageChecksum(new Int32Array(bytes.buffer, bytes.byteOffset + page * PS, PS / 4));
}

function shuffled(count: number): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all;
}

/** A source that must not be used (direct resolution serves everything). */
class UnusedSource implements PageSource {
  asked: number[] = [];
  request(pages: number[]): void {
    this.asked.push(...pages);
  }
}

/** A Worker writing random words into random pages until stopped. */
function startWriter(memory: WebAssembly.Memory, pageCount: number) {
  const control = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL("./testdata/write_worker.ts", import.meta.url), {
    type: "module",
  });
  const done = new Promise<number>((resolve) => {
    worker.onmessage = (event: MessageEvent<number>) => resolve(event.data);
  });
  const request: WriteRequest = {
    buffer: memory.buffer as SharedArrayBuffer,
    pageCount,
    pageSize: PS,
    control: control.buffer as SharedArrayBuffer,
  };
  worker.postMessage(request);
  return {
    writes: () => Atomics.load(control, 1),
    stop: async () => {
      Atomics.store(control, 0, 1);
      await done;
      worker.terminate();
    },
  };
}

Deno.test("direct snapshot: a local clone reads clone-time pages while the parent writes", async () => {
  const pages = 1024;
  const parent = sharedMemory(pages / 16);
  const view = new Uint8Array(parent.buffer);
  randomFill(view);
  const expected = view.slice();
  const snapshot = Snapshot.capture({ memory: parent, pageSize: PS });
  await snapshot.ready;
  const writer = startWriter(parent, pages);
  const pageMap = new Uint8Array(pages).fill(PAGE_PRESENT);
  for (let p = 0; p < pages; p += 9) pageMap[p] = PAGE_ZERO;
  try {
    while (writer.writes() < 1000) await new Promise((r) => setTimeout(r, 1));
    for (const fill of [false, true]) {
      const clone = sharedMemory(pages / 16);
      const source = new UnusedSource();
      const memtap = await Memtap.open({
        memory: clone,
        pageMap,
        source,
        direct: { kind: "snapshot", buffers: snapshot.sharedBuffers() },
      });
      try {
        if (fill) await memtap.fill();
        const order = shuffled(pages);
        const { sums } = await touchPages({
          buffer: clone.buffer as SharedArrayBuffer,
          pages: order,
          pageSize: PS,
          mode: "checksum",
        }).result;
        const zero = pageChecksum(new Int32Array(PS / 4));
        assert.deepEqual(
          sums,
          order.map((p) => (pageMap[p] === PAGE_PRESENT ? checksumOf(expected, p) : zero)),
        );
        const s = memtap.stats();
        assert.equal(s.resolver, "snapshot");
        assert.deepEqual(source.asked, []);
        const want = pageMap.filter((m) => m === PAGE_PRESENT).length;
        assert.equal(await pagesFetched(memtap, want), want);
        if (!fill) assert.ok(s.faultP50Us > 0);
      } finally {
        await memtap.close();
      }
    }
    assert.ok(snapshot.stats().pagesSaved > 0, "the parent wrote pages during the test");
  } finally {
    await writer.stop();
    await snapshot.release();
  }
});

/**
 * The memtap's pagesFetched once it reaches `want`, or after a second: the fault worker counts a
 * run after the UFFDIO_COPY that already woke its toucher.
 */
async function pagesFetched(memtap: Memtap, want: number): Promise<number> {
  const deadline = performance.now() + 1000;
  while (memtap.stats().pagesFetched < want && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1));
  }
  return memtap.stats().pagesFetched;
}

function servedFork(pages: number) {
  const bytes = new Uint8Array(pages * PS);
  randomFill(bytes);
  const pageMap = new Uint8Array(pages).fill(PAGE_PRESENT);
  for (let p = 0; p < pages; p += 5) pageMap[p] = PAGE_ZERO;
  const fork = {
    forkId: crypto.getRandomValues(new Uint8Array(16)),
    key: crypto.getRandomValues(new Uint8Array(32)),
    pageSize: PS,
    pageCount: pages,
    pageMap,
    reader: { readPages: (f: number, c: number) => bytes.subarray(f * PS, (f + c) * PS) },
    clones: 1,
  };
  return { bytes, pageMap, fork };
}

Deno.test("direct unicast: the fault worker fetches and installs pages itself", async () => {
  const pages = 512;
  const { bytes, pageMap, fork } = servedFork(pages);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(fork);
  try {
    for (const fill of [false, true]) {
      const clone = sharedMemory(pages / 16);
      const source = new UnusedSource();
      const memtap = await Memtap.open({
        memory: clone,
        pageMap,
        source,
        direct: {
          kind: "unicast",
          access: { ...fork, server: server.address },
        },
      });
      try {
        if (fill) await memtap.fill();
        const order = shuffled(pages).slice(0, 300);
        const { sums } = await touchPages({
          buffer: clone.buffer as SharedArrayBuffer,
          pages: order,
          pageSize: PS,
          mode: "checksum",
        }).result;
        const zero = pageChecksum(new Int32Array(PS / 4));
        assert.deepEqual(
          sums,
          order.map((p) => (pageMap[p] === PAGE_PRESENT ? checksumOf(bytes, p) : zero)),
        );
        const s = memtap.stats();
        assert.equal(s.resolver, "unicast", s.directFailure);
        assert.deepEqual(source.asked, []);
        assert.ok(s.direct.bytesReceived > 0);
        assert.equal(s.direct.rejected, 0);
        const fetched = fill ? [...pageMap.keys()] : order;
        const want = fetched.filter((p) => pageMap[p] === PAGE_PRESENT).length;
        assert.equal(await pagesFetched(memtap, want), want);
      } finally {
        await memtap.close();
      }
    }
  } finally {
    await server.close();
  }
});

Deno.test("direct unicast falls back to the page source when the server is unreachable or rejects", async () => {
  const pages = 64;
  const { bytes, pageMap, fork } = servedFork(pages);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(fork);
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadAddress = `127.0.0.1:${closed.addr.port}`;
  closed.close();
  try {
    for (
      const [why, address, key] of [
        ["refused", deadAddress, fork.key],
        ["wrong key", server.address, new Uint8Array(32)],
      ] as const
    ) {
      const clone = sharedMemory(pages / 16);
      const asked: number[] = [];
      const tap: { memtap?: Memtap } = {};
      const source: PageSource = {
        request(list) {
          asked.push(...list);
          setTimeout(() => {
            for (const p of list) tap.memtap!.install(p, bytes.subarray(p * PS, (p + 1) * PS));
          });
        },
      };
      const memtap = tap.memtap = await Memtap.open({
        memory: clone,
        pageMap,
        source,
        direct: {
          kind: "unicast",
          access: { ...fork, key, server: address },
          idleTimeoutMs: 500,
        },
      });
      try {
        const order = [1, 2, 3, 7, 63];
        const { sums } = await touchPages({
          buffer: clone.buffer as SharedArrayBuffer,
          pages: order,
          pageSize: PS,
          mode: "checksum",
        }).result;
        assert.deepEqual(sums, order.map((p) => checksumOf(bytes, p)), why);
        const s = memtap.stats();
        assert.equal(s.resolver, "source", why);
        assert.ok(s.directFailure, why);
        assert.deepEqual(asked.sort((a, b) => a - b), order, why);
      } finally {
        await memtap.close();
      }
    }
  } finally {
    await server.close();
  }
});

Deno.test("direct unicast: a resolver frees its session MACs when closed, and cannot be used after", async () => {
  const pages = 64;
  const { pageMap, fork } = servedFork(pages);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(fork);
  // Only the HELLO exchange runs here (on this thread): no fault is read, no page installed.
  const ctx: DirectContext = {
    uffd: -1,
    base: 0,
    pageSize: PS,
    pageCount: pages,
    marks: pageMap,
    state: new Uint8Array(pages),
    stats: new Int32Array(STAT_SLOTS),
    timing: new Float64Array(TIME_SLOTS),
  };
  const port = Number(server.address.split(":")[1]);
  const direct = { kind: "unicast" as const, ipv4: "127.0.0.1", port, idleTimeoutMs: 2000 };
  const before = liveMacContexts();
  try {
    for (let i = 0; i < 50; i++) {
      const r = UnicastResolver.open(ctx, { ...direct, forkId: fork.forkId, key: fork.key });
      assert.equal(liveMacContexts(), before + 2);
      r.close();
      r.close();
      assert.equal(liveMacContexts(), before);
      assert.throws(() => r.request([1], NaN), CryptoError);
    }
    // A HELLO refused (wrong key) leaves nothing behind either.
    assert.throws(() =>
      UnicastResolver.open(ctx, { ...direct, forkId: fork.forkId, key: new Uint8Array(32) })
    );
    assert.equal(liveMacContexts(), before);
  } finally {
    await server.close();
  }
});
