import { checkString, checkU32 } from "./checks.ts";
import type { ByteReader, ByteWriter } from "./cursor.ts";
import { fail, type Op } from "./errors.ts";

/** Xen PV guests use 4 KiB frames. */
export const XEN_PAGE_BYTES = 4096;
/** A page map may claim at most 64 GiB of guest memory (bounds allocation while decoding). */
export const XEN_MAX_PAGES = 16 * 1024 * 1024;
/** Non-page records travel on the control plane: 4 MiB of them at most. */
export const XEN_MAX_RECORD_BYTES = 4 << 20;
/** XenStore entries copied from the parent: at most this many. */
export const XEN_MAX_XENSTORE_ENTRIES = 4096;

/**
 * One record of a save stream other than page data, kept verbatim. `stream` says which
 * layer it came from (Xen's docs/specs): 1 = libxc migration stream v2/v3
 * (libxc-migration-stream.pandoc: X86_PV_INFO, X86_PV_P2M_FRAMES, SHARED_INFO,
 * X86_TSC_INFO, X86_PV_VCPU_BASIC/EXTENDED/XSAVE/MSRS, X86_CPUID_POLICY, X86_MSR_POLICY,
 * STATIC_DATA_END…), 2 = libxl stream (libxl-migration-stream.pandoc: EMULATOR_XENSTORE_DATA…).
 */
export interface XenRecord {
  stream: 1 | 2;
  /** The record type code of that stream (never PAGE_DATA or END: those are synthesized). */
  type: number;
  body: Uint8Array;
}

/** What a Xen PV clone needs besides its memory. */
export interface XenBody {
  /** Bytes per guest word: 8 (x86_64 PV). */
  guestWidth: number;
  /** Page-table levels: 4. */
  ptLevels: number;
  /** Online vCPUs of the parent. */
  vcpus: number;
  /** The domain's memory target (max_pages × 4 KiB), u64. */
  maxMemoryBytes: bigint;
  /** Xen version the parent ran on, "4.17". A clone host with another major/minor refuses. */
  xenVersion: string;
  /**
   * One byte per page of the common page map: the libxc page type of that pfn
   * (XEN_DOMCTL_PFINFO_* >> 28: 0 NOTAB, 1-4 L1TAB-L4TAB, 9 L1TAB|LPINTAB… 0xd XALLOC, 0xe
   * BROKEN, 0xf XTAB). Page tables travel with pfns, not mfns: the stream's normalized form.
   */
  pageTypes: Uint8Array;
  /** The save stream's non-page records, in stream order. */
  records: XenRecord[];
  /** The libxl domain configuration (JSON) the parent was built from; clones rename it. */
  config: string;
  /** XenStore entries of the parent's home (relative path → value), sorted by path. */
  xenstore: [string, string][];
}

const MIN_RECORD_BYTES = 1 + 4 + 4;
const MIN_ENTRY_BYTES = 8;

export function writeXenBody(w: ByteWriter, b: XenBody): void {
  w.u32(b.guestWidth);
  w.u32(b.ptLevels);
  w.u32(b.vcpus);
  w.u64(b.maxMemoryBytes);
  w.string(b.xenVersion);
  w.u32(b.pageTypes.length);
  w.raw(b.pageTypes);
  w.u32(b.records.length);
  for (const r of b.records) {
    w.u8(r.stream);
    w.u32(r.type);
    w.u32(r.body.length);
    w.raw(r.body);
  }
  w.string(b.config);
  w.u32(b.xenstore.length);
  for (const [k, v] of b.xenstore) {
    w.string(k);
    w.string(v);
  }
}

