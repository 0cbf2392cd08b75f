/**
 * The backend seam: one implementation per VM kind (wasm, xen, kvm). An agent
 * runs VMs of one backend; every backend first says whether it can run here
 * and, when it cannot, why.
 */
import type { BackendInfo, BackendKind } from "../control/messages.ts";

export type Availability = { available: true } | { available: false; reason: string };

/** Probes whether a backend kind can run on this host. */
export function probeBackend(kind: BackendKind): Availability {
  switch (kind) {
    case "wasm":
      return typeof WebAssembly === "object" && typeof Worker === "function"
        ? { available: true }
        : { available: false, reason: "this runtime has no WebAssembly or Workers" };
    case "xen":
      return probeXenDom0();
    case "kvm":
      return { available: false, reason: "the kvm backend is not implemented yet" };
  }
}

function probeXenDom0(): Availability {
  try {
    const caps = Deno.readTextFileSync("/proc/xen/capabilities");
    return caps.includes("control_d")
      ? { available: true }
      : { available: false, reason: "running in a Xen domU, not dom0 (/proc/xen/capabilities)" };
  } catch {
    return { available: false, reason: "not a Xen dom0 (/proc/xen/capabilities is missing)" };
  }
}

/** What an agent reports about every backend kind. */
export function probeAll(): BackendInfo[] {
  return (["wasm", "xen", "kvm"] as const).map((kind) => {
    const a = probeBackend(kind);
    return a.available ? { kind, available: true } : { kind, available: false, reason: a.reason };
  });
}
