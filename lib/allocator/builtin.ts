/**
 * The builtin allocator: slots are what each agent offers (its cores unless
 * `--slots`), placed capacity-aware and spread across hosts one slot at a time,
 * so a ticket for 4 on 4 idle hosts gets one clone per host.
 */
import type { Placement } from "../control/messages.ts";
import type { Allocator, ClusterView, Grant, Reclaim, SlotRequest } from "./allocator.ts";

export class BuiltinAllocator implements Allocator {
  readonly name = "builtin";

  request(request: SlotRequest, view: ClusterView): Promise<Grant> {
    const free = new Map<string, number>();
    for (const h of view.upHosts()) free.set(h.name, Math.max(0, h.slots - h.inUse));
    return Promise.resolve({ placements: spread(request.slots, free) });
  }

  release(_ticket: string): Promise<void> {
    // Slots are derived from the master's live tickets, so there is nothing to return.
    return Promise.resolve();
  }

  onReclaim(_listener: (reclaim: Reclaim) => void): void {
    // The builtin allocator never takes slots back; host failures are the master's to report.
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Places up to `want` slots round-robin over hosts with free capacity, most free
 * first (ties by name, so placement is deterministic).
 */
export function spread(want: number, free: Map<string, number>): Placement[] {
  const left = new Map(free);
  const taken = new Map<string, number>();
  let placed = 0;
  while (placed < want) {
    const order = [...left.entries()].filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    if (order.length === 0) break;
    for (const [host] of order) {
      if (placed === want) break;
      left.set(host, left.get(host)! - 1);
      taken.set(host, (taken.get(host) ?? 0) + 1);
      placed++;
    }
  }
  return [...taken.entries()].sort((a, b) => a[0].localeCompare(b[0]))
    .map(([host, slots]) => ({ host, slots }));
}
