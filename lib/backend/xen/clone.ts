/**
 * Clones on stock Xen: a save image is synthesized from the descriptor (its
 * non-page records, verbatim) and the pages fetched from the parent's memory
 * server (zero pages made locally), once per fork and host, renamed per clone,
 * and restored with `xl restore -p`; the clone gets its identity in XenStore while still paused,
 * and runs only when the agent unpauses it. Memory therefore arrives before the
 * clone runs: stock Xen has no lazy-fault hook for PV guests.
 *
 * @module
 */
import type { XenDescriptor } from "../../descriptor/format.ts";
import { PAGE_PRESENT } from "../../descriptor/page_map.ts";
import { toHex } from "../wasm/fork_descriptor.ts";
import { joinImageChunks, xlHeader } from "./stream.ts";
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
 * One fork's save image on one clone host, written once and restored from for each of the
 * fork's clones here. Clones of a fork differ only in the xl header's config (name, MACs);
 * their vm ids have one length, so the header is patched in place. (Written per clone, a
 * 128 MiB image took 7–38 s under emulation; `xl restore` itself ~3 s.)
 */
export class RestoreImage {
  #d: XenDescriptor;
  #path: string;
  #headerBytes: number;

  private constructor(d: XenDescriptor, path: string, headerBytes: number) {
    this.#d = d;
    this.#path = path;
    this.#headerBytes = headerBytes;
  }

  /**
   * Writes the image for `first`. `page(pfn)` returns a PRESENT page's bytes (fetched or the
   * parent's own); every other page with data is installed as zeros here, never fetched.
   */
  static async write(
    d: XenDescriptor,
    page: (pfn: number) => Uint8Array,
    first: CloneIdentity,
    tmpDir: string,
  ): Promise<RestoreImage> {
    const [major, minor] = d.xen.xenVersion.split(".").map(Number);
    const path = `${tmpDir}/restore-${toHex(d.forkId)}.img`;
    // Staged in dom0 RAM (tmpfs) for xl, which needs a path; made one record at a time as the
    // file is written, so the event loop gets a turn between.
    const chunks = joinImageChunks({
      config: renameConfig(d.xen.config, first),
      libxcVersion: 3,
      xenMajor: major,
      xenMinor: minor,
      records: d.xen.records,
      types: d.xen.pageTypes,
      page: (pfn) => (d.pageMap[pfn] === PAGE_PRESENT ? page(pfn) : ZERO_PAGE),
    });
    try {
      await writeAll(path, chunks);
    } catch (e) {
      await Deno.remove(path).catch(() => {});
      throw e;
    }
    return new RestoreImage(d, path, xlHeader(renameConfig(d.xen.config, first)).length);
  }

  /** Builds clone `id`, paused. */
  async restore(id: CloneIdentity): Promise<{ domid: number; ms: number }> {
    const t0 = performance.now();
    const header = xlHeader(renameConfig(this.#d.xen.config, id));
    if (header.length !== this.#headerBytes) {
      throw new RangeError(
        `Cannot restore ${id.name}: its config header is ${header.length} bytes, the image's ${this.#headerBytes}`,
      );
    }
    const f = await Deno.open(this.#path, { write: true });
    try {
      let at = 0;
      while (at < header.length) at += await f.write(header.subarray(at));
    } finally {
      f.close();
    }
    await xl(["restore", "-p", "-e", this.#path], 300_000);
    const dom = await domid(id.name);
    if (dom === undefined) throw new Error(`Cannot find clone ${id.name} after xl restore`);
    return { domid: dom, ms: performance.now() - t0 };
  }

  async remove(): Promise<void> {
    await Deno.remove(this.#path).catch(() => {});
  }
}

function hex(n: number): string {
  return (n & 0xff).toString(16).padStart(2, "0");
}
