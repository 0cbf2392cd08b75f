/**
 * Can the xen backend run here, and if not, why. Also what this hypervisor
 * offers for lazy memory: Debian's Xen 4.17 compiles out MEM_PAGING,
 * MEM_SHARING and SHADOW_PAGING, so clones get their memory before they run.
 *
 * @module
 */
import type { Availability } from "../availability.ts";
import { LIBXENCTRL } from "../../../native/xen/xenctrl.ts";
import { LIBXENSTORE } from "../../../native/xen/xenstore.ts";
import { LIBXENFOREIGNMEMORY } from "../../../native/xen/foreignmemory.ts";
import { XL } from "./xl.ts";

export function probeXen(
  read: (path: string) => string = (p) => Deno.readTextFileSync(p),
  canOpen: (lib: string) => boolean = tryDlopen,
  exists: (path: string) => boolean = fileExists,
): Availability {
  let caps: string;
  try {
    caps = read("/proc/xen/capabilities");
  } catch {
    return {
      available: false,
      reason: "not a Xen dom0: /proc/xen/capabilities is missing (no Xen, or xenfs not mounted)",
    };
  }
  if (!caps.includes("control_d")) {
    return {
      available: false,
      reason: "a Xen domU, not dom0 (/proc/xen/capabilities lacks control_d)",
    };
  }
  for (const lib of [LIBXENCTRL, LIBXENFOREIGNMEMORY, LIBXENSTORE]) {
    if (!canOpen(lib)) {
      return { available: false, reason: `dom0 without ${lib} (install Debian's xen-utils-4.17)` };
    }
  }
  if (!exists(XL)) return { available: false, reason: `dom0 without ${XL} (xen-utils-4.17)` };
  return { available: true };
}

/** What the hypervisor offers for memory: reported in status. */
export interface XenMemoryCaps {
  /** Lazy faults for PV clones (mem_paging): absent on Debian's build. */
  paging: boolean;
  /** PV log-dirty (needs SHADOW_PAGING): absent on Debian's build. */
  logDirty: boolean;
  mode: "eager" | "lazy";
  evidence: string;
}

/** Reads `xl info`'s virt_caps: "shadow" there means PV log-dirty is built in. */
export function memoryCapsFromXlInfo(xlInfo: string): XenMemoryCaps {
  const caps = /^virt_caps\s*:\s*(.*)$/m.exec(xlInfo)?.[1]?.trim() ?? "";
  const shadow = /\bshadow\b/.test(caps);
  // No capability bit names mem_paging; its domctl answers EOPNOTSUPP when compiled out,
  // and no Debian build has it: stay eager unless a build says otherwise.
  return {
    paging: false,
    logDirty: shadow,
    mode: "eager",
    evidence: `virt_caps: ${caps || "(none)"}`,
  };
}

function tryDlopen(lib: string): boolean {
  try {
    Deno.dlopen(lib, {}).close();
    return true;
  } catch {
    return false;
  }
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
