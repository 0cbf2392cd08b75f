import assert from "node:assert/strict";
import { NO_UFFD_ENV } from "./availability.ts";
import { PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "./page_mark.ts";
import { addressOf } from "../../native/libc.ts";
import { adviseHugePages } from "./huge_pages.ts";
import { hugeBytesAt, hugePageMode } from "./testdata/smaps.ts";
import { swapActive, untouchedPages } from "./residency.ts";
import { prepareSnapshots, releaseSnapshots, Snapshot, SnapshotError } from "./snapshot.ts";
import { idleFaultWorkers } from "./fault_worker_handle.ts";
import { oneSpareFaultWorker } from "./testdata/spares.ts";
import type { WriteRequest } from "./testdata/write_worker.ts";

const PS = 4096;

function sharedMemory(wasmPages: number): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages, shared: true });
}

/** Start a Worker writing random pages; returns how to stop it and how many writes it did. */
function startWriter(memory: WebAssembly.Memory, pageCount: number) {
  const control = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL("./testdata/write_worker.ts", import.meta.url), {
    type: "module",
  });
  const done = new Promise<number>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<number>) => resolve(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      reject(new Error(event.message));
    };
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
    stop: async (): Promise<number> => {
      Atomics.store(control, 0, 1);
      const writes = await done;
      worker.terminate();
      return writes;
    },
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

Deno.test("snapshot serves clone-time pages while another thread writes the parent", async () => {
  const pages = 2048; // 8 MiB: 3/4 written, the last 1/4 never touched (unpopulated)
  const memory = sharedMemory(pages / 16);
  const view = new Uint8Array(memory.buffer);
  const touched = (pages * 3) / 4;
  for (let p = 0; p < touched; p++) {
    if (p % 7 === 0) continue; // some all-zero pages among the written ones
    crypto.getRandomValues(view.subarray(p * PS, p * PS + 2048));
  }
  const expected = new Uint8Array(pages * PS);
  expected.set(view.subarray(0, touched * PS)); // the rest is zero: never touched, never read

  const snapshot = Snapshot.capture({ memory, pageSize: PS });
  const writer = startWriter(memory, pages);
  try {
    await snapshot.ready;
    while (writer.writes() < 2000) await tick();
    const page = new Uint8Array(PS);
    for (let round = 0; round < 3; round++) {
      for (let p = 0; p < pages; p++) {
        snapshot.readPage(p, page);
        const diff = firstDifference(page, expected.subarray(p * PS, (p + 1) * PS));
        assert.equal(diff, -1, `page ${p} differs at byte ${diff} (round ${round})`);
        if (p % 256 === 0) await tick();
      }
      for (let p = 0; p < pages; p += 64) {
        const got = snapshot.readPages(p, 64);
        assert.equal(firstDifference(got, expected.subarray(p * PS, (p + 64) * PS)), -1);
      }
    }
    const marks = snapshot.pageMap((pages - 256) * PS);
    for (let p = 0; p < pages; p++) {
      // A zero page the writer has not populated yet is untouched.
      const want = p >= pages - 256
        ? [PAGE_UNTOUCHED]
        : p % 7 === 0 || p >= touched
        ? [PAGE_ZERO, PAGE_UNTOUCHED]
        : [PAGE_PRESENT];
      assert.ok(want.includes(marks[p]), `mark of page ${p}: ${marks[p]}`);
    }
    const stats = snapshot.stats();
    assert.ok(stats.pagesSaved > 0 && stats.wpFaults >= stats.pagesSaved);
    assert.ok(stats.pagesSaved <= pages);
  } finally {
    await snapshot.release();
    const before = writer.writes();
    while (writer.writes() < before + 1000) await tick(); // un-protected: writes go on
    await writer.stop();
  }
  assert.throws(() => snapshot.readPage(0, new Uint8Array(PS)), SnapshotError);
});

