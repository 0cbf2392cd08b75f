import assert from "node:assert/strict";
import { isUserfaultfdAvailable, NO_UFFD_ENV } from "./availability.ts";
import { idleFaultWorkers } from "./fault_worker_handle.ts";
import { Memtap, MemtapError, type PageSource } from "./memtap.ts";
import { PageFile } from "./page_file.ts";
import { PAGE_PRESENT, PAGE_ZERO } from "./page_mark.ts";
import { pageChecksum } from "./testdata/checksum.ts";
import { oneSpareFaultWorker } from "./testdata/spares.ts";
import { touchPages } from "./testdata/touch.ts";

const PS = 4096;

function sharedMemory(wasmPages: number, maximum = wasmPages): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: wasmPages, maximum, shared: true });
}

/** Random parent contents for `pages` pages. */
function randomContents(pages: number): Uint8Array {
  const bytes = new Uint8Array(pages * PS);
  for (let off = 0; off < bytes.length; off += 65536) {
    crypto.getRandomValues(bytes.subarray(off, Math.min(bytes.length, off + 65536)));
  }
  return bytes;
}

function checksumOf(bytes: Uint8Array, page: number): number {
  return pageChecksum(new Int32Array(bytes.buffer, page * PS, PS / 4));
}

function shuffledSample(count: number, of: number): number[] {
  const all = Array.from({ length: of }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, count);
}

/** A page source in this process; answers synchronously, later, or never. */
class FakeSource implements PageSource {
  requests: number[][] = [];
  memtap?: Memtap;
  constructor(
    readonly contents: Uint8Array,
    readonly answer: "now" | "later" | "never",
    readonly run = 1,
  ) {}
  request(pages: number[]): void {
    this.requests.push(pages);
    if (this.answer === "never") return;
    const send = () => {
      for (const page of pages) {
        const first = page - (page % this.run);
        const count = Math.min(this.run, this.contents.length / PS - first);
        this.memtap!.install(first, this.contents.subarray(first * PS, (first + count) * PS));
      }
    };
    if (this.answer === "now") send();
    else setTimeout(send, 0);
  }
  requested(): number[] {
    return this.requests.flat();
  }
}

/** Reads `pages` of `memory` from another thread and checks each against `contents`. */
async function touchAndCheck(
  memory: WebAssembly.Memory,
  contents: Uint8Array,
  pages: number[],
): Promise<void> {
  const touch = touchPages({
    buffer: memory.buffer as SharedArrayBuffer,
    pages,
    pageSize: PS,
    mode: "checksum",
  });
  const { sums } = await touch.result;
  assert.deepEqual(sums, pages.map((p) => checksumOf(contents, p)));
}

async function openWith(
  memory: WebAssembly.Memory,
  pageMap: Uint8Array,
  source: FakeSource,
  extra: { fetchTimeoutMs?: number; retries?: number } = {},
): Promise<Memtap> {
  // The sources here lose nothing; an ask again would only be a slow machine's timer, and the
  // tests count requests.
  const options = { fetchTimeoutMs: 10_000, ...extra };
  const memtap = await Memtap.open({ memory, pageSize: PS, pageMap, source, ...options });
  source.memtap = memtap;
  return memtap;
}

/** A memtap over `pages` pages, all PRESENT, fed by a fresh source of random contents. */
async function presentMemtap(pages: number, answer: "now" | "later") {
  const memory = sharedMemory(pages / 16);
  const contents = randomContents(pages);
  const source = new FakeSource(contents, answer);
  const memtap = await openWith(memory, new Uint8Array(pages).fill(PAGE_PRESENT), source);
  return { memory, contents, source, memtap };
}

Deno.test("memtap fills a clone lazily with exactly the source's pages", async () => {
  const pages = 256;
  const memory = sharedMemory(pages / 16);
  const contents = randomContents(pages);
  for (const answer of ["now", "later"] as const) {
    const source = new FakeSource(contents, answer);
    const memtap = await openWith(memory, new Uint8Array(pages).fill(PAGE_PRESENT), source);
    try {
      const sample = shuffledSample(120, pages);
      await touchAndCheck(memory, contents, sample);
      const requested = source.requested();
      assert.equal(new Set(requested).size, requested.length, "a page was asked for twice");
      assert.deepEqual([...requested].sort((a, b) => a - b), [...sample].sort((a, b) => a - b));
      const stats = memtap.stats();
      assert.equal(stats.pagesFetched, sample.length);
      assert.equal(stats.pagesInstalledUnrequested, 0);
    } finally {
      await memtap.close();
    }
  }
});

