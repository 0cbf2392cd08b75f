/**
 * The save image `xl save` writes and `xl restore` reads, split into what a
 * descriptor keeps (every non-page record, verbatim) and the guest's pages,
 * and put back together on a clone host from a descriptor plus fetched pages.
 *
 * Layers (Xen 4.17, docs/specs/):
 *   xl header    tools/xl/xl_saverestore.c: "Xen saved domain, xl format\n \0 \r", byte-order
 *                marker 0x01020304, mandatory/optional flags, then optional data (the
 *                domain config JSON) — native endian.
 *   libxl stream libxl-migration-stream.pandoc v2: header ident "LibxlFmt" (u64 BE), version
 *                u32 BE, options u32 BE; records {type u32, length u32, body, pad to 8} LE.
 *                LIBXC_CONTEXT (1) is followed by the whole libxc stream.
 *   libxc stream libxc-migration-stream.pandoc v3: image header {marker u64 ~0, id "XENF",
 *                version u32, options u16, reserved 6} BE; domain header {type u32, page_shift
 *                u16, reserved u16, xen major u32, minor u32} LE; records as above.
 *   PAGE_DATA    {count u32, reserved u32, pfn[count] u64 (pfn bits 0-51, type bits 60-63 =
 *                XEN_DOMCTL_PFINFO_* << 32)}, then 4 KiB per pfn whose type carries data.
 *
 * @module
 */

export class XenStreamError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "XenStreamError";
  }
}

const XL_MAGIC = new TextEncoder().encode("Xen saved domain, xl format\n \0 \r");
const XL_HEADER_BYTES = 48;
const XL_BYTEORDER = 0x01020304;
/** tools/xl/xl.h: XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMv2. */
const XL_FLAG_JSON = 1;
const XL_FLAG_STREAMV2 = 2;

const LIBXL_IDENT = 0x4c6962786c466d74n; // "LibxlFmt"
const LIBXL_VERSION = 2;
export const LIBXL_REC = { END: 0, LIBXC_CONTEXT: 1, EMULATOR_XENSTORE_DATA: 2 } as const;

const XENF = 0x58454e46;
export const LIBXC_REC = {
  END: 0,
  PAGE_DATA: 1,
  X86_PV_INFO: 2,
  X86_PV_P2M_FRAMES: 3,
  X86_PV_VCPU_BASIC: 4,
  X86_PV_VCPU_EXTENDED: 5,
  X86_PV_VCPU_XSAVE: 6,
  SHARED_INFO: 7,
  X86_TSC_INFO: 8,
  X86_PV_VCPU_MSRS: 12,
  STATIC_DATA_END: 16,
  X86_CPUID_POLICY: 17,
  X86_MSR_POLICY: 18,
} as const;
/** Records the restorer needs before any page (the stream's static data). */
const STATIC_TYPES = new Set<number>([2, 3, 16, 17, 18]);
/** DOMAIN header type 1: x86 PV. */
const DOMAIN_X86_PV = 1;

/** XEN_DOMCTL_PFINFO_* >> 28 (xen/include/public/domctl.h). */
export const PFTYPE = { NOTAB: 0x0, XALLOC: 0xd, BROKEN: 0xe, XTAB: 0xf } as const;
const PAGE = 4096;
const PFN_MASK = (1n << 52n) - 1n;

export function typeHasData(type: number): boolean {
  return type !== PFTYPE.XTAB && type !== PFTYPE.XALLOC && type !== PFTYPE.BROKEN;
}

export interface StreamRecord {
  stream: 1 | 2;
  type: number;
  body: Uint8Array;
}

/** A save image, split. */
export interface SplitImage {
  /** The domain config JSON from the xl header. */
  config: string;
  libxcVersion: number;
  xenMajor: number;
  xenMinor: number;
  /** Non-page records of both streams, in stream order. */
  records: StreamRecord[];
  /** The highest pfn seen + 1 (the p2m size as far as pages go). */
  pfnCount: number;
  /** Page type per pfn (0xf XTAB where no record named it). */
  types: Uint8Array;
  /** The 4 KiB contents of every pfn that carried data. */
  pages: Map<number, Uint8Array>;
}

