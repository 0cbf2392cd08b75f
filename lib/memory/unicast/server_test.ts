import assert from "node:assert/strict";
import { isUserfaultfdAvailable } from "../availability.ts";
import { PAGE_PRESENT, PAGE_ZERO } from "../page_mark.ts";
import { MemoryServer } from "../server.ts";
import { Snapshot } from "../snapshot.ts";
import type { ServedFork } from "../transport.ts";
import { UnicastPageClient } from "./client.ts";
import { UnicastPageServer } from "./server.ts";
import {
  decodeFrame,
  encodeFrame,
  type Frame,
  FRAME_ERROR,
  FRAME_HELLO,
  FRAME_PAGES,
  FRAME_REQUEST,
  FrameReader,
  helloAuth,
  type PageRun,
  type SessionAuth,
  sessionAuth,
} from "./wire.ts";

const PS = 4096;

/** A fork of `pages` pages, page p filled with (p + seed) & 0xff; every 4th page ZERO. */
function fork(pages: number, seed = 1): ServedFork & { bytes: Uint8Array } {
  const bytes = new Uint8Array(pages * PS);
  for (let p = 0; p < pages; p++) bytes.fill((p + seed) & 0xff, p * PS, (p + 1) * PS);
  const pageMap = new Uint8Array(pages).fill(PAGE_PRESENT);
  for (let p = 0; p < pages; p += 4) pageMap[p] = PAGE_ZERO;
  return {
    forkId: crypto.getRandomValues(new Uint8Array(16)),
    key: crypto.getRandomValues(new Uint8Array(32)),
    pageSize: PS,
    pageCount: pages,
    pageMap,
    reader: { readPages: (first, count) => bytes.slice(first * PS, (first + count) * PS) },
    clones: 1,
    bytes,
  };
}

function presentCount(f: ServedFork): number {
  return f.pageMap.filter((m) => m === PAGE_PRESENT).length;
}

/** A hand-driven connection speaking WIRE.md, to send what the real client never would. */
class RawSession {
  #conn: Deno.TcpConn;
  #reader = new FrameReader();
  #buf = new Uint8Array(1 << 20);
  #tx = 1;
  forkId: Uint8Array;
  txAuth: SessionAuth | undefined;
  rxAuth: SessionAuth | undefined;
  bytesIn = 0;

  private constructor(conn: Deno.TcpConn, forkId: Uint8Array) {
    this.#conn = conn;
    this.forkId = forkId;
  }

  static async connect(address: string, forkId: Uint8Array): Promise<RawSession> {
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    return new RawSession(await Deno.connect({ hostname: "127.0.0.1", port }), forkId);
  }

  /** HELLO with `key`; the server's HELLO, or null if it closed the connection. */
  async hello(key: Uint8Array): Promise<Frame | null> {
    const nonce = crypto.getRandomValues(new Uint8Array(16));
    await this.write(encodeFrame(
      { type: FRAME_HELLO, seq: 0, forkId: this.forkId, nonce },
      helloAuth(key, new Uint8Array(16)),
    ));
    const bytes = await this.nextBytes();
    if (bytes === null) return null;
    const reply = decodeFrame(bytes, helloAuth(key, nonce));
    assert.equal(reply.type, FRAME_HELLO);
    if (reply.type !== FRAME_HELLO) return null;
    this.txAuth = sessionAuth(key, nonce, reply.nonce, "client");
    this.rxAuth = sessionAuth(key, nonce, reply.nonce, "server");
    return reply;
  }

  async request(runs: PageRun[]): Promise<void> {
    await this.write(encodeFrame(
      { type: FRAME_REQUEST, seq: this.#tx++, forkId: this.forkId, runs },
      this.txAuth!,
    ));
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let done = 0; done < bytes.byteLength;) {
      done += await this.#conn.write(bytes.subarray(done));
    }
  }

  /** The next frame, authenticated; null when the server closed the connection. */
  async next(): Promise<Frame | null> {
    const bytes = await this.nextBytes();
    return bytes === null ? null : decodeFrame(bytes, this.rxAuth!);
  }