Deno.test("a closed memtap's fault worker goes back to the spares and serves the next clone", async () => {
  const release = await oneSpareFaultWorker();
  try {
    const pages = 64;
    for (let round = 0; round < 2; round++) {
      const { memory, contents, memtap } = await presentMemtap(pages, "later");
      assert.equal(idleFaultWorkers(), 0, "memtap did not take the spare");
      try {
        await touchAndCheck(memory, contents, shuffledSample(20, pages));
      } finally {
        await memtap.close();
      }
      // Back at once, long before the pool would have started a replacement.
      assert.equal(idleFaultWorkers(), 1, `round ${round}: the worker was not given back`);
    }
  } finally {
    release();
  }
});

Deno.test("memtap wakes a clone after a batch of installs, not at its first page", async () => {
  const pages = 256;
  const batch = 8;
  const memory = sharedMemory(pages / 16);
  const contents = randomContents(pages);
  // Answers each fault with the batch it starts, one install a page, as datagrams arrive.
  const source: PageSource = {
    request(asked) {
      setTimeout(() => {
        for (const page of asked) {
          for (let p = page; p < Math.min(pages, page + batch); p++) {
            memtap.install(p, contents.subarray(p * PS, (p + 1) * PS));
          }
        }
      }, 0);
    },
  };
  const memtap = await Memtap.open({
    memory,
    pageSize: PS,
    pageMap: new Uint8Array(pages).fill(PAGE_PRESENT),
    source,
  });
  try {
    await touchAndCheck(memory, contents, Array.from({ length: pages }, (_, i) => i));
    // Woken at its first page, the toucher would race the installs of the rest.
    assert.equal(memtap.stats().faults, pages / batch);
  } finally {
    await memtap.close();
  }
});

Deno.test("memtap installs unrequested pages once and never asks for them", async () => {
  const pages = 64;
  const { memory, contents, source, memtap } = await presentMemtap(pages, "now");
  try {
    memtap.install(0, contents.subarray(0, 32 * PS)); // pushed before anyone asked
    memtap.install(8, contents.subarray(8 * PS, 40 * PS)); // overlaps: the first 24 are ignored
    const all = Array.from({ length: pages }, (_, i) => i);
    const { sums } = await touchPages({
      buffer: memory.buffer as SharedArrayBuffer,
      pages: all,
      pageSize: PS,
      mode: "checksum",
    }).result;
    assert.deepEqual(sums, all.map((p) => checksumOf(contents, p)));
    assert.ok(source.requested().every((p) => p >= 40), "asked for a page already installed");
    assert.equal(memtap.stats().pagesInstalledUnrequested, 40);
  } finally {
    await memtap.close();
  }
});

/** The host side of a page file: a page asked for is written to the file and announced. */
class FileSource implements PageSource {
  requests: number[] = [];
  memtaps: Memtap[] = [];
  constructor(readonly file: PageFile, readonly contents: Uint8Array) {}
  write(page: number): void {
    this.file.write(page, this.contents.subarray(page * PS, (page + 1) * PS));
    for (const memtap of this.memtaps) memtap.mapped(page, 1);
  }
  request(pages: number[]): void {
    this.requests.push(...pages);
    setTimeout(() => pages.forEach((page) => this.write(page)), 0);
  }
}

