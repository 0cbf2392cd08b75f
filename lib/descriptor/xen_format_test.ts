import assert from "node:assert/strict";
import { decodeAnyDescriptor, encodeDescriptor, type XenDescriptor } from "./format.ts";
import { DescriptorError } from "./errors.ts";
import { goldenXenDescriptor, XEN_GOLDEN_V1_URL } from "./testdata/make_xen_golden.ts";

const GOLDEN = Deno.readFileSync(XEN_GOLDEN_V1_URL);

function rejects(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => decodeAnyDescriptor(bytes), (e: unknown) => {
    assert.ok(e instanceof DescriptorError, `not a DescriptorError: ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

function refuses(d: XenDescriptor, message: RegExp): void {
  assert.throws(() => encodeDescriptor(d), (e: unknown) => {
    assert.ok(e instanceof DescriptorError, `not a DescriptorError: ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

Deno.test("xen: encodeDescriptor() matches the xen 1.0 golden file byte for byte", () => {
  assert.deepEqual(encodeDescriptor(goldenXenDescriptor()), GOLDEN);
});

Deno.test("xen: the golden header says kind 2, version 1.0", () => {
  assert.deepEqual([...GOLDEN.subarray(0, 9)], [0x53, 0x46, 0x56, 0x44, 1, 0, 0, 0, 2]);
});

Deno.test("xen: decodeAnyDescriptor() round-trips the golden descriptor", () => {
  assert.deepEqual(decodeAnyDescriptor(GOLDEN), goldenXenDescriptor());
  const d = goldenXenDescriptor();
  d.xen.records.push({ stream: 1, type: 7, body: new Uint8Array(4096).fill(9) });
  assert.deepEqual(decodeAnyDescriptor(encodeDescriptor(d)), d);
});

Deno.test("xen: decodeAnyDescriptor() rejects every flipped byte and every truncation", () => {
  for (let i = 0; i < GOLDEN.length; i += 7) {
    const bad = GOLDEN.slice();
    bad[i] ^= 0x20;
    assert.throws(() => decodeAnyDescriptor(bad), DescriptorError, `flip at ${i}`);
  }
  for (const n of [0, 19, 20, GOLDEN.length - 1]) {
    assert.throws(() => decodeAnyDescriptor(GOLDEN.subarray(0, n)), DescriptorError, `cut at ${n}`);
  }
});

Deno.test("xen: decodeAnyDescriptor() rejects a resealed body with trailing bytes", async () => {
  const { crc32 } = await import("node:zlib");
  const grown = new Uint8Array(GOLDEN.length + 1);
  grown.set(GOLDEN.subarray(0, GOLDEN.length - 4));
  const v = new DataView(grown.buffer);
  v.setUint32(12, grown.length, true);
  v.setUint32(grown.length - 4, crc32(grown.subarray(0, grown.length - 4)), true);
  rejects(grown, /unread bytes after the xen body/);
});

Deno.test("xen: encodeDescriptor() refuses invalid xen fields", () => {
  const cases: [string, (d: XenDescriptor) => void, RegExp][] = [
    ["width", (d) => (d.xen.guestWidth = 4), /guest width 4 is not 8/],
    ["levels", (d) => (d.xen.ptLevels = 3), /page-table levels 3 is not 4/],
    ["vcpus", (d) => (d.xen.vcpus = 0), /vCPU count is 0/],
    ["version", (d) => (d.xen.xenVersion = "4"), /Xen version "4" is not "M.m"/],
    ["types", (d) => (d.xen.pageTypes = new Uint8Array(3)), /page types cover 3 pages/],
    ["type", (d) => (d.xen.pageTypes[5] = 0x10), /page 5 has type 0x10/],
    ["page data", (d) => (d.xen.records[0].type = 1), /synthesized, not stored/],
    ["stream", (d) => ((d.xen.records[0] as { stream: number }).stream = 3), /stream 3/],
    ["page size", (d) => (d.pageSize = 8192), /page size 8192 is not 4096 for xen/],
    [
      "xenstore order",
      (d) => d.xen.xenstore.reverse(),
      /XenStore entry 1 path "data\/snowflock\/request" is not after "name"/,
    ],
    ["no body", (d) => delete (d as Partial<XenDescriptor>).xen, /no xen body/],
  ];
  for (const [name, mutate, message] of cases) {
    const d = goldenXenDescriptor();
    mutate(d);
    try {
      refuses(d, message);
    } catch (e) {
      throw new Error(`case "${name}"`, { cause: e });
    }
  }
});
