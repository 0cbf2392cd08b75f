import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { FORK_ID_BYTES, FORK_KEY_BYTES, MAX_INLINE_PAGES } from "./common.ts";
import { DescriptorError } from "./errors.ts";
import { decodeDescriptor, type Descriptor, encodeDescriptor } from "./format.ts";
import { PAGE_HINTED, PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "./page_map.ts";
import { GOLDEN_V1_URL, goldenDescriptor } from "./testdata/make_golden.ts";
import { MAX_ASYNCIFY_DATA_BYTES, type WasiFdKind, type WasmGlobal } from "./wasm_body.ts";

const GOLDEN = await Deno.readFile(GOLDEN_V1_URL);

function rejects(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => decodeDescriptor(bytes), (e: unknown) => {
    assert.ok(e instanceof DescriptorError, `not a DescriptorError: ${e}`);
    assert.match(e.message, /^Cannot decode descriptor: /);
    assert.match(e.message, message);
    return true;
  });
}

function refuses(d: Descriptor, message: RegExp): void {
  assert.throws(() => encodeDescriptor(d), (e: unknown) => {
    assert.ok(e instanceof DescriptorError, `not a DescriptorError: ${e}`);
    assert.match(e.message, /^Cannot encode descriptor: /);
    assert.match(e.message, message);
    return true;
  });
}

/** A copy with a fresh CRC, so checks after the CRC are exercised. */
function resealed(bytes: Uint8Array, patch: (view: DataView) => void = () => {}): Uint8Array {
  const copy = bytes.slice();
  const view = new DataView(copy.buffer);
  patch(view);
  view.setUint32(copy.length - 4, crc32(copy.subarray(0, copy.length - 4)), true);
  return copy;
}

/** Offset of the page count field in an encoding of `d`. */
function pageMapOffset(d: Descriptor): number {
  const utf8 = (s: string) => new TextEncoder().encode(s).length;
  return 16 + FORK_ID_BYTES + FORK_KEY_BYTES + 4 + utf8(d.memoryServer) + 4 + utf8(d.parentVm) +
    4 + utf8(d.ticket) + 4 + 4;
}

/** Offset of the asyncify data length field in an encoding of `d`. */
function asyncifyOffset(d: Descriptor): number {
  const inline = d.inlinePages.length * (4 + d.pageSize);
  const runs = new DataView(encodeDescriptor(d).buffer).getUint32(pageMapOffset(d) + 4, true);
  return pageMapOffset(d) + 8 + runs + 4 + inline + 32 + 4 + 4;
}

/** Re-encodes `d` with `runs` in place of its page map runs, length and CRC fixed up. */
function withRuns(d: Descriptor, runs: number[]): Uint8Array {
  const bytes = encodeDescriptor(d);
  const view = new DataView(bytes.buffer);
  const at = pageMapOffset(d) + 4;
  const oldLength = view.getUint32(at, true);
  const out = new Uint8Array(bytes.length - oldLength + runs.length);
  out.set(bytes.subarray(0, at + 4));
  out.set(runs, at + 4);
  out.set(bytes.subarray(at + 4 + oldLength), at + 4 + runs.length);
  return resealed(out, (v) => {
    v.setUint32(at, runs.length, true);
    v.setUint32(12, out.length, true);
  });
}

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Code points, not UTF-16 units: a lone surrogate half is not a valid string.
const CHARS = Array.from("aZ9_=/é€😀");