Deno.test("clones over one page file read its pages without faults and write their own", async () => {
  const pages = 64;
  const contents = randomContents(pages);
  const file = PageFile.create(pages);
  const source = new FileSource(file, contents);
  const open = async () => {
    const memory = sharedMemory(pages / 16);
    const pageMap = new Uint8Array(pages).fill(PAGE_PRESENT);
    const memtap = await Memtap.open({
      memory,
      pageSize: PS,
      pageMap,
      source,
      backing: file,
      fetchTimeoutMs: 10_000,
    });
    source.memtaps.push(memtap);
    return { memory, memtap };
  };
  const a = await open();
  const b = await open();
  try {
    for (let page = 0; page < 32; page++) source.write(page);
    await touchAndCheck(a.memory, contents, [0, 5, 31]);
    assert.equal(a.memtap.stats().faults, 0, "the file's pages need no fault");
    await touchAndCheck(b.memory, contents, [40, 41]);
    assert.deepEqual(source.requests, [40, 41], "a missing page faults and is fetched");
    await touchAndCheck(a.memory, contents, [40]);
    assert.equal(a.memtap.stats().faults, 0, "a sibling's page is in the file");
    assert.throws(() => a.memtap.install(0, contents.subarray(0, PS)), MemtapError);

    const mine = new Uint8Array(a.memory.buffer);
    mine[5 * PS] ^= 0xff; // mapped already: a copy on write, no fault
    const expected = contents.slice();
    expected[5 * PS] ^= 0xff;
    await touchAndCheck(b.memory, contents, [5]); // the write stayed the clone's

    await a.memtap.fill();
    await a.memtap.close();
    file.write(0, new Uint8Array(PS).fill(7));
    const all = Array.from({ length: pages }, (_, i) => i);
    await touchAndCheck(a.memory, expected, all); // kept after close, and no longer the file's
    await b.memtap.close();
    assert.ok(new Uint8Array(b.memory.buffer, 0, pages * PS).every((x) => x === 0), "emptied");
  } finally {
    await a.memtap.close();
    await b.memtap.close();
    file.close();
  }
});

Deno.test("memtap never requests avoided pages and they read as zeros", async () => {
  const pages = 512;
  const memory = sharedMemory(pages / 16);
  const contents = randomContents(pages);
  const pageMap = new Uint8Array(pages);
  for (let i = 0; i < pages; i++) {
    pageMap[i] = Math.random() < 0.3 ? PAGE_PRESENT : PAGE_ZERO + (i % 4);
  }
  const source = new FakeSource(contents, "now");
  const memtap = await openWith(memory, pageMap, source);
  try {
    const order = shuffledSample(pages, pages);
    const { sums } = await touchPages({
      buffer: memory.buffer as SharedArrayBuffer,
      pages: order,
      pageSize: PS,
      mode: "checksum",
    }).result;
    const zero = pageChecksum(new Int32Array(PS / 4));
    assert.deepEqual(
      sums,
      order.map((p) => (pageMap[p] === PAGE_PRESENT ? checksumOf(contents, p) : zero)),
    );
    assert.ok(source.requested().every((p) => pageMap[p] === PAGE_PRESENT));
    const stats = memtap.stats();
    const avoided = stats.pagesAvoided;
    const marked = (m: number) => pageMap.filter((x) => x === m).length;
    assert.deepEqual(avoided, {
      zero: marked(PAGE_ZERO),
      untouched: marked(PAGE_ZERO + 1),
      hinted: marked(PAGE_ZERO + 2),
      free: marked(PAGE_ZERO + 3),
    });
    assert.equal(stats.pagesFetched, marked(PAGE_PRESENT));
  } finally {
    await memtap.close();
  }
});

Deno.test("memtap settles `failed` with a clear error when the source never answers", async () => {
  const memory = sharedMemory(1);
  const source = new FakeSource(randomContents(16), "never");
  const memtap = await openWith(memory, new Uint8Array(16).fill(PAGE_PRESENT), source, {
    fetchTimeoutMs: 20,
    retries: 2,
  });
  const touch = touchPages({
    buffer: memory.buffer as SharedArrayBuffer,
    pages: [3],
    pageSize: PS,
    mode: "touch",
  });
  try {
    const error = await memtap.failed;
    assert.ok(error instanceof MemtapError);
    assert.match(error.message, /^Cannot fetch page 3: no answer after 3 requests \(20 ms each\)$/);
    assert.deepEqual(source.requested(), [3, 3, 3]);
    assert.equal(memtap.stats().pagesReRequested, 2);
  } finally {
    await memtap.close(); // unregister wakes the blocked toucher (it reads zero)
    const { sums } = await touch.result;
    assert.deepEqual(sums, [0]);
  }
});