/** Reads an xl save image (an `xl save` file or pipe, whole). */
export function splitImage(image: Uint8Array): SplitImage {
  return drain(splitImageSteps(image));
}

/**
 * splitImage without holding the event loop: a 128 MiB image takes seconds under
 * emulation (and minutes on a loaded machine), long enough for an agent to miss its
 * heartbeats. Yields to the event loop every `sliceMs` of work.
 */
export function splitImageAsync(image: Uint8Array, sliceMs = 20): Promise<SplitImage> {
  return drainAsync(splitImageSteps(image), sliceMs);
}

/** The chunks of joinImage, made one PAGE_DATA record at a time (for writing as they come). */
export function* joinImageChunks(p: ImageParts, pagesPerRecord = 512): Generator<Uint8Array> {
  yield* joinSteps(p, pagesPerRecord);
}

/** Runs a step generator to its end. */
function drain<T>(steps: Generator<unknown, T>): T {
  for (;;) {
    const n = steps.next();
    if (n.done) return n.value;
  }
}

/** Runs a step generator to its end, giving the event loop a turn every `sliceMs`. */
export async function drainAsync<T>(steps: Generator<unknown, T>, sliceMs = 20): Promise<T> {
  let since = performance.now();
  for (;;) {
    const n = steps.next();
    if (n.done) return n.value;
    if (performance.now() - since >= sliceMs) {
      await new Promise((r) => setTimeout(r, 0));
      since = performance.now();
    }
  }
}

