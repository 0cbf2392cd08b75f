import assert from "node:assert/strict";
import { createCipheriv, createHmac } from "node:crypto";
import {
  ChachaPolyMac,
  constantTimeEqual,
  CryptoError,
  hmacSha256,
  liveMacContexts,
} from "./libcrypto.ts";

/** The reference: a fresh node:crypto AEAD per tag, as a one-shot implementation would do. */
function oneShotTag(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array): Uint8Array {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: 0 });
  c.final();
  return new Uint8Array(c.getAuthTag());
}

function bytes(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
}

Deno.test("ChachaPolyMac: a reused context gives every tag a one-shot AEAD gives", () => {
  const keyA = bytes(32, 1);
  const keyB = bytes(32, 2);
  const a = new ChachaPolyMac(keyA);
  const b = new ChachaPolyMac(keyB);
  try {
    // Lengths around the 16-byte Poly1305 block (padding state must not leak into the next
    // tag), a whole PAGES frame, and the two keys interleaved.
    const lengths = [0, 1, 15, 16, 17, 48, 4136, 32 + 8 + 64 * 4096, 3, 0];
    lengths.forEach((length, i) => {
      const nonce = new Uint8Array(12);
      new DataView(nonce.buffer).setUint32(8, i + 1, false);
      const aad = bytes(length, i);
      for (const [mac, key] of [[a, keyA], [b, keyB]] as const) {
        const tag = new Uint8Array(16);
        mac.tag(nonce, aad, tag);
        assert.deepEqual(tag, oneShotTag(key, nonce, aad), `aad ${length}, nonce ${i + 1}`);
      }
    });
  } finally {
    a.free();
    b.free();
  }
});

Deno.test("ChachaPolyMac: golden tag (computed with node:crypto chacha20-poly1305)", () => {
  const mac = new ChachaPolyMac(new Uint8Array(32));
  try {
    const tag = new Uint8Array(16);
    mac.tag(new Uint8Array(12), new Uint8Array(5), tag);
    assert.deepEqual(
      tag,
      new Uint8Array([
        0x7e,
        0x04,
        0xfb,
        0x1e,
        0x8e,
        0x50,
        0xd2,
        0xba,
        0xe6,
        0x51,
        0xd4,
        0x63,
        0x8a,
        0xac,
        0xe7,
        0x6c,
      ]),
    );
  } finally {
    mac.free();
  }
});

Deno.test("ChachaPolyMac: a freed context throws CryptoError; free is counted and idempotent", () => {
  const before = liveMacContexts();
  const mac = new ChachaPolyMac(new Uint8Array(32));
  assert.equal(liveMacContexts(), before + 1);
  mac.free();
  mac.free();
  assert.equal(liveMacContexts(), before);
  assert.throws(
    () => mac.tag(new Uint8Array(12), new Uint8Array(4), new Uint8Array(16)),
    (e: unknown) => e instanceof CryptoError && /the MAC was freed/.test(e.message),
  );
});

Deno.test("ChachaPolyMac: rejects a wrong key, nonce or tag size", () => {
  assert.throws(() => new ChachaPolyMac(new Uint8Array(16)), RangeError);
  const mac = new ChachaPolyMac(new Uint8Array(32));
  try {
    const aad = new Uint8Array(4);
    assert.throws(() => mac.tag(new Uint8Array(16), aad, new Uint8Array(16)), RangeError);
    assert.throws(() => mac.tag(new Uint8Array(12), aad, new Uint8Array(8)), RangeError);
  } finally {
    mac.free();
  }
});

Deno.test("hmacSha256() and constantTimeEqual() agree with node:crypto", () => {
  const key = bytes(32, 5);
  const data = bytes(100, 6);
  const out = new Uint8Array(32);
  hmacSha256(key, data, out);
  assert.deepEqual(out, new Uint8Array(createHmac("sha256", key).update(data).digest()));
  const other = out.slice();
  assert.ok(constantTimeEqual(out, other, 32));
  other[31] ^= 1;
  assert.ok(!constantTimeEqual(out, other, 32));
  assert.ok(constantTimeEqual(out, other, 31));
  assert.ok(!constantTimeEqual(out, other, 33), "a length past either buffer is unequal");
});