function randomDescriptor(random: () => number): Descriptor {
  const int = (n: number) => Math.floor(random() * n);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const text = () => Array.from({ length: int(12) }, () => CHARS[int(CHARS.length)]).join("");
  const pageSize = [4096, 8192, 65536][int(3)];
  const pages = 1 + int(64);
  const pageMap = new Uint8Array((pages * 65536) / pageSize);
  for (let i = 0; i < pageMap.length;) {
    const run = 1 + int(random() < 0.2 ? 300 : 20);
    pageMap.fill(1 + int(5), i, i + run);
    i += run;
  }
  const present = [...pageMap.keys()].filter((i) => pageMap[i] === PAGE_PRESENT);
  const inlinePages = present.filter(() => random() < 0.05).slice(0, MAX_INLINE_PAGES)
    .map((index) => ({ index, bytes: bytes(pageSize) }));
  const globals: WasmGlobal[] = Array.from({ length: int(6) }, (_, i): WasmGlobal => {
    const name = `g${i}${text()}`;
    switch (int(4)) {
      case 0:
        return { name, type: "i32", value: int(2 ** 32) | 0 };
      case 1:
        return { name, type: "i64", value: BigInt.asIntN(64, BigInt(int(2 ** 53)) << 11n) };
      case 2:
        return { name, type: "f32", value: Math.fround((random() - 0.5) * 1e6) };
      default:
        return { name, type: "f64", value: (random() - 0.5) * 1e300 };
    }
  });
  const kinds: WasiFdKind[] = ["stdin", "stdout", "stderr", "preopen", "file", "dir"];
  const memoryBytes = pages * 65536;
  return {
    kind: "wasm",
    forkId: bytes(16),
    forkKey: bytes(32),
    memoryServer: random() < 0.5 ? `h${int(99)}.example:${1 + int(65535)}` : "[fe80::1]:65535",
    parentVm: `vm-${text()}`,
    ticket: `t-${text()}`,
    clones: 1 + int(2 ** 32 - 1),
    pageSize,
    pageMap,
    inlinePages,
    wasm: {
      moduleHash: bytes(32),
      memory: { pages, maxPages: pages + int(65536 - pages + 1) },
      globals,
      asyncifyData: bytes(random() < 0.2 ? 0 : int(8192)),
      heapTop: int(memoryBytes + 1),
      wasi: {
        args: Array.from({ length: int(4) }, text),
        env: Array.from({ length: int(4) }, () => `K${text()}=${text()}`),
        fds: Array.from({ length: int(5) }, (_, i) => ({
          fd: i * 3 + int(3),
          kind: kinds[int(6)],
          path: `/${text()}`,
          position: BigInt(int(2 ** 32)) * BigInt(int(2 ** 32)),
          flags: int(2 ** 32),
        })),
      },
    },
  };
}

function uniformGiB(): Descriptor {
  const d = goldenDescriptor();
  d.pageMap = new Uint8Array(262_144).fill(PAGE_PRESENT);
  d.wasm.memory = { pages: 16_384, maxPages: 65_536 };
  d.inlinePages = [];
  return d;
}

Deno.test("encodeDescriptor() matches the 1.0 golden file byte for byte", () => {
  assert.deepEqual(encodeDescriptor(goldenDescriptor()), GOLDEN);
});

Deno.test("the golden header is the one FORMAT.md tabulates", () => {
  const length = [GOLDEN.length & 0xff, GOLDEN.length >> 8, 0, 0];
  // "SFVD", major 1, minor 0, kind 1 (wasm), flags 0, reserved 0, total length
  const header = [0x53, 0x46, 0x56, 0x44, 1, 0, 0, 0, 1, 0, 0, 0, ...length];
  assert.deepEqual([...GOLDEN.subarray(0, 16)], header);
});

Deno.test("decodeDescriptor() reads the 1.0 golden file", () => {
  assert.deepEqual(decodeDescriptor(GOLDEN), goldenDescriptor());
});

Deno.test("decodeDescriptor() round-trips random descriptors", () => {
  const random = prng(0x5f10c);
  for (let i = 0; i < 200; i++) {
    const d = randomDescriptor(random);
    assert.deepEqual(decodeDescriptor(encodeDescriptor(d)), d, `descriptor ${i}`);
  }
});

Deno.test("decodeDescriptor() round-trips empty lists and extreme values", () => {
  const d = goldenDescriptor();
  d.inlinePages = [];
  d.wasm.globals = [
    { name: "min", type: "i32", value: -(2 ** 31) },
    { name: "max", type: "i64", value: 2n ** 63n - 1n },
    { name: "nan", type: "f32", value: NaN },
    { name: "neg0", type: "f64", value: -0 },
    { name: "inf", type: "f64", value: -Infinity },
  ];
  d.wasm.wasi = { args: [], env: [], fds: [] };
  assert.deepEqual(decodeDescriptor(encodeDescriptor(d)), d);
  d.wasm.globals = [];
  d.wasm.wasi.fds = [{
    fd: 2 ** 32 - 1,
    kind: "file",
    path: "\ufeff",
    position: 2n ** 64n - 1n,
    flags: 2 ** 32 - 1,
  }];
  assert.deepEqual(decodeDescriptor(encodeDescriptor(d)), d);
});

