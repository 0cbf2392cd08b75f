/**
 * The resource allocator seam: the master asks it how many clone slots a ticket
 * gets and where. Grants are asynchronous (a batch scheduler may take a while or
 * grant fewer than asked) and granted slots may be reclaimed later (a drained
 * node, an EGO reclaim): the master then fails the clones placed there.
 */
import type { Placement } from "../control/messages.ts";

/** A host the allocator may place slots on, as the master sees it now. */
export interface HostSlots {
  name: string;
  /** The host's name in the resource manager (e.g. its Slurm node), when the agent gave one. */
  schedulerNode?: string;
  /** Total clone slots the host offers. */
  slots: number;
  /** Slots held by live tickets on this host. */
  inUse: number;
}

/** What the master currently knows about its hosts; allocators read it, never write it. */
export interface ClusterView {
  upHosts(): HostSlots[];
}

export interface SlotRequest {
  ticket: string;
  slots: number;
  /** How long the allocator may wait for resources before granting what it has. */
  timeoutMs: number;
}

export interface Grant {
  placements: Placement[];
  /** The allocator's own id for this grant (a Slurm job id, an EGO allocation id). */
  source?: string;
}

export interface Reclaim {
  ticket: string;
  hosts: string[];
  reason: string;
}

export interface Allocator {
  readonly name: string;
  /** Grants m ≤ slots placed slots; m = 0 when nothing is available (never throws for that). */
  request(request: SlotRequest, view: ClusterView): Promise<Grant>;
  /** Returns a ticket's slots; idempotent. */
  release(ticket: string): Promise<void>;
  /** Registers the listener told when granted slots are taken back. */
  onReclaim(listener: (reclaim: Reclaim) => void): void;
  close(): Promise<void>;
}

export class AllocatorError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AllocatorError";
  }
}

/** Total slots in a list of placements. */
export function grantedSlots(placements: Placement[]): number {
  return placements.reduce((n, p) => n + p.slots, 0);
}