/** splitImage's work, one PAGE_DATA record per step. */
function* splitImageSteps(image: Uint8Array): Generator<void, SplitImage> {
  image = aligned(image);
  const r = new Reader(image);
  const magic = r.bytes(32, "xl magic");
  if (!magic.every((b, i) => b === XL_MAGIC[i])) {
    throw new XenStreamError("Cannot read save image: not an xl save file");
  }
  if (r.u32le("byte order") !== XL_BYTEORDER) {
    throw new XenStreamError("Cannot read save image: foreign byte order");
  }
  const mandatory = r.u32le("mandatory flags");
  r.u32le("optional flags");
  const optLen = r.u32le("optional data length");
  if ((mandatory & ~(XL_FLAG_JSON | XL_FLAG_STREAMV2)) !== 0) {
    throw new XenStreamError(
      `Cannot read save image: unknown mandatory flags 0x${mandatory.toString(16)}`,
    );
  }
  if (!(mandatory & XL_FLAG_STREAMV2)) {
    throw new XenStreamError("Cannot read save image: not a v2 stream");
  }
  // xl_saverestore.c: the optional data is u32 config length, then the config (NUL-terminated).
  const opt = new Reader(r.bytes(optLen, "optional data"));
  const cfgBytes = optLen >= 4
    ? opt.bytes(opt.u32le("config length"), "config")
    : new Uint8Array(0);
  const nul = cfgBytes.indexOf(0);
  const config = new TextDecoder().decode(nul >= 0 ? cfgBytes.subarray(0, nul) : cfgBytes);
  // libxl header (big-endian)
  if (r.u64be("libxl ident") !== LIBXL_IDENT) {
    throw new XenStreamError("Cannot read save image: no libxl header");
  }
  const lv = r.u32be("libxl version");
  if (lv !== LIBXL_VERSION) {
    throw new XenStreamError(`Cannot read save image: libxl stream version ${lv}`);
  }
  const lopts = r.u32be("libxl options");
  if (lopts & 1) throw new XenStreamError("Cannot read save image: big-endian stream");
  const records: StreamRecord[] = [];
  const pages = new Map<number, Uint8Array>();
  let types = new Uint8Array(0);
  let pfnCount = 0;
  let libxcVersion = 0, xenMajor = 0, xenMinor = 0;
  for (;;) {
    const { type, body } = r.record("libxl");
    if (type === LIBXL_REC.END) break;
    if (type !== LIBXL_REC.LIBXC_CONTEXT) {
      records.push({ stream: 2, type, body });
      continue;
    }
    // libxc image header (big-endian) + domain header (little-endian)
    if (r.u64be("libxc marker") !== 0xffff_ffff_ffff_ffffn || r.u32be("libxc id") !== XENF) {
      throw new XenStreamError("Cannot read save image: no libxc image header");
    }
    libxcVersion = r.u32be("libxc version");
    const opts = r.u16be("libxc options");
    if (opts & 1) throw new XenStreamError("Cannot read save image: big-endian libxc stream");
    r.bytes(6, "libxc reserved");
    const dtype = r.u32le("domain type");
    if (dtype !== DOMAIN_X86_PV) {
      throw new XenStreamError(`Cannot read save image: domain type ${dtype} is not x86 PV`);
    }
    const shift = r.u16le("page shift");
    if (shift !== 12) throw new XenStreamError(`Cannot read save image: page shift ${shift}`);
    r.u16le("domain reserved");
    xenMajor = r.u32le("xen major");
    xenMinor = r.u32le("xen minor");
    for (;;) {
      const rec = r.record("libxc");
      if (rec.type === LIBXC_REC.END) break;
      if (rec.type !== LIBXC_REC.PAGE_DATA) {
        records.push({ stream: 1, type: rec.type, body: rec.body });
        continue;
      }
      const v = view(rec.body);
      const count = v.getUint32(0, true);
      let at = 8 + count * 8;
      for (let i = 0; i < count; i++) {
        const word = v.getBigUint64(8 + i * 8, true);
        const pfn = Number(word & PFN_MASK);
        const type = Number(word >> 60n);
        if (pfn >= pfnCount) {
          pfnCount = pfn + 1;
          if (pfnCount > types.length) {
            const grown = new Uint8Array(Math.max(pfnCount, types.length * 2)).fill(PFTYPE.XTAB);
            grown.set(types);
            types = grown;
          }
        }
        types[pfn] = type;
        if (typeHasData(type)) {
          if (at + PAGE > rec.body.length) {
            throw new XenStreamError(`Cannot read save image: PAGE_DATA short at pfn ${pfn}`);
          }
          // A view into the image, not a copy: the image is kept whole as the fork's snapshot.
          pages.set(pfn, rec.body.subarray(at, at + PAGE));
          at += PAGE;
        }
      }
      yield;
    }
  }
  if (r.remaining !== 0) {
    throw new XenStreamError(`Cannot read save image: ${r.remaining} bytes after END`);
  }
  return {
    config,
    libxcVersion,
    xenMajor,
    xenMinor,
    records,
    pfnCount,
    types: types.slice(0, pfnCount),
    pages,
  };
}

export interface ImageParts {
  config: string;
  libxcVersion: number;
  xenMajor: number;
  xenMinor: number;
  records: StreamRecord[];
  types: Uint8Array;
  /** Contents of pfn `i` for every pfn whose type carries data. */
  page(pfn: number): Uint8Array;
}

/** Writes a save image `xl restore` accepts: xl header, libxl stream, libxc stream. */
export function joinImage(p: ImageParts, pagesPerRecord = 512): Uint8Array[] {
  return [...joinSteps(p, pagesPerRecord)];
}

/**
 * The xl header of a save image with `config` (the domain config JSON): all that differs
 * between two clones' images of one fork, so a host writes the image once and patches this.
 */
export function xlHeader(config: string): Uint8Array {
  const cfg = new TextEncoder().encode(`${config}\0`);
  const head = new Uint8Array(XL_HEADER_BYTES + 4 + cfg.length);
  head.set(XL_MAGIC, 0);
  const hv = view(head);
  hv.setUint32(32, XL_BYTEORDER, true);
  hv.setUint32(36, XL_FLAG_JSON | XL_FLAG_STREAMV2, true);
  hv.setUint32(40, 0, true);
  hv.setUint32(44, 4 + cfg.length, true);
  // xl_saverestore.c add_optdata: u32 length, then the bytes.
  hv.setUint32(48, cfg.length, true);
  head.set(cfg, 52);
  return head;
}