Deno.test("two snapshots of one memory each keep their own clone-time pages", async () => {
  const memory = sharedMemory(1);
  const words = new Int32Array(memory.buffer);
  const at = (page: number) => (page * PS) / 4;
  const read = (s: Snapshot, page: number) => {
    const out = new Uint8Array(PS);
    s.readPage(page, out);
    return new Int32Array(out.buffer)[0];
  };
  words[at(0)] = 10;
  words[at(1)] = 11;
  const first = Snapshot.capture({ memory });
  await first.ready;
  words[at(0)] = 20; // a write fault served by the worker; this thread waits for it
  const second = Snapshot.capture({ memory });
  words[at(0)] = 30;
  words[at(1)] = 31;
  words[at(2)] = 32;
  assert.deepEqual([read(first, 0), read(first, 1), read(first, 2)], [10, 11, 0]);
  assert.deepEqual([read(second, 0), read(second, 1), read(second, 2)], [20, 11, 0]);
  await first.release();
  words[at(3)] = 43;
  assert.deepEqual([read(second, 3), words[at(3)]], [0, 43]);
  assert.equal(second.stats().pagesSaved, 3 + 1);
  await second.release();
  const third = Snapshot.capture({ memory }); // a fresh registration after the last release
  await third.ready;
  words[at(0)] = 50;
  assert.equal(read(third, 0), 30);
  await third.release();
});

Deno.test("a huge-page backed snapshot keeps 4 KiB copy-on-write while the parent writes", async () => {
  const pages = 16384; // 64 MiB = 32 huge pages
  const memory = sharedMemory(pages / 16);
  if (!adviseHugePages(memory, pages / 16) || hugePageMode() === "never") {
    console.warn("skipped: the kernel has no transparent huge pages");
    return;
  }
  const view = new Uint8Array(memory.buffer);
  for (let off = 0; off < view.length; off += 65536) {
    crypto.getRandomValues(view.subarray(off, off + 65536));
  }
  assert.ok(
    hugeBytesAt(addressOf(memory.buffer)) >= 16 << 20,
    "the memory is backed by huge pages (else this test proves nothing)",
  );
  const expected = view.slice();
  const snapshot = Snapshot.capture({ memory, pageSize: PS });
  const writer = startWriter(memory, pages);
  try {
    await snapshot.ready;
    while (writer.writes() < 3000) await tick();
    for (let p = 0; p < pages; p += 256) {
      const got = snapshot.readPages(p, 256);
      const diff = firstDifference(got, expected.subarray(p * PS, (p + 256) * PS));
      assert.equal(diff, -1, `page ${p + Math.floor(diff / PS)} differs`);
      await tick();
    }
    const saved = snapshot.stats().pagesSaved;
    const wrote = writer.writes();
    // One 4 KiB page saved per write (plus the one write in flight), not a 2 MiB page per write.
    assert.ok(saved > 0 && saved <= wrote + 1, `saved ${saved}, wrote ${wrote}`);
  } finally {
    await writer.stop();
    await snapshot.release();
  }
});

Deno.test("pageMap() marks pages the parent never populated untouched, without reading them", async () => {
  if (swapActive()) {
    console.warn("skipped: swap is active, so residency cannot tell untouched pages");
    return;
  }
  const pages = 256;
  const memory = sharedMemory(pages / 16);
  const view = new Uint8Array(memory.buffer);
  for (let p = 0; p < 100; p++) view[p * PS + 5] = 1; // written
  for (let p = 100; p < 150; p++) view[p * PS + 9] = 0; // written with zeros: resident, zero
  const snapshot = Snapshot.capture({ memory, pageSize: PS });
  try {
    await snapshot.ready;
    view[200 * PS] = 7; // after the fork: untouched at clone time, populated now
    const marks = snapshot.pageMap();
    for (let p = 0; p < pages; p++) {
      const want = p < 100 ? PAGE_PRESENT : p < 150 || p === 200 ? PAGE_ZERO : PAGE_UNTOUCHED;
      assert.equal(marks[p], want, `mark of page ${p}`);
    }
    const again = untouchedPages(memory.buffer as SharedArrayBuffer, PS);
    assert.equal(again.reduce((n, u) => n + u, 0), pages - 151, "pageMap() populated none");
    const page = new Uint8Array(PS);
    snapshot.readPage(200, page);
    assert.ok(page.every((b) => b === 0), "page 200 as it was at clone time");
  } finally {
    await snapshot.release();
  }
});

