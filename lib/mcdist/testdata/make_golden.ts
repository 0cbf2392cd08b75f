// GOLDEN FILE GENERATOR: run once per protocol version, then check the output in.
//   deno run --allow-write --allow-ffi lib/mcdist/testdata/make_golden.ts
// wire_test.ts compares the encoding of goldenPackets() with wire_v3.bin byte for byte, so
// regenerating it hides a layout change; a new version gets a new file instead.
// File layout: for each packet, its length (u16, big-endian) and then its bytes.
import { encodePacket, type Packet, PacketKey, PacketType } from "../wire.ts";

export const GOLDEN_URL: URL = new URL("./wire_v3.bin", import.meta.url);
export const GOLDEN_KEY: Uint8Array = sequence(32, 0xa0);
export const GOLDEN_PAGE_SIZE = 64;

/** One packet of every type, with every field set. */
export function goldenPackets(): Packet[] {
  const header = (seq: number, flags = 0) => ({
    flags,
    forkId: sequence(16, 0x00),
    sender: 0x01020304,
    seq,
    time: 1_800_000_000,
  });
  return [
    {
      ...header(1, 1),
      body: {
        type: PacketType.REQUEST,
        rate: 5000,
        outstanding: 7,
        heard: { sender: 0x0a0b0c0d, group: 99, unicast: 7 },
        runs: [{ first: 3, count: 2 }, { first: 70_000, count: 1 }],
      },
    },
    {
      ...header(2, 2),
      body: {
        type: PacketType.PAGES,
        first: 9,
        count: 2,
        part: 0,
        parts: 1,
        data: sequence(128, 0x40),
      },
    },
    {
      ...header(3),
      body: {
        type: PacketType.PAGES,
        first: 11,
        count: 1,
        part: 1,
        parts: 3,
        data: sequence(22, 0x80),
      },
    },
    { ...header(4), body: { type: PacketType.PUSH, runs: [{ first: 100, count: 64 }] } },
    { ...header(5), body: { type: PacketType.RATE, rate: 12_345, outstanding: 0 } },
    { ...header(6), body: { type: PacketType.END, reason: 1 } },
    { ...header(7), body: { type: PacketType.PROBE, nonce: sequence(8, 0xf0) } },
  ];
}

export function encodeGolden(): Uint8Array {
  const key = new PacketKey(GOLDEN_KEY);
  const parts = goldenPackets().map((p) => encodePacket(p, key));
  key.free();
  const out = new Uint8Array(parts.reduce((sum, p) => sum + 2 + p.length, 0));
  let at = 0;
  for (const part of parts) {
    new DataView(out.buffer).setUint16(at, part.length);
    out.set(part, at + 2);
    at += 2 + part.length;
  }
  return out;
}

/** Splits a golden file into its packets. */
export function splitGolden(file: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (let at = 0; at < file.length;) {
    const length = view.getUint16(at);
    out.push(file.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return out;
}

function sequence(length: number, first: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (first + i) & 0xff);
}

if (import.meta.main) {
  await Deno.writeFile(GOLDEN_URL, encodeGolden());
}