/**
 * The guest's pfn → mfn table as the save stream carries it: X86_PV_P2M_FRAMES names the pfns
 * of the guest's own p2m frames (u32 start pfn, u32 end pfn, then one u64 pfn per frame), and
 * those frames travel as ordinary pages still holding machine frame numbers (libxc normalizes
 * page tables only). 64-bit guests: 512 entries per frame. Entries of pfns the guest has no
 * frame for are returned as they are (INVALID_P2M_ENTRY): the page types say which pfns to use.
 */
export function p2mOf(image: SplitImage): BigUint64Array {
  const rec = image.records.find((r) => r.stream === 1 && r.type === LIBXC_REC.X86_PV_P2M_FRAMES);
  if (rec === undefined) throw new XenStreamError("Cannot find the p2m: no X86_PV_P2M_FRAMES");
  return p2mFrom(rec.body, (pfn) => image.pages.get(pfn));
}

/** The pfns of the p2m frames an X86_PV_P2M_FRAMES body names, in order. */
export function p2mFramePfns(body: Uint8Array): number[] {
  if (body.length < 8 || (body.length - 8) % 8 !== 0) {
    throw new XenStreamError(`Cannot read X86_PV_P2M_FRAMES: ${body.length} bytes`);
  }
  const v = view(body);
  const start = v.getUint32(0, true);
  const end = v.getUint32(4, true);
  const frames = (body.length - 8) / 8;
  if (start !== 0 || end < start || Math.ceil((end + 1) / 512) > frames) {
    throw new XenStreamError(
      `Cannot read X86_PV_P2M_FRAMES: pfns ${start}..${end} in ${frames} frames`,
    );
  }
  return Array.from(
    { length: frames },
    (_, i) => Number(v.getBigUint64(8 + i * 8, true) & PFN_MASK),
  );
}

/** The p2m from an X86_PV_P2M_FRAMES body and the contents of the frames it names. */
export function p2mFrom(
  body: Uint8Array,
  page: (pfn: number) => Uint8Array | undefined,
): BigUint64Array {
  const pfns = p2mFramePfns(body);
  const p2m = new BigUint64Array(pfns.length * 512);
  pfns.forEach((pfn, i) => {
    const bytes = page(pfn);
    if (bytes === undefined) {
      throw new XenStreamError(`Cannot read the p2m: its frame pfn ${pfn} is not in the stream`);
    }
    const pv = view(bytes);
    for (let j = 0; j < 512; j++) p2m[i * 512 + j] = pv.getBigUint64(j * 8, true);
  });
  return p2m;
}

/** What a save file says without its pages: each pfn's type, and the guest's p2m. */
export interface StreamOutline {
  types: Uint8Array;
  p2m: BigUint64Array;
}

/**
 * Reads a save file's outline by seeking past page data: the record headers, PAGE_DATA's pfn
 * lists and the p2m frames only, a few hundred KiB of a 128 MiB image (what a paused guest
 * waits for). The file is checked whole later by splitImage.
 */