Deno.test("captureAsync() protects 4 KiB pages partly inline, the rest on the protector thread", async () => {
  await prepareSnapshots();
  const pages = 65536; // 256 MiB of 4 KiB pages: ~6 ms to protect, more than the inline share
  const memory = sharedMemory(pages / 16);
  const words = new Int32Array(memory.buffer);
  for (let p = 0; p < pages; p++) words[(p * PS) / 4] = p + 1;
  const snapshot = await Snapshot.captureAsync({ memory, pageSize: PS });
  try {
    await snapshot.ready;
    for (let p = 0; p < pages; p += 61) words[(p * PS) / 4] = -1; // every part of the range
    const page = new Uint8Array(PS);
    for (let p = 0; p < pages; p += 61) {
      snapshot.readPage(p, page);
      assert.equal(new Int32Array(page.buffer)[0], p + 1, `page ${p} as at capture`);
    }
    assert.equal(snapshot.stats().pagesSaved, Math.ceil(pages / 61));
  } finally {
    await snapshot.release();
    releaseSnapshots();
  }
});

Deno.test("a snapshot of a memory that grew while an older one is alive fails clearly", async () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
  const first = Snapshot.capture({ memory });
  try {
    memory.grow(1);
    assert.throws(() => Snapshot.capture({ memory }), /memory grew from 65536 to 131072 bytes/);
  } finally {
    await first.release();
  }
});

Deno.test("SNOWFLOCK_NO_UFFD=1 makes capture refuse with the reason", () => {
  const before = Deno.env.get(NO_UFFD_ENV);
  Deno.env.set(NO_UFFD_ENV, "1");
  try {
    assert.throws(() => Snapshot.capture({ memory: sharedMemory(1) }), {
      name: "SnapshotError",
      message: "Cannot capture snapshot: userfaultfd disabled by SNOWFLOCK_NO_UFFD=1",
    });
  } finally {
    if (before === undefined) Deno.env.delete(NO_UFFD_ENV);
    else Deno.env.set(NO_UFFD_ENV, before);
  }
});

Deno.test("measure: snapshot capture pause of 1 GiB, page map, write faults (printed)", async () => {
  const memory = sharedMemory(16384);
  const view = new Uint8Array(memory.buffer);
  for (let off = 0; off < 256 * 2 ** 20; off += PS) view[off] = 1; // 256 MiB populated
  const snapshot = Snapshot.capture({ memory });
  try {
    const { pauseMs } = snapshot.stats();
    await snapshot.ready;
    let t = performance.now();
    const marks = snapshot.pageMap();
    const mapMs = performance.now() - t;
    const pages = 16384;
    const words = new Int32Array(memory.buffer);
    t = performance.now();
    for (let p = 0; p < pages; p++) words[(p * PS) / 4 + 1] = 7; // this thread: write faults
    const faultMs = performance.now() - t;
    console.log(
      `snapshot 1 GiB (256 MiB populated): capture pause ${pauseMs.toFixed(2)} ms; ` +
        `pageMap ${mapMs.toFixed(0)} ms (${marks.filter((m) => m === PAGE_PRESENT).length} ` +
        `present); ${pages} write faults in ${faultMs.toFixed(0)} ms = ${
          Math.round(pages / faultMs * 1000)
        } pages/s saved`,
    );
  } finally {
    await snapshot.release();
  }
});

Deno.test("a parent's next snapshot reuses a released store, emptied", async () => {
  const pages = 1024;
  const memory = sharedMemory(pages / 16);
  const view = new Uint8Array(memory.buffer);
  view.fill(1);
  const first = Snapshot.capture({ memory, pageSize: PS });
  await first.ready;
  view.fill(2); // every page saved (as 1s) into the first store
  assert.equal(first.stats().pagesSaved, pages);
  const firstStore = first.sharedBuffers().store;
  await first.release();
  const second = Snapshot.capture({ memory, pageSize: PS });
  try {
    await second.ready;
    const store = second.sharedBuffers().store;
    assert.equal(store, firstStore, "the released store was taken again");
    assert.ok(new Uint8Array(store).every((b) => b === 0), "and holds nothing of the last fork");
    view.fill(3);
    assert.ok(second.readPages(0, pages).every((b) => b === 2), "clone-time contents");
  } finally {
    await second.release();
  }
});

Deno.test("a released snapshot's fault worker is ended, not kept idle holding the memory", async () => {
  const release = await oneSpareFaultWorker();
  try {
    const memory = sharedMemory(4);
    const snapshot = Snapshot.capture({ memory, pageSize: PS });
    await snapshot.ready;
    assert.equal(idleFaultWorkers(), 0, "the snapshot took the spare");
    await snapshot.release();
    // A worker given the parent's memory would pin it until it collected its garbage.
    assert.equal(idleFaultWorkers(), 0, "the worker came back to the spares");
  } finally {
    release();
  }
});
