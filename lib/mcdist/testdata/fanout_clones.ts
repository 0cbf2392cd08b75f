/**
 * The client-driving half of the fan-out bench: `clones` simulated clones on one host share one
 * PageClient (as memtap does) and each walks the same working set like a faulting VM, with a few
 * faults outstanding. A page another clone (or a sibling host) already brought in is a hit.
 * Replace this module when real clones run the bench.
 *
 * @module
 */

import type { PageClient } from "../../memory/transport.ts";

export interface DriveOptions {
  clones: number;
  workingSet: number[];
  /** Faults in flight per clone. */
  outstanding: number;
  pageSize: number;
  /** Checks a page's bytes the first time it arrives. */
  check: (page: number, bytes: Uint8Array) => boolean;
}

export interface DriveResult {
  ms: number;
  /** Faults that had to wait for the network, over all clones. */
  faults: number;
  /** Pages that arrived with wrong contents. */
  bad: number;
  /** Pages that arrived unasked (a sibling's request or a push). */
  unasked: number;
}

export async function driveClones(client: PageClient, opts: DriveOptions): Promise<DriveResult> {
  const present = new Set<number>();
  const asked = new Set<number>();
  const waiters = new Map<number, (() => void)[]>();
  let bad = 0;
  let unasked = 0;
  let faults = 0;
  client.onPages((first, bytes) => {
    for (let i = 0; i * opts.pageSize < bytes.length; i++) {
      const page = first + i;
      if (present.has(page)) continue;
      const pageBytes = bytes.subarray(i * opts.pageSize, (i + 1) * opts.pageSize);
      if (!opts.check(page, pageBytes)) bad++;
      if (!asked.has(page)) unasked++;
      present.add(page);
      for (const wake of waiters.get(page) ?? []) wake();
      waiters.delete(page);
    }
  });
  const touch = (page: number): Promise<void> | undefined => {
    if (present.has(page)) return undefined;
    faults++;
    const waiting = new Promise<void>((resolve) => {
      const list = waiters.get(page) ?? [];
      list.push(resolve);
      waiters.set(page, list);
    });
    asked.add(page);
    client.request([page]);
    return waiting;
  };
  const clone = async (): Promise<void> => {
    let next = 0;
    const worker = async () => {
      while (next < opts.workingSet.length) await touch(opts.workingSet[next++]);
    };
    await Promise.all(Array.from({ length: opts.outstanding }, worker));
  };
  const start = performance.now();
  await Promise.race([
    Promise.all(Array.from({ length: opts.clones }, clone)),
    client.failed.then((error) => Promise.reject(error)),
  ]);
  return { ms: performance.now() - start, faults, bad, unasked };
}