export async function outlineSaveFile(path: string): Promise<StreamOutline> {
  const f = await Deno.open(path, { read: true });
  try {
    const read = async (at: number, n: number, what: string): Promise<Uint8Array> => {
      const b = new Uint8Array(n);
      await f.seek(at, Deno.SeekMode.Start);
      let got = 0;
      while (got < n) {
        const k = await f.read(b.subarray(got));
        if (k === null) throw new XenStreamError(`Cannot read save image: truncated at ${what}`);
        got += k;
      }
      return b;
    };
    const xlHead = await read(0, XL_HEADER_BYTES, "xl header");
    if (!XL_MAGIC.every((b, i) => xlHead[i] === b)) {
      throw new XenStreamError("Cannot read save image: not an xl save file");
    }
    // xl header + config, libxl header, the LIBXC_CONTEXT record header, libxc image + domain headers.
    let at = XL_HEADER_BYTES + view(xlHead).getUint32(44, true) + 16 + 8 + 24 + 16;
    let types = new Uint8Array(0);
    let pfnCount = 0;
    let framePfns = new Set<number>();
    let framesBody: Uint8Array | undefined;
    const frames = new Map<number, Uint8Array>();
    for (;;) {
      const head = view(await read(at, 8, "libxc record"));
      const type = head.getUint32(0, true);
      const length = head.getUint32(4, true);
      const body = at + 8;
      at = body + ((length + 7) & ~7);
      if (type === LIBXC_REC.END) break;
      if (type === LIBXC_REC.X86_PV_P2M_FRAMES) {
        framesBody = await read(body, length, "X86_PV_P2M_FRAMES");
        framePfns = new Set(p2mFramePfns(framesBody));
      }
      if (type !== LIBXC_REC.PAGE_DATA) continue;
      const count = view(await read(body, 8, "PAGE_DATA")).getUint32(0, true);
      const list = view(await read(body + 8, count * 8, "PAGE_DATA pfns"));
      let data = body + 8 + count * 8;
      for (let i = 0; i < count; i++) {
        const word = list.getBigUint64(i * 8, true);
        const pfn = Number(word & PFN_MASK);
        const pfnType = Number(word >> 60n);
        pfnCount = Math.max(pfnCount, pfn + 1);
        if (pfn >= types.length) {
          const grown = new Uint8Array(Math.max(pfn + 1, types.length * 2)).fill(PFTYPE.XTAB);
          grown.set(types);
          types = grown;
        }
        types[pfn] = pfnType;
        if (!typeHasData(pfnType)) continue;
        if (framePfns.has(pfn)) frames.set(pfn, await read(data, PAGE, `p2m frame ${pfn}`));
        data += PAGE;
      }
    }
    if (framesBody === undefined) {
      throw new XenStreamError("Cannot find the p2m: no X86_PV_P2M_FRAMES");
    }
    return { types: types.slice(0, pfnCount), p2m: p2mFrom(framesBody, (pfn) => frames.get(pfn)) };
  } finally {
    f.close();
  }
}

function* joinSteps(p: ImageParts, pagesPerRecord: number): Generator<Uint8Array> {
  const out: Uint8Array[] = [xlHeader(p.config)];
  const lh = new Uint8Array(16);
  const lv = view(lh);
  lv.setBigUint64(0, LIBXL_IDENT, false);
  lv.setUint32(8, LIBXL_VERSION, false);
  lv.setUint32(12, 0, false);
  out.push(lh);
  out.push(record(LIBXL_REC.LIBXC_CONTEXT, new Uint8Array(0)));
  const ih = new Uint8Array(24 + 16);
  const iv = view(ih);
  iv.setBigUint64(0, 0xffff_ffff_ffff_ffffn, false);
  iv.setUint32(8, XENF, false);
  iv.setUint32(12, p.libxcVersion, false);
  iv.setUint16(16, 0, false);
  iv.setUint32(24, DOMAIN_X86_PV, true);
  iv.setUint16(28, 12, true);
  iv.setUint32(32, p.xenMajor, true);
  iv.setUint32(36, p.xenMinor, true);
  out.push(ih);
  const libxc = p.records.filter((r) => r.stream === 1);
  for (const r of libxc) if (STATIC_TYPES.has(r.type)) out.push(record(r.type, r.body));
  // PAGE_DATA in batches of pfns that are named at all (XTAB pfns are left out).
  let batch: number[] = [];
  const flush = () => {
    if (batch.length === 0) return;
    const withData = batch.filter((pfn) => typeHasData(p.types[pfn]));
    const body = new Uint8Array(8 + batch.length * 8 + withData.length * PAGE);
    const bv = view(body);
    bv.setUint32(0, batch.length, true);
    batch.forEach((pfn, i) =>
      bv.setBigUint64(8 + i * 8, (BigInt(p.types[pfn]) << 60n) | BigInt(pfn), true)
    );
    let at = 8 + batch.length * 8;
    for (const pfn of withData) {
      body.set(p.page(pfn), at);
      at += PAGE;
    }
    out.push(record(LIBXC_REC.PAGE_DATA, body));
    batch = [];
  };
  for (let pfn = 0; pfn < p.types.length; pfn++) {
    if (p.types[pfn] === PFTYPE.XTAB) continue;
    batch.push(pfn);
    if (batch.length === pagesPerRecord) {
      flush();
      yield* out.splice(0);
    }
  }
  flush();
  for (const r of libxc) if (!STATIC_TYPES.has(r.type)) out.push(record(r.type, r.body));
  out.push(record(LIBXC_REC.END, new Uint8Array(0)));
  for (const r of p.records) if (r.stream === 2) out.push(record(r.type, r.body));
  out.push(record(LIBXL_REC.END, new Uint8Array(0)));
  yield* out.splice(0);
}

