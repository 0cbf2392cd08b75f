import assert from "node:assert/strict";
import { countMismatches, describe, readForeign, withPageTables } from "./capture.ts";
import { cloneIdentity, renameConfig } from "./clone.ts";
import {
  joinImage,
  joinImageChunks,
  outlineSaveFile,
  p2mOf,
  PFTYPE,
  readImageFile,
  splitImage,
  splitImageAsync,
  XenStreamError,
} from "./stream.ts";
import { decodeManifest, encodeManifest } from "./manifest.ts";
import { PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "../../descriptor/page_map.ts";
import { decodeAnyDescriptor, encodeDescriptor } from "../../descriptor/format.ts";

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A tiny "guest": 6 pfns, one page table, one zero page, one absent. */
function sampleImage(): Uint8Array {
  const types = Uint8Array.from([0, 0x4, 0, 0, PFTYPE.XTAB, 0]);
  const page = (pfn: number) => new Uint8Array(4096).fill(pfn === 2 ? 0 : pfn + 1);
  return concat(joinImage({
    config: JSON.stringify({ c_info: { name: "p", uuid: "x" }, b_info: { max_memkb: 24 } }),
    libxcVersion: 3,
    xenMajor: 4,
    xenMinor: 17,
    records: [
      { stream: 1, type: 2, body: new Uint8Array(8).fill(8) },
      { stream: 1, type: 4, body: new Uint8Array(5176).fill(4) },
      { stream: 2, type: 2, body: new Uint8Array(3).fill(2) },
    ],
    types,
    page,
  }, 4));
}

Deno.test("splitImage() reads back what joinImage() writes", () => {
  const s = splitImage(sampleImage());
  assert.equal(s.pfnCount, 6);
  assert.deepEqual([...s.types], [0, 4, 0, 0, 0xf, 0]);
  assert.equal(s.pages.size, 5);
  assert.equal(s.pages.get(5)![0], 6);
  assert.deepEqual(s.records.map((r) => `${r.stream}:${r.type}:${r.body.length}`), [
    "1:2:8",
    "1:4:5176",
    "2:2:3",
  ]);
  assert.equal(`${s.xenMajor}.${s.xenMinor}`, "4.17");
});

Deno.test("describe(): zero pages are marked, never served; absent frames untouched", () => {
  const s = splitImage(sampleImage());
  const c = describe(s, [["name", "p"]], 1);
  assert.deepEqual([...c.pageMap], [
    PAGE_PRESENT,
    PAGE_PRESENT,
    PAGE_ZERO,
    PAGE_PRESENT,
    PAGE_UNTOUCHED,
    PAGE_PRESENT,
  ]);
  assert.deepEqual(c.counts, { present: 4, zero: 1, absent: 1, foreign: 4, foreignMismatches: 0 });
  assert.equal(c.image.pages.has(2), false);
  assert.equal(c.body.maxMemoryBytes, 24n * 1024n);
  const d = {
    kind: "xen" as const,
    forkId: new Uint8Array(16),
    forkKey: new Uint8Array(32),
    memoryServer: "10.77.0.1:7000",
    parentVm: "vm-p",
    ticket: "t-1",
    clones: 2,
    pageSize: 4096,
    pageMap: c.pageMap,
    inlinePages: [],
    xen: c.body,
  };
  assert.deepEqual(decodeAnyDescriptor(encodeDescriptor(d)), d);
});

Deno.test("splitImage() rejects truncated and foreign images", () => {
  const img = sampleImage();
  assert.throws(() => splitImage(img.subarray(0, 100)), XenStreamError);
  assert.throws(() => splitImage(img.subarray(0, img.length - 8)), XenStreamError);
  const bad = img.slice();
  bad[0] = 0x41;
  assert.throws(() => splitImage(bad), /not an xl save file/);
});

Deno.test("renameConfig() gives a clone its name and MAC and drops the uuid", () => {
  const d = { forkId: Uint8Array.from({ length: 16 }, (_, i) => i) } as Parameters<
    typeof cloneIdentity
  >[0];
  const id = cloneIdentity(d, "vm-c1", 3);
  assert.match(id.mac, /^00:16:3e:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  const cfg = JSON.parse(renameConfig(
    JSON.stringify({ c_info: { name: "p", uuid: "u" }, nics: [{ mac: "00:16:3e:00:00:01" }] }),
    id,
  ));
  assert.equal(cfg.c_info.name, "vm-c1");
  assert.equal(cfg.c_info.uuid, undefined);
  assert.equal(cfg.nics[0].mac, id.mac);
});

Deno.test("a Xen guest manifest travels as a valid Wasm module", async () => {
  const bytes = encodeManifest({
    kernel: "/lab/vmlinuz",
    ramdisk: "/lab/domu.cpio.gz",
    extra: "console=hvc0",
    memoryMiB: 128,
    vcpus: 1,
  });
  assert.ok(await WebAssembly.validate(bytes));
  assert.equal(decodeManifest(bytes)?.memoryMiB, 128);
  assert.equal(decodeManifest(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])), undefined);
});

