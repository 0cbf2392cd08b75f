/**
 * The backend seam: one implementation per VM kind (wasm, xen, kvm). An agent
 * runs VMs of one backend; every backend first says whether it can run here
 * and, when it cannot, why.
 */
import type { BackendInfo, BackendKind } from "../control/messages.ts";
import { probeXen } from "./xen/probe.ts";

import type { Availability } from "./availability.ts";

export type { Availability };

/** Probes whether a backend kind can run on this host. */
export function probeBackend(kind: BackendKind): Availability {
  switch (kind) {
    case "wasm":
      return typeof WebAssembly === "object" && typeof Worker === "function"
        ? { available: true }
        : { available: false, reason: "this runtime has no WebAssembly or Workers" };
    case "xen":
      return probeXen();
    case "kvm":
      return { available: false, reason: "the kvm backend is not implemented yet" };
  }
}

/** What an agent reports about every backend kind. */
export function probeAll(): BackendInfo[] {
  return (["wasm", "xen", "kvm"] as const).map((kind) => {
    const a = probeBackend(kind);
    return a.available ? { kind, available: true } : { kind, available: false, reason: a.reason };
  });
}
