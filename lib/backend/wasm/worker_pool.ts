/**
 * Idle VM workers (lib/threads/spare_workers.ts): a clone starts on one that already loaded and
 * compiled vm_worker.ts, often one whose last guest ended (its code is compiled already, and the
 * pool needs no new worker afterwards). Agents size the pool to their slots.
 *
 * @module
 */

import { deferRefills, SpareWorkers } from "../../threads/spare_workers.ts";

const vmWorkers = new SpareWorkers(new URL("./vm_worker.ts", import.meta.url));

/** A fresh VM worker: an idle one if there is one, else a new one; replacements start later. */
export function takeWorker(): Worker {
  return vmWorkers.take();
}

/**
 * Takes back a worker whose guest returned (it waits for the next one, with its script loaded
 * and its code compiled); ends it if the pool is full.
 */
export function giveWorker(worker: Worker): void {
  vmWorkers.give(worker);
}

/**
 * Keeps at least `size` idle VM workers while held; returns the release function. Several
 * holders (agents of one process) add up their sizes.
 */
export function holdWorkerPool(size: number): () => void {
  return vmWorkers.hold(size);
}

/** How many VM workers wait idle (for status and tests). */
export function idleWorkers(): number {
  return vmWorkers.idle;
}

export { deferRefills as deferRefill };
