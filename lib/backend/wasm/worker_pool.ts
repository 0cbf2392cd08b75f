/**
 * Idle VM workers, started ahead of need. Starting a Deno Worker costs tens of
 * milliseconds (loading and compiling vm_worker.ts), which would otherwise sit
 * between sf_clone and every clone running. Agents size the pool to their
 * slots; the pool only exists while someone holds it, since idle workers keep
 * the process alive.
 */

const WORKER_URL = new URL("./vm_worker.ts", import.meta.url);

/**
 * Creating a Worker blocks the creating thread (8–25 ms on a quiet host, up to
 * ~300 ms measured on a loaded one), so replacements wait until a burst of
 * clone starts is over, and start one per task.
 */
const REFILL_QUIET_MS = 250;

const idle: Worker[] = [];
let target = 0;
const holders = new Map<symbol, number>();
/** While any: no replacement starts (see {@link deferRefill}). */
const deferrals = new Set<symbol>();
let refillTimer: ReturnType<typeof setTimeout> | undefined;

function newWorker(): Worker {
  return new Worker(WORKER_URL, { type: "module" });
}

function refillSoon(delayMs: number): void {
  clearTimeout(refillTimer);
  refillTimer = undefined;
  if (idle.length >= target || deferrals.size > 0) return;
  refillTimer = setTimeout(() => {
    idle.push(newWorker());
    refillSoon(0);
  }, delayMs);
}

/** A fresh VM worker: an idle one if there is one, else a new one; replacements start later. */
export function takeWorker(): Worker {
  const worker = idle.shift() ?? newWorker();
  refillSoon(REFILL_QUIET_MS);
  return worker;
}

/**
 * Holds replacements back until the returned function is called (and every other deferral has
 * ended): the thread that would create them has more urgent work, e.g. installing the pages of
 * clones that fetch their memory on demand.
 */
export function deferRefill(): () => void {
  const key = Symbol("deferral");
  deferrals.add(key);
  clearTimeout(refillTimer);
  refillTimer = undefined;
  return () => {
    if (deferrals.delete(key) && deferrals.size === 0) refillSoon(REFILL_QUIET_MS);
  };
}

/**
 * Keeps at least `size` idle workers while held; returns the release function.
 * Several holders (agents of one process) add up their sizes.
 */
export function holdWorkerPool(size: number): () => void {
  const key = Symbol("holder");
  holders.set(key, size);
  target = [...holders.values()].reduce((a, b) => a + b, 0);
  refillSoon(0);
  return () => {
    if (!holders.delete(key)) return;
    target = [...holders.values()].reduce((a, b) => a + b, 0);
    for (const w of idle.splice(target)) w.terminate();
    if (target === 0) clearTimeout(refillTimer);
  };
}

/** How many workers wait idle (for status and tests). */
export function idleWorkers(): number {
  return idle.length;
}
