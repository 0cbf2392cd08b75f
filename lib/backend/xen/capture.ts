/**
 * Descriptor capture of a running PV guest on stock Xen.
 *
 * Stock Xen 4.17 as Debian builds it has no log-dirty for PV (no SHADOW_PAGING)
 * and no MEM_SHARING, so nothing can protect a running parent's pages
 * copy-on-write: the parent stays paused exactly while its memory is copied into
 * this agent (the fork's snapshot), then runs on. The cooperative suspend, the PV
 * page-table normalization (mfn → pfn) and the cancelled-suspend resume are
 * libxl's/libxc's: `xl save -p` writes the save stream into dom0 RAM and leaves the
 * guest resumed but paused, its memory exactly as at the suspend. This module keeps
 * the stream's non-page records for the descriptor and its normalized page tables,
 * copies every other page straight from the paused guest through foreign mappings
 * (libxenforeignmemory, pfn → mfn from the guest's own p2m), unpauses the guest, and
 * marks zero pages so they are never sent.
 *
 * @module
 */
import { PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "../../descriptor/page_map.ts";
import type { XenBody } from "../../descriptor/xen_body.ts";
import type { ForeignMemory } from "../../../native/xen/foreignmemory.ts";
import {
  drainAsync,
  outlineSaveFile,
  PFTYPE,
  readImageFile,
  type SplitImage,
  splitImageAsync,
  type StreamOutline,
  typeHasData,
} from "./stream.ts";
import { xl } from "./xl.ts";

export interface CapturedGuest {
  image: SplitImage;
  /**
   * Every page the clones get, page p at p × 4096, in shared memory (the memory server's
   * threads serve it as it is): ordinary pages from the guest, page tables from the stream.
   */
  memory: Uint8Array<SharedArrayBuffer>;
  /** One PageMark per pfn: PRESENT (sent), ZERO (all-zero: installed locally), UNTOUCHED (no frame). */
  pageMap: Uint8Array;
  body: XenBody;
  /** The guest was paused for at most this long (`xl save -p` and the copy). */
  pauseMs: number;
  /** Where the capture's time went (save and copy: paused; read and describe: running). */
  phases?: { saveMs: number; copyMs: number; readMs: number; describeMs: number };
  counts: {
    present: number;
    zero: number;
    absent: number;
    /** Pages read from the paused guest through foreign mappings (the rest: page tables). */
    foreign: number;
    /** Of those, pages whose contents differ from the save stream's copy (should be 0). */
    foreignMismatches: number;
  };
}

/** What capture needs of the hypervisor: the domain's id, a mapper, and unpause. */
export interface CaptureXen {
  domid: number;
  foreign: Pick<ForeignMemory, "copyFrames">;
  unpause(domid: number): void;
}

/** Frames mapped per foreignmemory call: 4 MiB, few hypercalls, a bounded mapping. */
const MAP_BATCH = 1024;

/** Suspends `domain`, copies its memory and state, resumes it. */
export async function captureGuest(
  domain: string,
  xen: CaptureXen,
  o: {
    tmpDir: string;
    xenstore: [string, string][];
    vcpus?: number;
    /** Where the pages go, page p at p × 4096: made ahead so its memory is in place. */
    store?: Uint8Array<SharedArrayBuffer>;
  },
): Promise<CapturedGuest> {
  // xl needs a path: the stream is staged in dom0 RAM (tmpfs). (A FIFO read by Deno in 64 KiB
  // pipe-sized pieces kept the guest suspended ~15× longer under emulation.)
  const path = `${o.tmpDir}/save-${domain}-${crypto.randomUUID().slice(0, 8)}.img`;
  const t0 = performance.now();
  let paused = false;
  try {
    await xl(["save", "-p", domain, path], 300_000);
    paused = true;
    const t1 = performance.now();
    // While the guest waits: only the stream's outline (types, p2m), then its memory.
    const outline = await outlineSaveFile(path);
    const bytes = outline.types.length * 4096;
    const memory = o.store !== undefined && o.store.length >= bytes
      ? o.store.subarray(0, bytes)
      : new Uint8Array(new SharedArrayBuffer(bytes));
    const foreign = readForeign(outline, xen, memory);
    xen.unpause(xen.domid);
    paused = false;
    const t2 = performance.now();
    const saved = await readImageFile(path);
    await Deno.remove(path).catch(() => {});
    // Split in slices: done in one go this held the agent's event loop for ~5 s under
    // emulation and ~80 s on a loaded machine, and the master dropped it.
    const image = await splitImageAsync(saved);
    const stream = image.pages;
    image.pages = withPageTables(foreign, image, memory);
    const t3 = performance.now();
    const described = await drainAsync(describeSteps(image, o.xenstore, o.vcpus ?? 1));
    described.counts.foreignMismatches = countMismatches(image.pages, stream, image.types);
    const t4 = performance.now();
    return {
      ...described,
      memory,
      pauseMs: t2 - t0,
      phases: { saveMs: t1 - t0, copyMs: t2 - t1, readMs: t3 - t2, describeMs: t4 - t3 },
    };
  } finally {
    if (paused) xen.unpause(xen.domid);
    await Deno.remove(path).catch(() => {});
  }
}

/**
 * The guest's ordinary pages, read from the paused guest through foreign mappings into `into`
 * (page p at p × 4096), and a view of each.
 */
export function readForeign(
  outline: StreamOutline,
  xen: Pick<CaptureXen, "domid" | "foreign">,
  into: Uint8Array,
): Map<number, Uint8Array> {
  if (into.length < outline.types.length * 4096) {
    throw new RangeError(`Cannot copy ${outline.types.length} pages into ${into.length} bytes`);
  }
  const pfns: number[] = [];
  outline.types.forEach((type, pfn) => type === PFTYPE.NOTAB && pfns.push(pfn));
  const pages = new Map<number, Uint8Array>();
  for (let i = 0; i < pfns.length; i += MAP_BATCH) {
    const batch = pfns.slice(i, i + MAP_BATCH);
    const frames = batch.map((pfn) => {
      if (pfn >= outline.p2m.length) throw new RangeError(`Cannot map pfn ${pfn}: beyond the p2m`);
      return outline.p2m[pfn];
    });
    xen.foreign.copyFrames(xen.domid, frames, (j) => {
      const page = into.subarray(batch[j] * 4096, (batch[j] + 1) * 4096);
      pages.set(batch[j], page);
      return page;
    });
  }
  return pages;
}

/**
 * Every page the clones get: `foreign`, plus the page tables as the stream carries them
 * (normalized to pfns, which the restorer needs; the guest's own hold machine frames), written
 * into `memory` at their places.
 */
export function withPageTables(
  foreign: Map<number, Uint8Array>,
  image: SplitImage,
  memory: Uint8Array,
): Map<number, Uint8Array> {
  for (const [pfn, page] of image.pages) {
    if (image.types[pfn] === PFTYPE.NOTAB) continue;
    const at = memory.subarray(pfn * 4096, (pfn + 1) * 4096);
    at.set(page);
    foreign.set(pfn, at);
  }
  return foreign;
}

/** Ordinary pages whose foreign-mapped contents differ from the stream's: a broken p2m. */
export function countMismatches(
  foreign: Map<number, Uint8Array>,
  stream: Map<number, Uint8Array>,
  types: Uint8Array,
): number {
  let n = 0;
  for (const [pfn, page] of stream) {
    if (types[pfn] !== PFTYPE.NOTAB) continue;
    const mine = foreign.get(pfn);
    // Zero pages were dropped from `foreign` by describe: the stream's must be zero too.
    if (mine === undefined ? !isZero(page) : !sameBytes(mine, page)) n++;
  }
  return n;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const aligned = ((a.byteOffset | b.byteOffset) & 3) === 0;
  const [x, y] = aligned ? [words(a), words(b)] : [a, b];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** 32-bit words where aligned: per-byte loops over 100 MiB are seconds under TCG. */
function words(page: Uint8Array): ArrayLike<number> {
  return page.byteOffset & 3
    ? page
    : new Int32Array(page.buffer, page.byteOffset, page.byteLength >> 2);
}

/** The descriptor body and page map of a split save image. */
export function describe(
  image: SplitImage,
  xenstore: [string, string][],
  vcpus: number,
): Omit<CapturedGuest, "pauseMs" | "memory"> {
  const steps = describeSteps(image, xenstore, vcpus);
  for (;;) {
    const n = steps.next();
    if (n.done) return n.value;
  }
}

/** describe's work, 1024 pfns per step. */
function* describeSteps(
  image: SplitImage,
  xenstore: [string, string][],
  vcpus: number,
): Generator<void, Omit<CapturedGuest, "pauseMs" | "memory">> {
  const pageMap = new Uint8Array(image.pfnCount);
  const counts = { present: 0, zero: 0, absent: 0, foreign: 0, foreignMismatches: 0 };
  for (let pfn = 0; pfn < image.pfnCount; pfn++) {
    const type = image.types[pfn];
    if (type === PFTYPE.XTAB || !typeHasData(type)) {
      pageMap[pfn] = PAGE_UNTOUCHED;
      counts.absent++;
    } else if (isZero(image.pages.get(pfn)!)) {
      pageMap[pfn] = PAGE_ZERO;
      counts.zero++;
      image.pages.delete(pfn);
    } else {
      pageMap[pfn] = PAGE_PRESENT;
      counts.present++;
    }
    if (type === PFTYPE.NOTAB) counts.foreign++;
    if ((pfn & 1023) === 1023) yield;
  }
  let maxMemoryBytes = BigInt(image.pfnCount) * 4096n;
  try {
    const cfg = JSON.parse(image.config);
    const kb = cfg?.b_info?.max_memkb;
    if (typeof kb === "number") maxMemoryBytes = BigInt(kb) * 1024n;
    if (typeof cfg?.b_info?.max_vcpus === "number") vcpus = cfg.b_info.max_vcpus;
  } catch { /* legacy config text: keep the p2m size */ }
  const body: XenBody = {
    guestWidth: 8,
    ptLevels: 4,
    vcpus,
    maxMemoryBytes,
    xenVersion: `${image.xenMajor}.${image.xenMinor}`,
    pageTypes: image.types,
    records: image.records.map((r) => ({ stream: r.stream, type: r.type, body: r.body.slice() })),
    config: image.config,
    xenstore: [...xenstore].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)),
  };
  return { image, pageMap, body, counts };
}

function isZero(page: Uint8Array): boolean {
  // 32-bit words, not BigUint64: BigInt reads allocate and are ~50x slower (fatal under TCG).
  // (Pages are views into the save image, not always 4-byte aligned: then bytes.)
  const w = words(page);
  let any = 0;
  for (let i = 0; i < w.length; i++) any |= w[i];
  return any === 0;
}
