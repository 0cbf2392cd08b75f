/**
 * Deno FFI bindings for libegosf (native/ego/egosf.h). Only ints, C strings
 * and the opaque session pointer cross: EGO's structures stay inside the C
 * library, so these bindings do not depend on the EGO SDK's layouts.
 */

const symbols = {
  egosf_abi_version: { parameters: [], result: "i32" },
  // egosf_t *egosf_open(const char *confdir, const char *user, const char *password, const char *client)
  egosf_open: { parameters: ["buffer", "buffer", "buffer", "buffer"], result: "pointer" },
  // int egosf_request(egosf_t *, const char *consumer, const char *rg, int min, int max, char *id_out, int id_len)
  egosf_request: {
    parameters: ["pointer", "buffer", "buffer", "i32", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int egosf_poll(egosf_t *, int timeout_ms, char *event_out, int event_len)
  egosf_poll: { parameters: ["pointer", "i32", "buffer", "i32"], result: "i32" },
  // int egosf_release_host(egosf_t *, const char *alloc_id, const char *host)
  egosf_release_host: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  // int egosf_release(egosf_t *, const char *alloc_id)
  egosf_release: { parameters: ["pointer", "buffer"], result: "i32" },
  // int egosf_close(egosf_t *)
  egosf_close: { parameters: ["pointer"], result: "i32" },
  // const char *egosf_last_error(void): a thread-local buffer inside the library
  egosf_last_error: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** egosf.h: EGOSF_ABI_VERSION */
export const EGOSF_ABI_VERSION = 1;
/** egosf.h: egosf_poll's event buffer must hold 512 bytes. */
const EVENT_BYTES = 512;
const ID_BYTES = 256;

export interface EgoEvent {
  kind: "add" | "reclaim";
  allocId: string;
  host: string;
  slots: number;
}

export class EgoSfError extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.name = "EgoSfError";
    this.code = code;
  }
}

/** One EGO client session (logged on and registered) through libegosf. */
export class EgoSession {
  #lib: Deno.DynamicLibrary<typeof symbols>;
  #s: Deno.PointerObject | null;
  // Reused for every poll; the library writes at most EVENT_BYTES into it during the call.
  #event = new Uint8Array(EVENT_BYTES);

  private constructor(lib: Deno.DynamicLibrary<typeof symbols>, s: Deno.PointerObject) {
    this.#lib = lib;
    this.#s = s;
  }

  static open(
    o: { library: string; confDir: string; user: string; password: string; client: string },
  ): EgoSession {
    let lib: Deno.DynamicLibrary<typeof symbols>;
    try {
      lib = Deno.dlopen(o.library, symbols);
    } catch (e) {
      throw new EgoSfError(`Cannot load libegosf from ${o.library}: ${(e as Error).message}`, -1);
    }
    const abi = lib.symbols.egosf_abi_version();
    if (abi !== EGOSF_ABI_VERSION) {
      lib.close();
      throw new EgoSfError(
        `Cannot use ${o.library}: ABI ${abi}, expected ${EGOSF_ABI_VERSION}`,
        -1,
      );
    }
    const s = lib.symbols.egosf_open(
      cstr(o.confDir),
      cstr(o.user),
      cstr(o.password),
      cstr(o.client),
    );
    if (s === null) {
      const message = lastError(lib);
      lib.close();
      throw new EgoSfError(message, -1);
    }
    return new EgoSession(lib, s);
  }

  /** Asks for 1..maxSlots slots; returns the allocation id (slots come as "add" events). */
  request(consumer: string, resourceGroup: string, maxSlots: number): string {
    const id = new Uint8Array(ID_BYTES);
    this.#check(
      this.#lib.symbols.egosf_request(
        this.#session(),
        cstr(consumer),
        cstr(resourceGroup),
        1,
        maxSlots,
        id,
        ID_BYTES,
      ),
    );
    return fromCstr(id);
  }

  /** The next event, waiting up to timeoutMs (0: only look); undefined when none. */
  poll(timeoutMs = 0): EgoEvent | undefined {
    const rc = this.#check(
      this.#lib.symbols.egosf_poll(this.#session(), timeoutMs, this.#event, EVENT_BYTES),
    );
    if (rc === 0) return undefined;
    const [kind, allocId, host, slots] = fromCstr(this.#event).split(" ");
    if ((kind !== "add" && kind !== "reclaim") || !host || !/^\d+$/.test(slots ?? "")) {
      throw new EgoSfError(`Cannot parse libegosf event: ${fromCstr(this.#event)}`, -1);
    }
    return { kind, allocId, host, slots: Number(slots) };
  }

  releaseHost(allocId: string, host: string): void {
    this.#check(this.#lib.symbols.egosf_release_host(this.#session(), cstr(allocId), cstr(host)));
  }

  release(allocId: string): void {
    this.#check(this.#lib.symbols.egosf_release(this.#session(), cstr(allocId)));
  }

  /** Unregisters and closes the session, then unloads the library; idempotent. */
  close(): void {
    if (this.#s === null) return;
    const rc = this.#lib.symbols.egosf_close(this.#s);
    this.#s = null;
    const message = rc < 0 ? lastError(this.#lib) : "";
    this.#lib.close();
    if (rc < 0) throw new EgoSfError(message, rc);
  }

  #session(): Deno.PointerObject {
    if (this.#s === null) throw new EgoSfError("Cannot use EGO session: closed", -1);
    return this.#s;
  }

  /** Every libegosf return code goes through here: negative → its "Cannot ..." message. */
  #check(rc: number): number {
    if (rc < 0) throw new EgoSfError(lastError(this.#lib), rc);
    return rc;
  }
}

function lastError(lib: Deno.DynamicLibrary<typeof symbols>): string {
  const p = lib.symbols.egosf_last_error();
  // The pointer is the library's own NUL-terminated buffer, valid until the next failing call.
  return p === null ? "unknown libegosf failure" : Deno.UnsafePointerView.getCString(p);
}

/** A NUL-terminated copy; kept alive by the caller's argument list for the call's duration. */
function cstr(s: string): Uint8Array<ArrayBuffer> {
  if (s.includes("\0")) throw new TypeError("Cannot pass a string with NUL to libegosf");
  return new TextEncoder().encode(`${s}\0`);
}

function fromCstr(b: Uint8Array): string {
  const end = b.indexOf(0);
  return new TextDecoder().decode(b.subarray(0, end < 0 ? b.length : end));
}