  /** The next frame's bytes; null when the server closed; throws after 5 s of silence. */
  nextBytes(): Promise<Uint8Array | null> {
    return within(5000, "the server's next frame", this.#nextBytes());
  }

  async #nextBytes(): Promise<Uint8Array | null> {
    for (;;) {
      const next = this.#reader.next();
      if (next !== undefined) return next.bytes.slice();
      let n: number | null;
      try {
        n = await this.#conn.read(this.#buf);
      } catch {
        return null; // reset
      }
      if (n === null) return null;
      this.bytesIn += n;
      this.#reader.push(this.#buf.subarray(0, n));
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
    this.txAuth?.free();
    this.rxAuth?.free();
  }
}

/** `promise`, or a rejection after `ms`: a wedged server fails a test instead of hanging it. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `condition()` holds; fails the test if it does not within `ms`. */
async function until(ms: number, what: string, condition: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every PRESENT page of `f`, fetched with a fresh client; checks each page's bytes. */
async function fetchAll(f: ServedFork & { bytes: Uint8Array }, address: string): Promise<number> {
  const client = new UnicastPageClient({ ...f, server: address });
  try {
    const want = presentCount(f);
    const wrong: number[] = [];
    let got = 0;
    const all = Promise.withResolvers<void>();
    client.onPages((first, bytes) => {
      for (let i = 0; i < bytes.byteLength / PS; i++) {
        const page = first + i;
        const expected = f.bytes.subarray(page * PS, (page + 1) * PS);
        const same = f.pageMap[page] === PAGE_PRESENT &&
          bytes.subarray(i * PS, (i + 1) * PS).every((b, k) => b === expected[k]);
        if (!same) wrong.push(page);
        got++;
      }
      if (got === want) all.resolve();
    });
    client.request(Array.from({ length: f.pageCount }, (_, i) => i));
    const failed = client.failed.then((e) => Promise.reject(e));
    await within(10_000, "every page", Promise.race([all.promise, failed]));
    assert.deepEqual(wrong, [], "pages that are not PRESENT or not as at clone time");
    return client.stats().bytesReceived;
  } finally {
    await client.close();
  }
}

/** What this process's descriptors point at ("socket:[inode]", "anon_inode:[eventfd]", …). */
function openFds(): string[] {
  const targets: string[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      targets.push(Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch { /* closed meanwhile (the directory's own descriptor) */ }
  }
  return targets;
}

function eventfds(targets: string[]): number {
  return targets.filter((t) => t === "anon_inode:[eventfd]").length;
}

Deno.test("server worker: concurrent sessions of two forks get their own pages; stats add up", async () => {
  const a = fork(2048, 1);
  const b = fork(512, 7);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  try {
    server.addFork(a);
    server.addFork(b);
    const received = await Promise.all([
      ...Array.from({ length: 4 }, () => fetchAll(a, server.address)),
      ...Array.from({ length: 4 }, () => fetchAll(b, server.address)),
    ]);
    const sa = server.stats(a.forkId);
    const sb = server.stats(b.forkId);
    assert.equal(sa.bytesSent, received.slice(0, 4).reduce((x, y) => x + y));
    assert.equal(sb.bytesSent, received.slice(4).reduce((x, y) => x + y));
    assert.ok(sa.packetsSent >= 4 * (1 + presentCount(a) / 64), JSON.stringify(sa));
    assert.ok(sa.packetsReceived >= 8 && sa.bytesReceived > 0, JSON.stringify(sa));
    assert.equal(sa.rejected + sb.rejected, 0);
    const total = server.stats();
    assert.equal(total.bytesSent, sa.bytesSent + sb.bytesSent);
    assert.equal(total.packetsReceived, sa.packetsReceived + sb.packetsReceived);
  } finally {
    await server.close();
  }
});

Deno.test("server worker: a forged hello and a forged frame are rejected, the server keeps serving", async () => {
  const f = fork(256);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  try {
    server.addFork(f);
    // Wrong key: the HELLO's MAC fails, the connection is closed, nothing is sent.
    const forged = await RawSession.connect(server.address, f.forkId);
    assert.equal(await forged.hello(new Uint8Array(32)), null);
    assert.equal(forged.bytesIn, 0);
    forged.close();
    assert.equal(server.stats(f.forkId).rejected, 1);
    // Right key, then a REQUEST with one bit flipped: rejected, connection closed.
    const flipped = await RawSession.connect(server.address, f.forkId);
    assert.notEqual(await flipped.hello(f.key), null);
    const request = encodeFrame(
      { type: FRAME_REQUEST, seq: 1, forkId: f.forkId, runs: [{ first: 1, count: 1 }] },
      flipped.txAuth!,
    );
    request[36] ^= 1;
    await flipped.write(request);
    assert.equal(await flipped.nextBytes(), null);
    flipped.close();
    // A header that is not even SFPG.
    const garbage = await RawSession.connect(server.address, f.forkId);
    await garbage.write(new Uint8Array(64).fill(0xee));
    assert.equal(await garbage.nextBytes(), null);
    garbage.close();
    // A fork nobody serves.
    const unknown = await RawSession.connect(server.address, new Uint8Array(16).fill(3));
    assert.equal(await unknown.hello(f.key), null);
    unknown.close();
    assert.equal(server.stats(f.forkId).rejected, 2);
    assert.equal(server.stats().rejected, 4);
    // The server is still serving, and only what was authenticated was counted as served.
    await fetchAll(f, server.address);
    assert.equal(server.failure, undefined);
  } finally {
    await server.close();
  }
});

Deno.test("server worker: a run outside the fork gets an ERROR, the session goes on", async () => {
  const f = fork(64);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  const s = await RawSession.connect(server.address, f.forkId);
  try {
    server.addFork(f);
    await s.hello(f.key);
    await s.request([{ first: 60, count: 10 }, { first: 5, count: 3 }]);
    const error = await s.next();
    assert.equal(error?.type, FRAME_ERROR);
    const pages = await s.next();
    assert.ok(pages?.type === FRAME_PAGES);
    assert.deepEqual([pages.first, pages.count], [5, 3]);
    assert.equal(pages.bytes[0], 6);
  } finally {
    s.close();
    await server.close();
  }
});

Deno.test("server worker: a removed fork's sessions are closed and later requests rejected", async () => {
  const f = fork(256);
  const other = fork(64, 9);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  try {
    server.addFork(f);
    server.addFork(other);
    const s = await RawSession.connect(server.address, f.forkId);
    await s.hello(f.key);
    await s.request([{ first: 1, count: 1 }]);
    assert.equal((await s.next())?.type, FRAME_PAGES);
    await server.removeFork(f.forkId);
    // The open session is closed at once; a request on it gets nothing.
    await s.request([{ first: 2, count: 1 }]).catch(() => {});
    assert.equal(await s.nextBytes(), null);
    s.close();
    // A new session for the removed fork is refused at its HELLO.
    const rejectedBefore = server.stats().rejected;
    const late = await RawSession.connect(server.address, f.forkId);
    assert.equal(await late.hello(f.key), null);
    late.close();
    assert.equal(server.stats().rejected, rejectedBefore + 1);
    // Other forks are unaffected.
    await fetchAll(other, server.address);
  } finally {
    await server.close();
  }
});

/** Names of this process's worker threads ("worker-7", …): each new Worker gets a new one. */
function workerThreads(): Set<string> {
  const names = new Set<string>();
  for (const task of Deno.readDirSync("/proc/self/task")) {
    try {
      const name = Deno.readTextFileSync(`/proc/self/task/${task.name}/comm`).trim();
      if (name.startsWith("worker-")) names.add(name);
    } catch { /* ended meanwhile */ }
  }
  return names;
}

Deno.test("server worker: with no fork left it is replaced (dropping the forks' memory), and the new one serves", async () => {
  const before = workerThreads();
  const fdsBefore = openFds();
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  try {
    const first = [...workerThreads()].filter((t) => !before.has(t));
    assert.equal(first.length, 1, `one server thread: ${first}`);
    for (let round = 0; round < 3; round++) {
      const f = fork(64, round + 1);
      server.addFork(f);
      await fetchAll(f, server.address);
      await server.removeFork(f.forkId);
    }
    const serving = () => [...workerThreads()].filter((t) => !before.has(t));
    await until(5_000, "the replaced threads end", () => serving().length === 1);
    assert.notEqual(serving()[0], first[0], "a fresh thread serves");
    const f = fork(32, 7);
    server.addFork(f);
    await fetchAll(f, server.address);
  } finally {
    await server.close();
  }
  const leaked = openFds().filter((t) => t.startsWith("socket:") && !fdsBefore.includes(t));
  assert.deepEqual(leaked, [], "sockets of replaced threads");
  assert.ok(eventfds(openFds()) <= eventfds(fdsBefore), "eventfds of replaced threads");
});

Deno.test("server worker: sessions that come and go leave no cipher context behind", async () => {
  const f = fork(64);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  try {
    server.addFork(f);
    for (let round = 0; round < 5; round++) {
      const sessions = await Promise.all(
        Array.from({ length: 20 }, () => RawSession.connect(server.address, f.forkId)),
      );
      for (const s of sessions) {
        await s.hello(f.key);
        await s.request([{ first: 1, count: 1 }]);
        assert.equal((await s.next())?.type, FRAME_PAGES);
      }
      // Two per authenticated session (one a direction); a refused HELLO makes none.
      assert.equal(server.macContexts, 2 * sessions.length);
      const forged = await RawSession.connect(server.address, f.forkId);
      assert.equal(await forged.hello(new Uint8Array(32)), null);
      forged.close();
      assert.equal(server.macContexts, 2 * sessions.length);
      for (const s of sessions) s.close();
      await until(2000, "every context freed", () => server.macContexts === 0);
    }
    // Sessions closed by the server (their fork removed) free theirs too.
    const s = await RawSession.connect(server.address, f.forkId);
    await s.hello(f.key);
    assert.equal(server.macContexts, 2);
    await server.removeFork(f.forkId);
    assert.equal(server.macContexts, 0);
    s.close();
  } finally {
    await server.close();
  }
});

Deno.test("server worker: a client that does not read does not hold up the others", async () => {
  const f = fork(8192);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  const hog = await RawSession.connect(server.address, f.forkId);
  try {
    server.addFork(f);
    await hog.hello(f.key);
    // 24 MiB asked for and never read: the worker must park this session, not block on it.
    await hog.request([{ first: 0, count: f.pageCount }]);
    await new Promise((r) => setTimeout(r, 50));
    const s = await RawSession.connect(server.address, f.forkId);
    await s.hello(f.key);
    await s.request([{ first: 4097, count: 1 }]);
    // A server held up by the hog never answers: the bound only turns a hang into a failure.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await Promise.race([
      s.next(),
      new Promise<"held up">((r) => timer = setTimeout(() => r("held up"), 10_000)),
    ]);
    clearTimeout(timer);
    s.close();
    assert.notEqual(reply, "held up", "the other client was not answered while the hog sat");
    assert.ok(reply !== "held up" && reply?.type === FRAME_PAGES && reply.first === 4097);
  } finally {
    hog.close();
    await server.close();
  }
});

Deno.test("server worker: close() ends the worker and frees every socket", async () => {
  // Warm up what a first server loads once per process (libraries, the worker's module graph).
  await (UnicastPageServer.listen({ hostname: "127.0.0.1" })).close();
  const before = openFds();
  const f = fork(128);
  const server = UnicastPageServer.listen({ hostname: "127.0.0.1" });
  server.addFork(f);
  const sessions = await Promise.all(
    Array.from({ length: 3 }, () => RawSession.connect(server.address, f.forkId)),
  );
  for (const s of sessions) await s.hello(f.key);
  const serving = openFds().filter((t) => !before.includes(t));
  // The listener, and both ends of each session (the eventfd is not unique: counted below).
  assert.ok(serving.filter((t) => t.startsWith("socket:")).length >= 1 + 3 * 2, `${serving}`);
  await server.close();
  await server.close(); // idempotent
  for (const s of sessions) {
    assert.equal(await s.nextBytes(), null, "the server closed the session");
    s.close();
  }
  const after = openFds();
  assert.deepEqual(after.filter((t) => t.startsWith("socket:") && !before.includes(t)), []);
  assert.ok(eventfds(after) <= eventfds(before), "the worker's eventfd is closed");
  const port = Number(server.address.split(":")[1]);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("memory server: the worker serves a Snapshot's clone-time pages and counts them", async () => {
  const available = isUserfaultfdAvailable();
  if (!available.ok) {
    console.warn(`skipped: the snapshot source needs userfaultfd: ${available.reason}`);
    return;
  }
  const pages = 256;
  const memory = new WebAssembly.Memory({ initial: pages / 16, maximum: pages / 16, shared: true });
  const live = new Uint8Array(memory.buffer);
  for (let p = 0; p < pages; p++) live.fill(p & 0xff, p * PS, (p + 1) * PS);
  const cloneTime = live.slice();
  const snapshot = Snapshot.capture({ memory });
  await snapshot.ready;
  const server = new MemoryServer(UnicastPageServer.listen({ hostname: "127.0.0.1" }));
  const forkId = crypto.getRandomValues(new Uint8Array(16));
  const key = crypto.getRandomValues(new Uint8Array(32));
  const pageMap = new Uint8Array(pages).fill(PAGE_PRESENT);
  let released = false;
  server.add({
    forkId,
    key,
    pageSize: PS,
    pageCount: pages,
    pageMap,
    reader: snapshot,
    clones: 1,
    release: () => {
      released = true;
      return snapshot.release();
    },
  });
  try {
    // The parent writes after the fork: the server must still send clone-time bytes.
    for (let p = 0; p < pages; p += 3) live[p * PS + 100] = 0xff;
    const clone = { forkId, key, pageSize: PS, pageCount: pages, pageMap, clones: 1 };
    await fetchAll({ ...clone, reader: snapshot, bytes: cloneTime }, server.address);
    const stats = server.stats(forkId)!;
    assert.equal(stats.pagesServed, pages);
    assert.ok(stats.transport.bytesSent > pages * PS, JSON.stringify(stats));
    await server.remove(forkId);
    assert.ok(released);
    assert.equal(server.stats(forkId), undefined);
  } finally {
    await server.close();
    await snapshot.release();
  }
});