Deno.test("decodeDescriptor() round-trips empty and 1 MiB asyncify data", () => {
  const d = goldenDescriptor();
  assert.equal(MAX_ASYNCIFY_DATA_BYTES, 1 << 20);
  d.wasm.asyncifyData = new Uint8Array(0);
  const empty = encodeDescriptor(d);
  assert.equal(empty.length, GOLDEN.length - 24);
  assert.deepEqual(decodeDescriptor(empty), d);
  d.wasm.asyncifyData = Uint8Array.from({ length: MAX_ASYNCIFY_DATA_BYTES }, (_, i) => i * 7);
  const full = encodeDescriptor(d);
  assert.equal(full.length, GOLDEN.length - 24 + MAX_ASYNCIFY_DATA_BYTES);
  assert.deepEqual(decodeDescriptor(full), d);
});

Deno.test("decodeDescriptor() rejects asyncify data over 1 MiB, with a valid CRC", () => {
  const d = goldenDescriptor();
  const at = asyncifyOffset(d);
  assert.equal(new DataView(GOLDEN.buffer).getUint32(at, true), 24);
  // All 1 MiB + 1 bytes present, length field and CRC consistent.
  d.wasm.asyncifyData = new Uint8Array(MAX_ASYNCIFY_DATA_BYTES).fill(0xa5);
  const full = encodeDescriptor(d);
  const over = new Uint8Array(full.length + 1);
  over.set(full.subarray(0, at + 4));
  over[at + 4] = 0xa5;
  over.set(full.subarray(at + 4, full.length - 4), at + 5);
  const cap = /asyncify data of 1048577 bytes exceeds the limit of 1048576 bytes/;
  rejects(
    resealed(over, (v) => {
      v.setUint32(12, over.length, true);
      v.setUint32(at, MAX_ASYNCIFY_DATA_BYTES + 1, true);
    }),
    cap,
  );
  // A length over the cap is rejected before the bytes it claims are looked for.
  rejects(
    resealed(GOLDEN, (v) => v.setUint32(at, 0xffff_ffff, true)),
    /asyncify data of 4294967295 bytes exceeds the limit of 1048576 bytes/,
  );
  // Within the cap but past the end of the body.
  rejects(
    resealed(GOLDEN, (v) => v.setUint32(at, MAX_ASYNCIFY_DATA_BYTES, true)),
    new RegExp(`asyncify data needs 1048576 bytes at offset ${at + 4}, \\d+ left`),
  );
});

Deno.test("a 1 GiB wasm VM with a uniform page map has a descriptor under 1 KiB", () => {
  const d = uniformGiB();
  const bytes = encodeDescriptor(d);
  assert.ok(bytes.length < 1024, `${bytes.length} bytes`);
  assert.deepEqual(decodeDescriptor(bytes), d);
});

Deno.test("a page map never encodes to more than one byte per page", () => {
  const d = uniformGiB();
  d.pageMap = d.pageMap.map((_, i) => (i % 2 ? PAGE_ZERO : PAGE_HINTED));
  const bytes = encodeDescriptor(d);
  const runBytes = new DataView(bytes.buffer).getUint32(pageMapOffset(d) + 4, true);
  assert.equal(runBytes, d.pageMap.length);
  assert.deepEqual(decodeDescriptor(bytes).pageMap, d.pageMap);
});

Deno.test("decodeDescriptor() copies out of its input", () => {
  const input = GOLDEN.slice();
  const d = decodeDescriptor(input);
  input.fill(0);
  assert.deepEqual(d, goldenDescriptor());
});

// CRC-32 catches every error burst up to 32 bits, so every bit flip, plus 0x00 and 0xff, at every
// offset covers the cases; all 255 wrong values at every offset also pass but take ~10 s.
Deno.test("decodeDescriptor() rejects every bit flip and 0x00/0xff byte in the golden file", () => {
  const bytes = GOLDEN.slice();
  const accepted: string[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const original = bytes[i];
    const wrong = [0x00, 0xff, ...[0, 1, 2, 3, 4, 5, 6, 7].map((bit) => original ^ (1 << bit))];
    for (const value of wrong.filter((value) => value !== original)) {
      bytes[i] = value;
      try {
        decodeDescriptor(bytes);
        accepted.push(`offset ${i} = 0x${value.toString(16)}`);
      } catch (e) {
        if (!(e instanceof DescriptorError)) throw e;
      }
    }
    bytes[i] = original;
  }
  assert.deepEqual(accepted, []);
});

