/**
 * Clones on stock Xen: a save image is synthesized from the descriptor (its
 * non-page records, verbatim) and the pages fetched from the parent's memory
 * server (zero pages made locally), renamed, and streamed into `xl restore -p`
 * through a FIFO; the clone gets its identity in XenStore while still paused,
 * and runs only when the agent unpauses it. Memory therefore arrives before the
 * clone runs: stock Xen has no lazy-fault hook for PV guests.
 *
 * @module
 */
import type { XenDescriptor } from "../../descriptor/format.ts";
import { PAGE_PRESENT } from "../../descriptor/page_map.ts";
import { joinImageChunks } from "./stream.ts";
import { domid, writeAll, xl } from "./xl.ts";

export interface CloneIdentity {
  name: string;
  cloneId: number;
  /** Deterministic per fork and clone: 00:16:3e (Xen's OUI) + 3 bytes. */
  mac: string;
}

export function cloneIdentity(d: XenDescriptor, vm: string, cloneId: number): CloneIdentity {
  const f = d.forkId;
  const mac = `00:16:3e:${hex(f[0] ^ cloneId >> 8)}:${hex(f[1])}:${hex((f[2] + cloneId) & 0xff)}`;
  return { name: vm, cloneId, mac };
}

/** The parent's libxl config (JSON) with the clone's name and MACs, and no uuid (a new one). */
export function renameConfig(config: string, id: CloneIdentity): string {
  const cfg = JSON.parse(config);
  cfg.c_info ??= {};
  cfg.c_info.name = id.name;
  delete cfg.c_info.uuid;
  if (Array.isArray(cfg.nics)) {
    cfg.nics.forEach((nic: Record<string, unknown>, i: number) => {
      nic.mac = i === 0
        ? id.mac
        : `${id.mac.slice(0, -2)}${hex((parseInt(id.mac.slice(-2), 16) + i) & 0xff)}`;
    });
  }
  return JSON.stringify(cfg);
}

const ZERO_PAGE = new Uint8Array(4096);

/**
 * Builds one clone, paused. `page(pfn)` returns a PRESENT page's bytes (fetched);
 * every other page with data is installed as zeros here, never fetched.
 */
export async function restoreClone(
  d: XenDescriptor,
  page: (pfn: number) => Uint8Array,
  id: CloneIdentity,
  tmpDir: string,
): Promise<{ domid: number; ms: number }> {
  const [major, minor] = d.xen.xenVersion.split(".").map(Number);
  // Made one record at a time as the file is written: the event loop gets a turn between.
  const chunks = joinImageChunks({
    config: renameConfig(d.xen.config, id),
    libxcVersion: 3,
    xenMajor: major,
    xenMinor: minor,
    records: d.xen.records,
    types: d.xen.pageTypes,
    page: (pfn) => (d.pageMap[pfn] === PAGE_PRESENT ? page(pfn) : ZERO_PAGE),
  });
  // Staged in dom0 RAM (tmpfs) for xl, which needs a path; removed right after.
  const path = `${tmpDir}/restore-${id.name}.img`;
  const t0 = performance.now();
  try {
    await writeAll(path, chunks);
    await xl(["restore", "-p", "-e", path], 300_000);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
  const dom = await domid(id.name);
  if (dom === undefined) throw new Error(`Cannot find clone ${id.name} after xl restore`);
  return { domid: dom, ms: performance.now() - t0 };
}

function hex(n: number): string {
  return (n & 0xff).toString(16).padStart(2, "0");
}