Deno.test("the sliced image paths (file read, async split, chunked join) match the whole ones", async () => {
  const image = sampleImage();
  const path = await Deno.makeTempFile({ suffix: ".img" });
  try {
    await Deno.writeFile(path, image);
    const read = await readImageFile(path, 1000);
    assert.deepEqual(read, image);
    // Placed so the libxl stream is 8-byte aligned: no second copy of the image.
    const start = 48 + new DataView(image.buffer).getUint32(44, true);
    assert.equal((read.byteOffset + start) % 8, 0);
    const whole = splitImage(image);
    const sliced = await splitImageAsync(read, 0);
    assert.deepEqual(sliced.types, whole.types);
    assert.deepEqual([...sliced.pages.keys()], [...whole.pages.keys()]);
    for (const [pfn, page] of whole.pages) assert.deepEqual(sliced.pages.get(pfn), page);
    const parts = {
      config: whole.config,
      libxcVersion: 3,
      xenMajor: 4,
      xenMinor: 17,
      records: whole.records,
      types: whole.types,
      page: (pfn: number) => whole.pages.get(pfn)!,
    };
    assert.deepEqual(concat([...joinImageChunks(parts, 2)]), concat(joinImage(parts, 2)));
  } finally {
    await Deno.remove(path);
  }
});

/**
 * A guest of 6 pfns whose p2m frame is pfn 5 (pfn i lives in machine frame 100 + i), one page
 * table (pfn 1) and no frame for pfn 4; `memory` is what each machine frame holds.
 */
function guestWithP2m(): { image: Uint8Array; memory: Map<bigint, Uint8Array> } {
  const types = Uint8Array.from([0, 0x4, 0, 0, PFTYPE.XTAB, 0]);
  const p2m = new Uint8Array(4096);
  const pv = new DataView(p2m.buffer);
  for (let pfn = 0; pfn < 512; pfn++) pv.setBigUint64(pfn * 8, BigInt(100 + pfn), true);
  const page = (pfn: number) => pfn === 5 ? p2m : new Uint8Array(4096).fill(pfn + 1);
  const frames = new Uint8Array(16);
  const fv = new DataView(frames.buffer);
  fv.setUint32(4, 5, true); // pfns 0..5
  fv.setBigUint64(8, 5n, true); // held in pfn 5
  const memory = new Map<bigint, Uint8Array>();
  for (let pfn = 0; pfn < 6; pfn++) memory.set(BigInt(100 + pfn), page(pfn).slice());
  const image = concat(joinImage({
    config: "{}",
    libxcVersion: 3,
    xenMajor: 4,
    xenMinor: 17,
    records: [{ stream: 1, type: 3, body: frames }],
    types,
    page,
  }, 4));
  return { image, memory };
}

/** A stand-in for libxenforeignmemory over `memory` that records what was mapped. */
function fakeForeign(memory: Map<bigint, Uint8Array>, mapped: bigint[]) {
  return {
    domid: 7,
    foreign: {
      copyFrames(domid: number, frames: readonly bigint[], into: (i: number) => Uint8Array) {
        assert.equal(domid, 7);
        mapped.push(...frames);
        frames.forEach((mfn, i) => into(i).set(memory.get(mfn)!));
      },
    },
  };
}

Deno.test("p2mOf() reads pfn → mfn from the guest's own p2m frames in the stream", () => {
  const s = splitImage(guestWithP2m().image);
  const p2m = p2mOf(s);
  assert.equal(p2m.length, 512);
  assert.deepEqual([...p2m.subarray(0, 6)], [100n, 101n, 102n, 103n, 104n, 105n]);
  s.records = [];
  assert.throws(() => p2mOf(s), /no X86_PV_P2M_FRAMES/);
});

Deno.test("outlineSaveFile() finds the types and p2m splitImage() does, reading only those", async () => {
  const { image } = guestWithP2m();
  const path = await Deno.makeTempFile({ suffix: ".img" });
  try {
    await Deno.writeFile(path, image);
    const outline = await outlineSaveFile(path);
    const s = splitImage(image);
    assert.deepEqual(outline.types, s.types);
    assert.deepEqual(outline.p2m, p2mOf(s));
    await Deno.writeFile(path, image.subarray(0, image.length - 100));
    await assert.rejects(() => outlineSaveFile(path), XenStreamError);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("readForeign(): ordinary pages come from the guest's frames, page tables from the stream", () => {
  const { image, memory } = guestWithP2m();
  const s = splitImage(image);
  const outline = { types: s.types, p2m: p2mOf(s) };
  const mapped: bigint[] = [];
  // The guest's own page table holds machine frames; the stream's is normalized: they differ.
  memory.set(101n, new Uint8Array(4096).fill(0xee));
  const store = new Uint8Array(6 * 4096);
  const pages = withPageTables(readForeign(outline, fakeForeign(memory, mapped), store), s, store);
  assert.deepEqual(mapped, [100n, 102n, 103n, 105n]);
  assert.deepEqual([...pages.keys()].sort(), [0, 1, 2, 3, 5]);
  assert.equal(pages.get(1)![0], 2); // the stream's page table, not 0xee
  assert.equal(store[1 * 4096], 2); // in place too: the store is what gets served
  assert.equal(countMismatches(pages, s.pages, s.types), 0);
  // A frame that changed under us (a misread p2m) is counted.
  memory.get(103n)![7] ^= 1;
  const again = readForeign(outline, fakeForeign(memory, []), new Uint8Array(6 * 4096));
  assert.equal(countMismatches(again, s.pages, s.types), 1);
  // Pages land in place, page p at p × 4096, viewed from there.
  assert.equal(pages.get(5)!.buffer, store.buffer);
  assert.equal(store[3 * 4096], 4);
  assert.throws(
    () => readForeign(outline, fakeForeign(memory, []), new Uint8Array(4096)),
    RangeError,
  );
});