Deno.test("decodeDescriptor() rejects the golden file truncated at every length", () => {
  for (let n = 0; n < GOLDEN.length; n++) {
    rejects(GOLDEN.subarray(0, n), /shorter than|magic|checksum/);
  }
});

Deno.test("decodeDescriptor() rejects trailing bytes", () => {
  const longer = new Uint8Array(GOLDEN.length + 1);
  longer.set(GOLDEN);
  rejects(longer, /checksum .*header claims 4613 bytes, got 4614/);
  rejects(resealed(longer), /length field says 4613 bytes but the descriptor has 4614/);
  // Inside the envelope: one more byte after the wasm body, length and CRC consistent.
  const inner = new Uint8Array(GOLDEN.length + 1);
  inner.set(GOLDEN.subarray(0, GOLDEN.length - 4));
  rejects(
    resealed(inner, (v) => v.setUint32(12, inner.length, true)),
    /1 unread bytes after the wasm body at offset 4609/,
  );
});

Deno.test("decodeDescriptor() rejects a wrong magic", () => {
  rejects(resealed(GOLDEN, (v) => v.setUint8(3, 0x45)), /magic 0x45564653 is not "SFVD"/);
  rejects(new TextEncoder().encode("GIF89a, certainly not a descriptor"), /magic/);
});

Deno.test("decodeDescriptor() rejects another major and a newer minor", () => {
  rejects(
    resealed(GOLDEN, (v) => v.setUint16(4, 2, true)),
    /format version 2\.0 is not supported: this version reads 1\.x/,
  );
  rejects(resealed(GOLDEN, (v) => v.setUint16(4, 0, true)), /format version 0\.0 is not supported/);
  rejects(
    resealed(GOLDEN, (v) => v.setUint16(6, 1, true)),
    /format version 1\.1 is newer than this version's 1\.0/,
  );
});

Deno.test("decodeDescriptor() rejects invalid and unsupported backend kinds", () => {
  const kind = (code: number) => resealed(GOLDEN, (v) => v.setUint8(8, code));
  rejects(kind(0), /backend kind 0 is not valid/);
  // A wasm payload under kind 2 is read as a xen body, and does not parse as one.
  rejects(kind(2), /Cannot decode descriptor: /);
  rejects(kind(3), /backend kind kvm is not supported by this version \(1\.0\)/);
  rejects(kind(4), /backend kind 4 is not valid/);
});

Deno.test("decodeDescriptor() rejects undefined flags and reserved bits", () => {
  rejects(resealed(GOLDEN, (v) => v.setUint8(9, 0x80)), /flags 0x80 are not defined in 1\.0/);
  rejects(resealed(GOLDEN, (v) => v.setUint16(10, 1, true)), /reserved bytes are 0x0001/);
});

Deno.test("decodeDescriptor() rejects an invalid page mark", () => {
  const d = goldenDescriptor();
  const firstRun = pageMapOffset(d) + 8;
  assert.equal(GOLDEN[firstRun], 0x19); // 4 PRESENT pages: (4 - 1) × 8 + 1
  for (const mark of [0, 6, 7]) {
    rejects(
      resealed(GOLDEN, (v) => v.setUint8(firstRun, 0x18 + mark)),
      new RegExp(`page map run 0 has invalid mark ${mark}`),
    );
  }
});

