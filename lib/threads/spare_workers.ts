/**
 * Idle Workers of one script, started ahead of need. Creating a Deno Worker blocks the creating
 * thread (8–25 ms on a quiet host, up to ~300 ms measured on a loaded one) and then loads its
 * script, which would otherwise sit between sf_clone and every clone running. Holders size a
 * pool (their sizes add up); it only exists while held, since idle workers keep the process
 * alive. Replacements wait until a burst of takes is over, start one per task, and wait
 * altogether while any refill is deferred: the thread that would create them has more urgent
 * work, such as installing the pages of clones that fetch memory on demand.
 *
 * @module
 */

const REFILL_QUIET_MS = 250;

/** While any: no pool starts a replacement (see {@link deferRefills}). */
const deferrals = new Set<symbol>();
const pools = new Set<SpareWorkers>();

/**
 * Holds replacements back in every pool until the returned function is called (and every other
 * deferral has ended).
 */
export function deferRefills(): () => void {
  const key = Symbol("deferral");
  deferrals.add(key);
  for (const pool of pools) pool.refillSoon(Infinity);
  return () => {
    if (!deferrals.delete(key) || deferrals.size > 0) return;
    for (const pool of pools) pool.refillSoon(REFILL_QUIET_MS);
  };
}

/** A pool of idle Workers running one module. */
export class SpareWorkers {
  #url: URL;
  #idle: Worker[] = [];
  #holders = new Map<symbol, number>();
  #target = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(url: URL) {
    this.#url = url;
  }

  /** Idle workers now (for status and tests). */
  get idle(): number {
    return this.#idle.length;
  }

  /** A fresh worker: an idle one if there is one, else a new one; a replacement starts later. */
  take(): Worker {
    const worker = this.#idle.shift() ?? this.#create();
    this.refillSoon(REFILL_QUIET_MS);
    return worker;
  }

  /**
   * Takes back a worker that finished its task and is ready for another (it kept its loaded
   * script and compiled code); ends it if the pool is full.
   */
  give(worker: Worker): void {
    // Its last owner's handlers go: the next owner sets its own.
    worker.onmessage = null;
    worker.onerror = null;
    if (this.#idle.length < this.#target) this.#idle.push(worker);
    else worker.terminate();
  }

  /** Keeps at least `size` idle workers while held; returns the release function. */
  hold(size: number): () => void {
    const key = Symbol("holder");
    this.#holders.set(key, size);
    this.#retarget();
    this.refillSoon(0);
    return () => {
      if (!this.#holders.delete(key)) return;
      this.#retarget();
      for (const w of this.#idle.splice(this.#target)) w.terminate();
      if (this.#target === 0) this.refillSoon(Infinity);
    };
  }

  /** Starts the next replacement after `delayMs` (Infinity: none for now). */
  refillSoon(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#short() || delayMs === Infinity) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // Taken workers may have come back meanwhile: one more would only be ended at the next
      // give (it was, once a fork, on every clone host).
      if (!this.#short()) return;
      this.#idle.push(this.#create());
      this.refillSoon(0);
    }, delayMs);
  }

  /** Whether a replacement may start: fewer idle workers than held, and no deferral. */
  #short(): boolean {
    return this.#idle.length < this.#target && deferrals.size === 0;
  }

  #retarget(): void {
    this.#target = [...this.#holders.values()].reduce((a, b) => a + b, 0);
    if (this.#target > 0) pools.add(this);
    else pools.delete(this);
  }

  #create(): Worker {
    return new Worker(this.#url, { type: "module" });
  }
}
