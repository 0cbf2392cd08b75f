/**
 * The MAC of mcdist packets (PROTOCOL.md, "Tag"): the ChaCha20-Poly1305 tag of an empty
 * plaintext with the packet as associated data, under a key derived from the fork key, and the
 * packet's own sender, seq and time (header bytes 24–35) as the nonce.
 *
 * Version 2 tagged packets with HMAC-SHA256 of the fork key: 4.1–4.5 µs a 4 KiB page here,
 * paid once by the server and again by every clone host, a fifth of what a clone host spends
 * on a page it receives. This tag costs 1.2 µs (OpenSSL through FFI, one context per key,
 * re-nonced for every packet).
 *
 * @module
 */

import {
  CHACHA_NONCE_BYTES,
  ChachaPolyMac,
  constantTimeEqual,
  hmacSha256,
  POLY1305_TAG_BYTES,
} from "../../native/libcrypto.ts";

/** Fork keys are 32 bytes (the descriptor's). */
export const FORK_KEY_BYTES = 32;
/** Where the nonce lies in a packet: sender u32, seq u32, time u32. */
const NONCE_OFFSET = 24;
const LABEL = new TextEncoder().encode("SFMC v3 packet key");

/**
 * One fork's packet key on this thread. Holds an OpenSSL context until {@link free}: the
 * server frees it when the fork goes, a client when it closes.
 */
export class PacketKey {
  #mac: ChachaPolyMac;
  /** The tag computed by the latest verify (this thread only). */
  #scratch = new Uint8Array(POLY1305_TAG_BYTES);

  constructor(forkKey: Uint8Array) {
    if (forkKey.length !== FORK_KEY_BYTES) {
      throw new RangeError(
        `Cannot use fork key: it is ${forkKey.length} bytes, want ${FORK_KEY_BYTES}`,
      );
    }
    // Derived, not the fork key itself: the unicast protocol keys HMAC-SHA256 with that.
    const key = new Uint8Array(32);
    hmacSha256(forkKey, LABEL, key);
    this.#mac = new ChachaPolyMac(key);
    key.fill(0);
  }

  /** Writes the tag of `signed` (a packet without its tag) into `tag` (16 bytes). */
  sign(signed: Uint8Array, tag: Uint8Array): void {
    this.#mac.tag(nonceOf(signed), signed, tag);
  }

  /** Whether `tag` is the tag of `signed`, compared in constant time. */
  verify(signed: Uint8Array, tag: Uint8Array): boolean {
    this.#mac.tag(nonceOf(signed), signed, this.#scratch);
    return constantTimeEqual(this.#scratch, tag, POLY1305_TAG_BYTES);
  }

  /** Releases the OpenSSL context; later use throws. Safe to call twice. */
  free(): void {
    this.#mac.free();
  }
}

function nonceOf(signed: Uint8Array): Uint8Array {
  return signed.subarray(NONCE_OFFSET, NONCE_OFFSET + CHACHA_NONCE_BYTES);
}
