/**
 * libcrypto (OpenSSL 3) bindings: the MACs of the page protocols. HMAC-SHA256 signs mcdist's
 * datagrams (lib/mcdist/PROTOCOL.md) and the unicast protocol's (WIRE.md) hand-shake;
 * ChaCha20-Poly1305, used as a MAC (empty plaintext, the frame as associated data), its frames.
 *
 * Why FFI: node:crypto under Deno hashes ~0.9 GB/s (4.8 µs a 4 KiB page) and pays ~2 µs a call;
 * OpenSSL's Poly1305 runs at ~12 GB/s here (0.3 µs a page), which is what lets a page transport
 * reach hundreds of thousands of pages per second. Opened lazily, once per thread (fault workers
 * authenticate frames themselves).
 *
 * A session's MAC keeps one cipher context per key ({@link ChachaPolyMac}) and only re-nonces it
 * per frame: a full re-initialisation (cipher fetch, key set-up) cost ~1.9 µs a tag, re-noncing
 * ~0.45 µs, and a fault costs several tags (request and reply, each sealed and checked).
 *
 * @module
 */

const symbols = {
  // const EVP_MD *EVP_sha256(void)
  EVP_sha256: { parameters: [], result: "pointer" },
  // unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len, const unsigned char *d,
  //                     size_t n, unsigned char *md_out, unsigned int *md_len)
  HMAC: {
    parameters: ["pointer", "buffer", "i32", "buffer", "usize", "buffer", "buffer"],
    result: "pointer",
  },
  // const EVP_CIPHER *EVP_chacha20_poly1305(void)
  EVP_chacha20_poly1305: { parameters: [], result: "pointer" },
  // EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void)
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  // void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)
  EVP_CIPHER_CTX_free: { parameters: ["pointer"], result: "void" },
  // int EVP_EncryptInit_ex(ctx, const EVP_CIPHER *type, ENGINE *impl, const uchar *key, const uchar *iv)
  // NULL type and key keep the context's cipher and key (only the nonce changes).
  EVP_EncryptInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  // int EVP_EncryptUpdate(ctx, uchar *out, int *outl, const uchar *in, int inl); out NULL = AAD
  EVP_EncryptUpdate: {
    parameters: ["pointer", "pointer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  // int EVP_EncryptFinal_ex(ctx, uchar *out, int *outl)
  EVP_EncryptFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  // int EVP_CIPHER_CTX_ctrl(ctx, int type, int arg, void *ptr)
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  // int CRYPTO_memcmp(const void *a, const void *b, size_t len): constant time
  CRYPTO_memcmp: { parameters: ["buffer", "buffer", "usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libcrypto = Deno.DynamicLibrary<typeof symbols>["symbols"];

/** libcrypto is missing or refused an operation. */
export class CryptoError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CryptoError";
  }
}

/** include/openssl/evp.h: EVP_CTRL_AEAD_GET_TAG */
const EVP_CTRL_AEAD_GET_TAG = 0x10;
/** Poly1305 tag bytes. */
export const POLY1305_TAG_BYTES = 16;
/** ChaCha20-Poly1305 key and nonce bytes (RFC 8439). */
export const CHACHA_KEY_BYTES = 32;
export const CHACHA_NONCE_BYTES = 12;

let lib: Libcrypto | undefined;
let sha256: Deno.PointerValue = null;
let chacha: Deno.PointerValue = null;
/** Cipher contexts made on this thread and not freed yet. */
let liveContexts = 0;
// Scratch for this thread, each used only during one synchronous call.
const hmacLen = new Uint8Array(4); // unsigned int
const outLen = new Uint8Array(4); // int
const finalOut = new Uint8Array(64); // EVP_EncryptFinal_ex writes nothing for an AEAD; headroom
/** Longest associated data one EVP_EncryptUpdate takes (its length is an int). */
const MAX_AAD_BYTES = 0x7fffffff;

function libcrypto(): Libcrypto {
  if (lib === undefined) {
    try {
      lib = Deno.dlopen("libcrypto.so.3", symbols).symbols;
    } catch (cause) {
      throw new CryptoError(
        "Cannot authenticate page frames: libcrypto.so.3 (OpenSSL 3) is not loadable",
        { cause },
      );
    }
    sha256 = lib.EVP_sha256();
    chacha = lib.EVP_chacha20_poly1305();
  }
  return lib;
}

/** HMAC-SHA256(key, data) into `out` (32 bytes). */
export function hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void {
  const l = libcrypto();
  if (out.byteLength < 32) throw new RangeError("hmacSha256: output shorter than 32 bytes");
  // key, data, out and hmacLen are read/written only during this synchronous call.
  const r = l.HMAC(sha256, key, key.byteLength, data, BigInt(data.byteLength), out, hmacLen);
  if (r === null) throw new CryptoError("Cannot compute HMAC-SHA256: OpenSSL failed");
}

/**
 * ChaCha20-Poly1305 (RFC 8439) as a MAC under one key: the tag of empty plaintext with the
 * message as associated data, secure as long as no nonce is used twice under the key.
 *
 * Holds an OpenSSL cipher context (native memory the garbage collector does not see) until
 * {@link free}. It belongs to the thread that made it: the object cannot be posted to another
 * (its private fields do not survive structured cloning), and OpenSSL contexts are not safe to
 * share between threads anyway.
 */
export class ChachaPolyMac {
  #l: Libcrypto;
  #ctx: Deno.PointerValue;

  /** Set up a context for `key` (32 bytes); the caller may wipe `key` afterwards. */
  constructor(key: Uint8Array) {
    if (key.byteLength !== CHACHA_KEY_BYTES) {
      throw new RangeError("ChachaPolyMac: key must be 32 bytes");
    }
    const l = libcrypto();
    const ctx = l.EVP_CIPHER_CTX_new();
    if (ctx === null) throw new CryptoError("Cannot create a cipher context: out of memory");
    // key: copied into ctx during this synchronous call. No nonce yet: tag() sets one each time.
    if (l.EVP_EncryptInit_ex(ctx, chacha, null, key, null) !== 1) {
      l.EVP_CIPHER_CTX_free(ctx);
      throw new CryptoError("Cannot set up ChaCha20-Poly1305: OpenSSL failed");
    }
    this.#l = l;
    this.#ctx = ctx;
    liveContexts++;
  }

  /** Write the 16-byte tag of `aad` under `nonce` (12 bytes) into `tag`. */
  tag(nonce: Uint8Array, aad: Uint8Array, tag: Uint8Array): void {
    const ctx = this.#ctx;
    if (ctx === null) {
      throw new CryptoError("Cannot compute ChaCha20-Poly1305 tag: the MAC was freed");
    }
    if (nonce.byteLength !== CHACHA_NONCE_BYTES) {
      throw new RangeError("ChachaPolyMac.tag: nonce must be 12 bytes");
    }
    if (tag.byteLength < POLY1305_TAG_BYTES) {
      throw new RangeError("ChachaPolyMac.tag: tag too short");
    }
    if (aad.byteLength > MAX_AAD_BYTES) throw new RangeError("ChachaPolyMac.tag: aad over 2 GiB");
    const l = this.#l;
    // Every buffer below is read or written only during its synchronous call; ctx lives until
    // free(). Re-noncing restarts the Poly1305 state, keeping the key set by the constructor.
    if (
      l.EVP_EncryptInit_ex(ctx, null, null, null, nonce) !== 1 ||
      (aad.byteLength > 0 && l.EVP_EncryptUpdate(ctx, null, outLen, aad, aad.byteLength) !== 1) ||
      l.EVP_EncryptFinal_ex(ctx, finalOut, outLen) !== 1 ||
      l.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, POLY1305_TAG_BYTES, tag) !== 1
    ) {
      throw new CryptoError("Cannot compute ChaCha20-Poly1305 tag: OpenSSL failed");
    }
  }

  /** Release the context (it also clears the key); later tags throw. Safe to call twice. */
  free(): void {
    if (this.#ctx === null) return;
    this.#l.EVP_CIPHER_CTX_free(this.#ctx);
    this.#ctx = null;
    liveContexts--;
  }
}

/** {@link ChachaPolyMac} contexts made on this thread and not freed yet: a leak gauge. */
export function liveMacContexts(): number {
  return liveContexts;
}

/** Constant-time equality of the first `length` bytes of `a` and `b`. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array, length: number): boolean {
  if (a.byteLength < length || b.byteLength < length) return false;
  // a and b are read only during this synchronous call.
  return libcrypto().CRYPTO_memcmp(a, b, BigInt(length)) === 0;
}