export function readXenBody(r: ByteReader): XenBody {
  const guestWidth = r.u32("guest width");
  const ptLevels = r.u32("page-table levels");
  const vcpus = r.u32("vCPU count");
  const maxMemoryBytes = r.u64("max memory");
  const xenVersion = r.string("Xen version");
  const typeCount = r.count("page type", 1);
  if (typeCount > XEN_MAX_PAGES) fail("decode", `${typeCount} page types exceed ${XEN_MAX_PAGES}`);
  const pageTypes = r.bytes(typeCount, "page types");
  const recordCount = r.count("record", MIN_RECORD_BYTES);
  const records: XenRecord[] = [];
  let recordBytes = 0;
  for (let i = 0; i < recordCount; i++) {
    const stream = r.u8(`record ${i} stream`);
    const type = r.u32(`record ${i} type`);
    const length = r.u32(`record ${i} length`);
    recordBytes += length;
    if (recordBytes > XEN_MAX_RECORD_BYTES) {
      fail("decode", `records exceed ${XEN_MAX_RECORD_BYTES} bytes at record ${i}`);
    }
    const body = r.bytes(length, `record ${i} body`);
    records.push({ stream: stream as 1 | 2, type, body });
  }
  const config = r.string("domain config");
  const entryCount = r.count("XenStore entry", MIN_ENTRY_BYTES);
  if (entryCount > XEN_MAX_XENSTORE_ENTRIES) {
    fail("decode", `${entryCount} XenStore entries exceed ${XEN_MAX_XENSTORE_ENTRIES}`);
  }
  const xenstore: [string, string][] = [];
  for (let i = 0; i < entryCount; i++) {
    xenstore.push([r.string(`XenStore entry ${i} path`), r.string(`XenStore entry ${i} value`)]);
  }
  return {
    guestWidth,
    ptLevels,
    vcpus,
    maxMemoryBytes,
    xenVersion,
    pageTypes,
    records,
    config,
    xenstore,
  };
}

/** `pageCount` is the common page map's length: one page type per page. */
export function checkXenBody(op: Op, b: XenBody, pageCount: number): void {
  if (b.guestWidth !== 8) fail(op, `guest width ${b.guestWidth} is not 8 (x86_64 PV)`);
  if (b.ptLevels !== 4) fail(op, `page-table levels ${b.ptLevels} is not 4`);
  checkU32(op, b.vcpus, "vCPU count");
  if (b.vcpus === 0) fail(op, "vCPU count is 0");
  if (
    typeof b.maxMemoryBytes !== "bigint" || b.maxMemoryBytes < 0n || b.maxMemoryBytes >= 2n ** 64n
  ) {
    fail(op, `max memory ${String(b.maxMemoryBytes)} is not a u64`);
  }
  checkString(op, b.xenVersion, "Xen version", { nonEmpty: true });
  if (!/^\d+\.\d+$/.test(b.xenVersion)) fail(op, `Xen version "${b.xenVersion}" is not "M.m"`);
  if (!(b.pageTypes instanceof Uint8Array) || b.pageTypes.length !== pageCount) {
    fail(op, `page types cover ${b.pageTypes?.length} pages, the page map ${pageCount}`);
  }
  const badType = b.pageTypes.findIndex((t) => t > 0xf);
  if (badType >= 0) {
    fail(op, `page ${badType} has type 0x${b.pageTypes[badType].toString(16)} > 0xf`);
  }
  if (!Array.isArray(b.records)) fail(op, "records is not a list");
  let total = 0;
  b.records.forEach((r, i) => {
    if (r.stream !== 1 && r.stream !== 2) fail(op, `record ${i} stream ${r.stream} is not 1 or 2`);
    checkU32(op, r.type, `record ${i} type`);
    // PAGE_DATA (libxc 1) and END (0 in both) are never kept: the clone host writes them.
    if (r.type === 0 || (r.stream === 1 && r.type === 1)) {
      fail(op, `record ${i} has type ${r.type}, which is synthesized, not stored`);
    }
    if (!(r.body instanceof Uint8Array)) fail(op, `record ${i} body is not a Uint8Array`);
    total += r.body.length;
  });
  if (total > XEN_MAX_RECORD_BYTES) fail(op, `records exceed ${XEN_MAX_RECORD_BYTES} bytes`);
  checkString(op, b.config, "domain config");
  if (!Array.isArray(b.xenstore)) fail(op, "XenStore entries is not a list");
  if (b.xenstore.length > XEN_MAX_XENSTORE_ENTRIES) {
    fail(op, `${b.xenstore.length} XenStore entries exceed ${XEN_MAX_XENSTORE_ENTRIES}`);
  }
  let previous = "";
  b.xenstore.forEach((entry, i) => {
    if (!Array.isArray(entry) || entry.length !== 2) fail(op, `XenStore entry ${i} is not a pair`);
    checkString(op, entry[0], `XenStore entry ${i} path`, { nonEmpty: true, noNul: true });
    checkString(op, entry[1], `XenStore entry ${i} value`);
    if (i > 0 && entry[0] <= previous) {
      fail(op, `XenStore entry ${i} path "${entry[0]}" is not after "${previous}"`);
    }
    previous = entry[0];
  });
}