Deno.test("decodeDescriptor() rejects page maps that are not canonical or do not add up", () => {
  const d = goldenDescriptor();
  d.inlinePages = [];
  d.pageMap.fill(PAGE_UNTOUCHED);
  assert.deepEqual(decodeDescriptor(withRuns(d, [0xfb, 0x01])).pageMap, d.pageMap); // 31×8+3
  rejects(withRuns(d, [0xfb, 0x81, 0x00]), /page map run 0 at offset 125 is not minimally encoded/);
  rejects(withRuns(d, [0x7b, 0x7b]), /page map run 1 repeats mark 3/);
  rejects(withRuns(d, [0x7b]), /page map runs cover 16 of 32 pages/);
  rejects(withRuns(d, [0xfb, 0x01, 0x01]), /page map run 1 of 1 pages passes page count 32/);
  rejects(withRuns(d, [0xfb, 0x81]), /page map run 0 needs 1 bytes at offset 127, 0 left/);
  rejects(withRuns(d, [0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /longer than 5 bytes/);
  const at = pageMapOffset(d);
  rejects(
    resealed(withRuns(d, [0xfb, 0x01]), (v) => v.setUint32(at, 2 ** 20 + 1, true)),
    /page count 1048577 exceeds the backend's limit of 1048576 pages/,
  );
});

Deno.test("decodeDescriptor() rejects counts the remaining bytes cannot hold", () => {
  const d = goldenDescriptor();
  const inlineCount = pageMapOffset(d) + 8 + 7;
  rejects(
    resealed(GOLDEN, (v) => v.setUint32(inlineCount, 2, true)),
    /inline page count 2 needs at least 8200 bytes/,
  );
  rejects(
    resealed(GOLDEN, (v) => v.setUint32(inlineCount, 0xffff_ffff, true)),
    /inline page count 4294967295/,
  );
});

Deno.test("decodeDescriptor() runs the encoder's checks on what it read", () => {
  const d = goldenDescriptor();
  d.clones = 0;
  const cloneCount = pageMapOffset(d) - 8;
  rejects(resealed(GOLDEN, (v) => v.setUint32(cloneCount, 0, true)), /clone count is 0/);
  // Golden layout: 7 run bytes, one inline page, then hash, memory, 24 asyncify bytes, heap top.
  const heapTop = pageMapOffset(d) + 8 + 7 + 4 + 4 + 4096 + 32 + 4 + 4 + 4 + 24;
  assert.equal(asyncifyOffset(goldenDescriptor()) + 4 + 24, heapTop);
  assert.equal(new DataView(GOLDEN.buffer).getUint32(heapTop, true), 49_152);
  rejects(
    resealed(GOLDEN, (v) => v.setUint32(heapTop, 131_073, true)),
    /heap top 131073 is past memory end 131072/,
  );
});

Deno.test("decodeDescriptor() rejects malformed UTF-8 with the decoder's error as cause", () => {
  const serverByte = 16 + 16 + 32 + 4;
  assert.throws(
    () => decodeDescriptor(resealed(GOLDEN, (v) => v.setUint8(serverByte, 0xff))),
    (e: unknown) => {
      assert.ok(e instanceof DescriptorError);
      assert.match(e.message, /memory server at offset 68 is not valid UTF-8/);
      assert.ok(e.cause instanceof TypeError);
      return true;
    },
  );
});

Deno.test("encodeDescriptor() refuses invalid fields", () => {
  const cases: [string, (d: Descriptor) => void, RegExp][] = [
    ["short fork id", (d) => (d.forkId = new Uint8Array(15)), /fork id must be 16 bytes, got 15/],
    ["long fork key", (d) => (d.forkKey = new Uint8Array(33)), /fork key must be 32 bytes, got 33/],
    [
      "no port",
      (d) => (d.memoryServer = "10.0.0.1"),
      /memory server address "10\.0\.0\.1" is not "host:port"/,
    ],
    ["port 0", (d) => (d.memoryServer = "h:0"), /is not "host:port"/],
    ["port too big", (d) => (d.memoryServer = "h:65536"), /is not "host:port"/],
    ["bare IPv6", (d) => (d.memoryServer = "fe80::1:80"), /is not "host:port"/],
    ["empty parent", (d) => (d.parentVm = ""), /parent VM id is empty/],
    ["lone surrogate", (d) => (d.ticket = "t\ud800"), /ticket id is not a well-formed string/],
    ["no clones", (d) => (d.clones = 0), /clone count is 0/],
    ["clones not u32", (d) => (d.clones = 2 ** 32), /clone count 4294967296 is not a u32/],
    [
      "page size",
      (d) => (d.pageSize = 3000),
      /page size 3000 is not a power of two from 4096 to 65536/,
    ],
    ["mark 0", (d) => (d.pageMap[7] = 0), /page 7 has invalid mark 0/],
    ["mark 6", (d) => (d.pageMap[31] = 6), /page 31 has invalid mark 6/],
    [
      "inline not present",
      (d) => (d.inlinePages[0].index = 4),
      /inline page 0 \(page 4\) has mark 2, not PRESENT/,
    ],
    ["inline outside", (d) => (d.inlinePages[0].index = 32), /index 32 is outside the 32-page map/],
    [
      "inline size",
      (d) => (d.inlinePages[0].bytes = new Uint8Array(10)),
      /inline page 0 must be 4096 bytes, got 10/,
    ],
    [
      "inline order",
      (d) => d.inlinePages.unshift({ index: 13, bytes: new Uint8Array(4096) }),
      /inline page 1 index 13 is not above 13/,
    ],
    [
      "inline count",
      (d) => {
        d.pageMap.fill(PAGE_PRESENT);
        d.inlinePages = Array.from({ length: MAX_INLINE_PAGES + 1 }, (_, index) => ({
          index,
          bytes: new Uint8Array(4096),
        }));
      },
      /65 inline pages exceed the limit of 64/,
    ],
    [
      "module hash",
      (d) => (d.wasm.moduleHash = new Uint8Array(20)),
      /module hash must be 32 bytes, got 20/,
    ],
    [
      "memory mismatch",
      (d) => (d.wasm.memory.pages = 3),
      /page map covers 131072 bytes but wasm memory is 196608/,
    ],
    ["memory max", (d) => (d.wasm.memory.maxPages = 1), /memory of 2 pages, maximum 1/],
    ["memory 4 GiB+", (d) => (d.wasm.memory.maxPages = 65_537), /is not within 65536 pages/],
    [
      "asyncify over 1 MiB",
      (d) => (d.wasm.asyncifyData = new Uint8Array(MAX_ASYNCIFY_DATA_BYTES + 1)),
      /asyncify data of 1048577 bytes exceeds the limit of 1048576 bytes/,
    ],
    [
      "asyncify not bytes",
      (d) => ((d.wasm as { asyncifyData: unknown }).asyncifyData = [1, 2]),
      /asyncify data is not a Uint8Array/,
    ],
    ["heap top", (d) => (d.wasm.heapTop = 131_073), /heap top 131073 is past memory end 131072/],
    [
      "duplicate global",
      (d) => d.wasm.globals.push({ name: "g_i64", type: "i64", value: 1n }),
      /global 4 name "g_i64" repeats/,
    ],
    [
      "i32 range",
      (d) => (d.wasm.globals[0].value = 2 ** 31),
      /global 0 \(__stack_pointer\) value 2147483648 is not a valid i32/,
    ],
    ["i32 fraction", (d) => (d.wasm.globals[0].value = 1.5), /value 1\.5 is not a valid i32/],
    [
      "i64 range",
      (d) => (d.wasm.globals[1].value = 2n ** 63n),
      /global 1 \(g_i64\) value 9223372036854775808 is not a valid i64/,
    ],
    ["f32 precision", (d) => (d.wasm.globals[2].value = 0.1), /value 0\.1 is not a valid f32/],
    [
      "global type",
      (d) => ((d.wasm.globals[3] as { type: string }).type = "v128"),
      /global 3 \(g_f64\) type v128 is not valid/,
    ],
    ["NUL in arg", (d) => (d.wasm.wasi.args[1] = "a\0b"), /arg\[1\] contains a NUL character/],
    [
      "env surrogate",
      (d) => (d.wasm.wasi.env[0] = "\udc00"),
      /env\[0\] is not a well-formed string/,
    ],
    ["duplicate fd", (d) => (d.wasm.wasi.fds[5].fd = 4), /fd entry 5: fd 4 repeats/],
    [
      "fd kind",
      (d) => ((d.wasm.wasi.fds[0] as { kind: string }).kind = "socket"),
      /fd entry 0 kind socket is not valid/,
    ],
    [
      "fd position",
      (d) => (d.wasm.wasi.fds[4].position = -1n),
      /fd entry 4 position -1 is not a u64/,
    ],
    ["fd flags", (d) => (d.wasm.wasi.fds[4].flags = -1), /fd entry 4 flags -1 is not a u32/],
    [
      "kind",
      (d) => ((d as { kind: string }).kind = "xen"),
      /xen descriptor has no xen body/,
    ],
  ];
  for (const [name, mutate, message] of cases) {
    const d = goldenDescriptor();
    mutate(d);
    try {
      refuses(d, message);
    } catch (e) {
      throw new Error(`case "${name}"`, { cause: e });
    }
  }
});
