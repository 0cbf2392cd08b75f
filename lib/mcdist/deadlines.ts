/**
 * Pages by the time they are due again, earliest first: a binary min-heap. The client's timer
 * takes only the pages that are due, where it used to walk every page it waits for on each 5 ms
 * tick (a memtap completing a 1 GiB memory waits for 262,144 at once).
 *
 * A page rescheduled is pushed again, and its older entry left in place; an entry is stale once
 * its time is no longer the page's: the caller tells, and skips it, when it comes due.
 *
 * @module
 */

export class DeadlineQueue {
  #at: number[] = [];
  #pages: number[] = [];

  /** Entries queued, stale ones included. */
  get size(): number {
    return this.#at.length;
  }

  /** Queues `page` for time `at`. */
  push(page: number, at: number): void {
    let i = this.#at.length;
    this.#at.push(at);
    this.#pages.push(page);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.#at[parent] <= at) break;
      this.#move(parent, i);
      i = parent;
    }
    this.#at[i] = at;
    this.#pages[i] = page;
  }

  /** Removes every entry due at `now` and calls `due(page, at)` for each, earliest first. */
  popDue(now: number, due: (page: number, at: number) => void): void {
    while (this.#at.length > 0 && this.#at[0] <= now) {
      const [page, at] = [this.#pages[0], this.#at[0]];
      this.#removeFirst();
      due(page, at);
    }
  }

  clear(): void {
    this.#at = [];
    this.#pages = [];
  }

  #removeFirst(): void {
    const at = this.#at.pop()!;
    const page = this.#pages.pop()!;
    const n = this.#at.length;
    if (n === 0) return;
    let i = 0;
    while (true) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.#at[child + 1] < this.#at[child]) child++;
      if (this.#at[child] >= at) break;
      this.#move(child, i);
      i = child;
    }
    this.#at[i] = at;
    this.#pages[i] = page;
  }

  #move(from: number, to: number): void {
    this.#at[to] = this.#at[from];
    this.#pages[to] = this.#pages[from];
  }
}