/**
 * Reads a save image file into one buffer placed so the libxl stream starts 8-byte
 * aligned (no second 128 MiB copy by `aligned`), in slices that leave the event loop free.
 */
export async function readImageFile(path: string, sliceBytes = 4 << 20): Promise<Uint8Array> {
  const f = await Deno.open(path, { read: true });
  try {
    const size = (await f.stat()).size;
    const head = new Uint8Array(Math.min(size, XL_HEADER_BYTES));
    let got = 0;
    while (got < head.length) {
      const n = await f.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    const start = head.length === XL_HEADER_BYTES
      ? XL_HEADER_BYTES + view(head).getUint32(44, true)
      : 0;
    const pad = (8 - (start % 8)) % 8;
    const image = new Uint8Array(size + pad).subarray(pad);
    image.set(head.subarray(0, got));
    let at = got;
    while (at < size) {
      const n = await f.read(image.subarray(at, Math.min(size, at + sliceBytes)));
      if (n === null) break;
      at += n;
    }
    if (at !== size) throw new XenStreamError(`Cannot read save image ${path}: short read`);
    return image;
  } finally {
    f.close();
  }
}

/**
 * The libxl stream starts after the xl header and its config, at any offset; pages are
 * kept as views into the image, so the image is moved (once) to put that start on 8 bytes.
 */
function aligned(image: Uint8Array): Uint8Array {
  if (image.length < XL_HEADER_BYTES) return image;
  const optLen = view(image).getUint32(44, true);
  const start = XL_HEADER_BYTES + optLen;
  if ((image.byteOffset + start) % 8 === 0) return image;
  const pad = (8 - (start % 8)) % 8;
  const moved = new Uint8Array(image.length + pad);
  moved.set(image, pad);
  return moved.subarray(pad);
}

function record(type: number, body: Uint8Array): Uint8Array {
  const padded = (body.length + 7) & ~7;
  const b = new Uint8Array(8 + padded);
  const v = view(b);
  v.setUint32(0, type, true);
  v.setUint32(4, body.length, true);
  b.set(body, 8);
  return b;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

class Reader {
  #b: Uint8Array;
  #v: DataView;
  #at = 0;
  constructor(b: Uint8Array) {
    this.#b = b;
    this.#v = view(b);
  }
  get remaining(): number {
    return this.#b.length - this.#at;
  }
  #take(n: number, what: string): number {
    if (this.#at + n > this.#b.length) {
      throw new XenStreamError(`Cannot read save image: truncated at ${what} (offset ${this.#at})`);
    }
    const at = this.#at;
    this.#at += n;
    return at;
  }
  bytes(n: number, what: string): Uint8Array {
    const at = this.#take(n, what);
    return this.#b.subarray(at, at + n);
  }
  u16le(w: string): number {
    return this.#v.getUint16(this.#take(2, w), true);
  }
  u16be(w: string): number {
    return this.#v.getUint16(this.#take(2, w), false);
  }
  u32le(w: string): number {
    return this.#v.getUint32(this.#take(4, w), true);
  }
  u32be(w: string): number {
    return this.#v.getUint32(this.#take(4, w), false);
  }
  u64be(w: string): bigint {
    return this.#v.getBigUint64(this.#take(8, w), false);
  }
  record(what: string): { type: number; body: Uint8Array } {
    const type = this.u32le(`${what} record type`);
    const length = this.u32le(`${what} record length`);
    const body = this.bytes(length, `${what} record ${type} body`);
    this.bytes(((length + 7) & ~7) - length, `${what} record padding`);
    return { type, body };
  }
}
