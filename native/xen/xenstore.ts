/**
 * libxenstore (Xen 4.17): read, write, remove, list, watch. Strings the
 * library allocates are copied and freed at once; watch events are read on
 * Deno's FFI thread pool (`nonblocking`) so the agent's event loop never blocks.
 *
 * @module
 */
import { checkBool, checkPointer } from "./check.ts";

const symbols = {
  // struct xs_handle *xs_open(unsigned long flags)
  xs_open: { parameters: ["u64"], result: "pointer" },
  // void xs_close(struct xs_handle *xsh)
  xs_close: { parameters: ["pointer"], result: "void" },
  // void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *len)
  xs_read: { parameters: ["pointer", "u32", "buffer", "buffer"], result: "pointer" },
  // bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path, const void *data, unsigned int len)
  xs_write: { parameters: ["pointer", "u32", "buffer", "buffer", "u32"], result: "bool" },
  // bool xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path)
  xs_rm: { parameters: ["pointer", "u32", "buffer"], result: "bool" },
  // char **xs_directory(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *num)
  xs_directory: { parameters: ["pointer", "u32", "buffer", "buffer"], result: "pointer" },
  // bool xs_watch(struct xs_handle *h, const char *path, const char *token)
  xs_watch: { parameters: ["pointer", "buffer", "buffer"], result: "bool" },
  // bool xs_unwatch(struct xs_handle *h, const char *path, const char *token)
  xs_unwatch: { parameters: ["pointer", "buffer", "buffer"], result: "bool" },
  // char **xs_read_watch(struct xs_handle *h, unsigned int *num): blocks until an event.
  xs_read_watch: { parameters: ["pointer", "buffer"], result: "pointer", nonblocking: true },
  // char *xs_get_domain_path(struct xs_handle *h, unsigned int domid)
  xs_get_domain_path: { parameters: ["pointer", "u32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const libcSymbols = {
  // void free(void *ptr): xs_* results are malloc'd by libxenstore.
  free: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

export const LIBXENSTORE = "libxenstore.so.4";
/** xenstore.h: XBT_NULL, the no-transaction id. */
const XBT_NULL = 0;
/** xenstore.h: enum xs_watch_type { XS_WATCH_PATH = 0, XS_WATCH_TOKEN }. */
const XS_WATCH_PATH = 0;
const XS_WATCH_TOKEN = 1;

const enc = new TextEncoder();
const dec = new TextDecoder();
const cstr = (s: string): Uint8Array<ArrayBuffer> => enc.encode(`${s}\0`);

export interface WatchEvent {
  path: string;
  token: string;
}

export class XenStore {
  #lib: Deno.DynamicLibrary<typeof symbols>;
  #libc: Deno.DynamicLibrary<typeof libcSymbols>;
  #h: Deno.PointerObject;

  constructor(path = LIBXENSTORE) {
    this.#lib = Deno.dlopen(path, symbols);
    this.#libc = Deno.dlopen("libc.so.6", libcSymbols);
    this.#h = checkPointer("xs_open", this.#lib.symbols.xs_open(0n));
  }

  /** The value at `path`, or undefined when it does not exist (ENOENT). */
  read(path: string): string | undefined {
    const len = new Uint32Array(1);
    const p = this.#lib.symbols.xs_read(this.#h, XBT_NULL, cstr(path), len);
    if (p === null) return undefined;
    // xs_read returns len bytes (+ a NUL) malloc'd; copied, then freed.
    try {
      const out = new Uint8Array(len[0]);
      if (len[0] > 0) new Deno.UnsafePointerView(p).copyInto(out);
      return dec.decode(out);
    } finally {
      this.#libc.symbols.free(p);
    }
  }

  write(path: string, value: string): void {
    const data = enc.encode(value);
    checkBool(
      `xs_write(${path})`,
      this.#lib.symbols.xs_write(this.#h, XBT_NULL, cstr(path), data, data.length),
    );
  }

  rm(path: string): void {
    checkBool(`xs_rm(${path})`, this.#lib.symbols.xs_rm(this.#h, XBT_NULL, cstr(path)));
  }

  /** Children of `path` (names only), or [] when it does not exist. */
  list(path: string): string[] {
    const num = new Uint32Array(1);
    const p = this.#lib.symbols.xs_directory(this.#h, XBT_NULL, cstr(path), num);
    if (p === null) return [];
    try {
      return readStringVector(p, num[0]);
    } finally {
      this.#libc.symbols.free(p);
    }
  }

  /** Every entry under `path`, recursively, as relative path → value. */
  dump(path: string, prefix = ""): Map<string, string> {
    const out = new Map<string, string>();
    for (const child of this.list(path)) {
      const full = `${path}/${child}`;
      const rel = prefix ? `${prefix}/${child}` : child;
      const value = this.read(full);
      if (value !== undefined) out.set(rel, value);
      for (const [k, v] of this.dump(full, rel)) out.set(k, v);
    }
    return out;
  }

  watch(path: string, token: string): void {
    checkBool(`xs_watch(${path})`, this.#lib.symbols.xs_watch(this.#h, cstr(path), cstr(token)));
  }

  unwatch(path: string, token: string): void {
    checkBool(
      `xs_unwatch(${path})`,
      this.#lib.symbols.xs_unwatch(this.#h, cstr(path), cstr(token)),
    );
  }

  /** The next watch event (xenstored fires each new watch once at once, too). */
  async readWatch(): Promise<WatchEvent> {
    const num = new Uint32Array(1);
    const p = checkPointer("xs_read_watch", await this.#lib.symbols.xs_read_watch(this.#h, num));
    try {
      const [path, token] = readStringVector(p, num[0]);
      return { path: path ?? "", token: token ?? "" };
    } finally {
      this.#libc.symbols.free(p);
    }
  }

  /** "/local/domain/<domid>". */
  domainPath(domid: number): string {
    const p = checkPointer(
      `xs_get_domain_path(dom ${domid})`,
      this.#lib.symbols.xs_get_domain_path(this.#h, domid),
    );
    try {
      return Deno.UnsafePointerView.getCString(p);
    } finally {
      this.#libc.symbols.free(p);
    }
  }

  close(): void {
    this.#lib.symbols.xs_close(this.#h);
    this.#lib.close();
    this.#libc.close();
  }
}

/** A char*[num] whose strings live in the same allocation (xs_directory, xs_read_watch). */
function readStringVector(p: Deno.PointerObject, num: number): string[] {
  const view = new Deno.UnsafePointerView(p);
  const out: string[] = [];
  for (let i = 0; i < num; i++) {
    const s = Deno.UnsafePointer.create(view.getBigUint64(i * 8));
    out.push(s === null ? "" : Deno.UnsafePointerView.getCString(s));
  }
  return out;
}

export { XS_WATCH_PATH, XS_WATCH_TOKEN };
