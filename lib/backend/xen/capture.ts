/**
 * Descriptor capture of a running PV guest on stock Xen.
 *
 * Stock Xen 4.17 as Debian builds it has no log-dirty for PV (no SHADOW_PAGING)
 * and no MEM_SHARING, so nothing can protect a running parent's pages
 * copy-on-write: the parent stays suspended exactly while its memory is copied
 * into this agent (the fork's snapshot), then runs on. The suspend, the PV
 * page-table normalization (mfn → pfn) and the resume are libxl's/libxc's
 * (`xl save -c` into dom0 RAM); this module keeps the
 * stream's non-page records for the descriptor and the pages for the memory
 * server, and marks zero pages so they are never sent.
 *
 * @module
 */
import { PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "../../descriptor/page_map.ts";
import type { XenBody } from "../../descriptor/xen_body.ts";
import {
  drainAsync,
  PFTYPE,
  readImageFile,
  type SplitImage,
  splitImageAsync,
  typeHasData,
} from "./stream.ts";
import { xl } from "./xl.ts";

export interface CapturedGuest {
  image: SplitImage;
  /** One PageMark per pfn: PRESENT (sent), ZERO (all-zero: installed locally), UNTOUCHED (no frame). */
  pageMap: Uint8Array;
  body: XenBody;
  /** The guest was suspended for at most this long (the whole `xl save -c`). */
  pauseMs: number;
  /** Where the capture's time went: reading the staged image back, splitting and scanning it. */
  phases?: { saveMs: number; readMs: number; describeMs: number };
  counts: { present: number; zero: number; absent: number };
}

/** Suspends `domain`, copies its memory and state, resumes it. */
export async function captureGuest(
  domain: string,
  o: { tmpDir: string; xenstore: [string, string][]; vcpus?: number },
): Promise<CapturedGuest> {
  // xl needs a path: the image is staged in dom0 RAM (tmpfs), read back once the guest runs
  // again. (A FIFO read by Deno in 64 KiB pipe-sized pieces kept the guest suspended ~15×
  // longer under emulation.)
  const path = `${o.tmpDir}/save-${domain}-${crypto.randomUUID().slice(0, 8)}.img`;
  try {
    const t0 = performance.now();
    await xl(["save", "-c", domain, path], 300_000);
    const pauseMs = performance.now() - t0;
    // Read, split and scanned in slices: done in one go this held the agent's event loop
    // for ~5 s under emulation and ~80 s on a loaded machine, and the master dropped it.
    const bytes = await readImageFile(path);
    const t1 = performance.now();
    const image = await splitImageAsync(bytes);
    const described = await drainAsync(describeSteps(image, o.xenstore, o.vcpus ?? 1));
    const t2 = performance.now();
    return {
      ...described,
      pauseMs,
      phases: { saveMs: pauseMs, readMs: t1 - t0 - pauseMs, describeMs: t2 - t1 },
    };
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** The descriptor body and page map of a split save image. */
export function describe(
  image: SplitImage,
  xenstore: [string, string][],
  vcpus: number,
): Omit<CapturedGuest, "pauseMs"> {
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
): Generator<void, Omit<CapturedGuest, "pauseMs">> {
  const pageMap = new Uint8Array(image.pfnCount);
  const counts = { present: 0, zero: 0, absent: 0 };
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
  const words = page.byteOffset & 3
    ? page
    : new Int32Array(page.buffer, page.byteOffset, page.byteLength >> 2);
  let any = 0;
  for (let i = 0; i < words.length; i++) any |= words[i];
  return any === 0;
}
