import { createCipheriv, createHmac } from "node:crypto";
import assert from "node:assert/strict";
import {
  decodePacket,
  type DecodeResult,
  encodePacket,
  type ForkKeys,
  HEADER_BYTES,
  OVERHEAD_BYTES,
  type Packet,
  PacketKey,
  PacketType,
  partLength,
  TAG_BYTES,
  toRuns,
} from "./wire.ts";
import {
  encodeGolden,
  GOLDEN_KEY,
  GOLDEN_PAGE_SIZE,
  GOLDEN_URL,
  goldenPackets,
  splitGolden,
} from "./testdata/make_golden.ts";

const GOLDEN = await Deno.readFile(GOLDEN_URL);
const KEYS: ForkKeys = { key: new PacketKey(GOLDEN_KEY), pageSize: GOLDEN_PAGE_SIZE };
const lookup = () => KEYS;

function decoded(result: DecodeResult): Packet {
  if (!result.ok) throw new Error(result.message);
  return result.packet;
}

Deno.test("encodePacket() matches the v3 golden file byte for byte", () => {
  assert.deepEqual(encodeGolden(), GOLDEN);
});

Deno.test("the golden header is the one PROTOCOL.md tabulates", () => {
  const first = splitGolden(GOLDEN)[0];
  // "SFMC", version 3, type 1 (REQUEST), flags 1, fork id 00..0f, sender, seq 1, time, body 34
  assert.deepEqual([...first.subarray(0, 8)], [0x53, 0x46, 0x4d, 0x43, 3, 1, 0, 1]);
  assert.deepEqual([...first.subarray(24, 40)], [
    1,
    2,
    3,
    4,
    0,
    0,
    0,
    1,
    0x6b,
    0x49,
    0xd2,
    0,
    0,
    34,
    0,
    0,
  ]);
  assert.equal(first.length, OVERHEAD_BYTES + 34);
});

Deno.test("decodePacket() reads every packet of the v3 golden file", () => {
  const packets = splitGolden(GOLDEN).map((bytes) => decoded(decodePacket(bytes, lookup)));
  assert.deepEqual(packets, goldenPackets());
});

Deno.test("the tag is PROTOCOL.md's: ChaCha20-Poly1305, derived key, header fields as nonce", () => {
  // Computed with node:crypto, independently of native/libcrypto.ts.
  const key = createHmac("sha256", GOLDEN_KEY).update("SFMC v3 packet key").digest();
  for (const bytes of splitGolden(GOLDEN)) {
    const signed = bytes.subarray(0, bytes.length - TAG_BYTES);
    const cipher = createCipheriv("chacha20-poly1305", key, signed.subarray(24, 36), {
      authTagLength: TAG_BYTES,
    });
    cipher.setAAD(signed, { plaintextLength: 0 });
    cipher.final();
    assert.deepEqual(new Uint8Array(cipher.getAuthTag()), bytes.subarray(signed.length));
  }
});

Deno.test("packets round-trip through encode and decode", () => {
  for (let i = 0; i < 200; i++) {
    const pageSize = [64, 1024, 4096][i % 3];
    const parts = i % 2 === 0 ? 1 : 1 + (i % 4);
    const part = i % parts;
    const packet: Packet = {
      flags: i & 3,
      forkId: crypto.getRandomValues(new Uint8Array(16)),
      sender: (i * 7919) >>> 0,
      seq: i + 1,
      time: 1_800_000_000 + i,
      body: {
        type: PacketType.PAGES,
        first: i * 3,
        count: parts === 1 ? 1 + (i % 2) : 1,
        part,
        parts,
        data: crypto.getRandomValues(
          new Uint8Array(
            parts === 1 ? (1 + (i % 2)) * pageSize : partLength(pageSize, part, parts),
          ),
        ),
      },
    };
    const keys = { key: new PacketKey(crypto.getRandomValues(new Uint8Array(32))), pageSize };
    assert.deepEqual(decoded(decodePacket(encodePacket(packet, keys.key), () => keys)), packet);
    keys.key.free();
  }
});

Deno.test("decodePacket() rejects a packet signed with another key as forged", () => {
  const other = new PacketKey(new Uint8Array(32).fill(9));
  const bytes = encodePacket(goldenPackets()[1], other);
  other.free();
  const result = decodePacket(bytes, lookup);
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.kind, "forged");
});

Deno.test("decodePacket() reports unknown forks, other versions and trailing bytes", () => {
  const bytes = splitGolden(GOLDEN)[4];
  const unknown = decodePacket(bytes, () => undefined);
  assert.equal(!unknown.ok && unknown.kind, "unknown-fork");
  for (const version of [2, 4]) {
    const other = bytes.slice();
    other[4] = version;
    assert.equal((decodePacket(other, lookup) as { kind: string }).kind, "version");
  }
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.match(
    (decodePacket(longer, lookup) as { message: string }).message,
    /^Cannot decode packet: length/,
  );
});

Deno.test("decodePacket() never throws on random or mutated datagrams", () => {
  const golden = splitGolden(GOLDEN);
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    if (i % 4 === 0) {
      bytes = crypto.getRandomValues(new Uint8Array(Math.floor(random() * 200)));
    } else {
      bytes = golden[i % golden.length].slice();
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++) {
        bytes[Math.floor(random() * bytes.length)] ^= 1 + Math.floor(random() * 255);
      }
      if (i % 7 === 0) bytes = bytes.subarray(0, Math.floor(random() * bytes.length));
    }
    const result = decodePacket(bytes, lookup);
    // A mutation that leaves the datagram authentic is impossible short of forging the tag.
    if (result.ok) assert.deepEqual(bytes, golden[i % golden.length]);
  }
});

Deno.test("decodePacket() checks the body only after the tag: a well-signed bad body is malformed", () => {
  const bytes = encodePacket(goldenPackets()[3], KEYS.key);
  const view = new DataView(bytes.buffer);
  view.setUint16(HEADER_BYTES, 5); // claims 5 runs, carries 1
  const resigned = resign(bytes);
  const result = decodePacket(resigned, lookup);
  assert.equal(!result.ok && result.kind, "malformed");
});

Deno.test("encodePacket() refuses fields out of range", () => {
  const packet = goldenPackets()[2];
  assert.throws(
    () => encodePacket({ ...packet, seq: -1 }, KEYS.key),
    /^RangeError: Cannot encode packet: seq/,
  );
  assert.throws(() => new PacketKey(new Uint8Array(16)), /Cannot use fork key: it is 16 bytes/);
  assert.throws(
    () =>
      encodePacket({ ...packet, body: { ...packet.body, count: 2 } as Packet["body"] }, KEYS.key),
    /travels alone/,
  );
});

Deno.test("toRuns() sorts, deduplicates and merges pages", () => {
  assert.deepEqual(toRuns([5, 3, 4, 4, 9]), [{ first: 3, count: 3 }, { first: 9, count: 1 }]);
});

/** Signs `bytes` again with the golden key after a test changed its body. */
function resign(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  const signedLength = out.length - TAG_BYTES;
  KEYS.key.sign(out.subarray(0, signedLength), out.subarray(signedLength));
  return out;
}