Deno.test("memtap leaves memory grown after open to the kernel", async () => {
  const memory = sharedMemory(1, 4);
  const source = new FakeSource(randomContents(16), "now");
  const memtap = await openWith(memory, new Uint8Array(16).fill(PAGE_PRESENT), source);
  try {
    memory.grow(1);
    const { sums } = await touchPages({
      buffer: memory.buffer as SharedArrayBuffer,
      pages: [16, 20, 1],
      pageSize: PS,
      mode: "checksum",
    }).result;
    assert.equal(sums[0], pageChecksum(new Int32Array(PS / 4)));
    assert.equal(sums[2], checksumOf(source.contents, 1));
    assert.deepEqual(source.requested(), [1]);
  } finally {
    await memtap.close();
  }
});

Deno.test("SNOWFLOCK_NO_UFFD=1 makes userfaultfd unavailable with a reason", async () => {
  const before = Deno.env.get(NO_UFFD_ENV);
  Deno.env.set(NO_UFFD_ENV, "1");
  try {
    assert.deepEqual(isUserfaultfdAvailable(), {
      ok: false,
      reason: "userfaultfd disabled by SNOWFLOCK_NO_UFFD=1",
    });
    const source = new FakeSource(new Uint8Array(PS), "now");
    await assert.rejects(
      Memtap.open({ memory: sharedMemory(1), pageMap: new Uint8Array(16).fill(1), source }),
      (e: unknown) => {
        assert.ok(e instanceof MemtapError);
        assert.equal(e.message, "Cannot open memtap: userfaultfd disabled by SNOWFLOCK_NO_UFFD=1");
        return true;
      },
    );
  } finally {
    if (before === undefined) Deno.env.delete(NO_UFFD_ENV);
    else Deno.env.set(NO_UFFD_ENV, before);
  }
  assert.deepEqual(isUserfaultfdAvailable(), { ok: true });
});

Deno.test("memtap rejects bad options", async () => {
  const source = new FakeSource(new Uint8Array(PS), "now");
  await assert.rejects(
    Memtap.open({ memory: sharedMemory(1), pageMap: new Uint8Array(17).fill(1), source }),
    RangeError,
  );
  await assert.rejects(
    Memtap.open({ memory: sharedMemory(1), pageMap: new Uint8Array(16), source }),
    /page 0 has unknown mark 0/,
  );
});

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

Deno.test("measure: memtap fault latency and throughput (printed, not asserted)", async () => {
  const pages = 4096; // 16 MiB
  const memory = sharedMemory(pages / 16);
  const contents = randomContents(pages);
  const all = Array.from({ length: pages }, (_, i) => i);
  for (const run of [1, 16]) {
    const source = new FakeSource(contents, "now", run);
    const memtap = await openWith(memory, new Uint8Array(pages).fill(PAGE_PRESENT), source);
    try {
      const order = run === 1 ? shuffledSample(pages, pages) : all;
      const { micros, totalMs } = await touchPages({
        buffer: memory.buffer as SharedArrayBuffer,
        pages: order,
        pageSize: PS,
        mode: "touch",
      }).result;
      const s = memtap.stats();
      const faulted = micros.filter((_, i) => i % run === 0);
      console.log(
        `memtap run=${run}: ${pages} pages in ${totalMs.toFixed(1)} ms = ${
          Math.round(pages / totalMs * 1000)
        } pages/s; toucher fault p50 ${percentile(faulted, 0.5).toFixed(1)} µs p99 ${
          percentile(faulted, 0.99).toFixed(1)
        } µs; handler p50 ${s.faultP50Us.toFixed(1)} µs p99 ${s.faultP99Us.toFixed(1)} µs; ` +
          `faults ${s.faults}, fetched ${s.pagesFetched}, unrequested ${s.pagesInstalledUnrequested}`,
      );
    } finally {
      await memtap.close();
    }
  }
});

Deno.test("fill() asks for a window of pages at a time, the next as they arrive", async () => {
  const pages = 4096;
  const { memory, contents, source, memtap } = await presentMemtap(pages, "later");
  try {
    await memtap.fill();
    const requested = source.requested();
    assert.equal(new Set(requested).size, pages, "every page, once");
    assert.ok(source.requests.length > 1, "in several requests");
    assert.ok(source.requests.every((r) => r.length <= 256), "none larger than the window");
    assert.deepEqual(new Uint8Array(memory.buffer, 0, pages * PS), contents);
  } finally {
    await memtap.close();
  }
});
