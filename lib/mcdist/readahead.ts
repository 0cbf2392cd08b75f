/**
 * Read-ahead for the server's push: the likely order of a fork's next pages, predicted from the
 * pages its clones fault on. Clones of one parent run the same code over the same data, so their
 * faults follow the parent's access pattern; a scan (stride 1 or any constant stride, forwards
 * or backwards) is recognised after two equal steps and the pages ahead of it are pushed before
 * anybody faults on them. A fault on the page just past what was pushed means the clones kept
 * going: the window doubles (as the kernel's file read-ahead does), up to `maxWindow`. Anything
 * else starts over.
 *
 * @module
 */

export interface ReadaheadOptions {
  /** Pages pushed when a stride is first recognised. */
  initialWindow: number;
  maxWindow: number;
}

/** At most 64 pages: what a scan that stops costs in pages nobody reads. */
export const DEFAULT_READAHEAD: ReadaheadOptions = { initialWindow: 8, maxWindow: 64 };

/** Predicts one fork's next pages from the pages asked for the first time, in request order. */
export class StridePredictor {
  readonly options: ReadaheadOptions;
  #pageCount: number;
  #last = -1;
  #stride = 0;
  /** Consecutive requests `#stride` apart. */
  #steps = 0;
  /** The last page predicted so far (continuing the scan means a fault just past it). */
  #ahead = -1;
  #window = 0;

  constructor(pageCount: number, options: Partial<ReadaheadOptions> = {}) {
    this.#pageCount = pageCount;
    this.options = { ...DEFAULT_READAHEAD, ...options };
  }

  /** A clone faulted on `page`; returns the pages to push next, in order (maybe none). */
  observe(page: number): number[] {
    if (this.#ahead >= 0 && page === this.#ahead + this.#stride) {
      // The clones ran through the window: push the next, larger one from here.
      this.#window = Math.min(this.options.maxWindow, this.#window * 2);
      this.#last = page;
      return this.#predictFrom(page);
    }
    const step = this.#last < 0 ? 0 : page - this.#last;
    this.#last = page;
    if (step !== 0 && step === this.#stride) {
      this.#steps++;
    } else {
      this.#stride = step;
      this.#steps = step === 0 ? 0 : 1;
      this.#ahead = -1;
    }
    if (this.#steps < 2 || this.#ahead >= 0) return [];
    this.#window = this.options.initialWindow;
    return this.#predictFrom(page);
  }

  #predictFrom(page: number): number[] {
    const pages: number[] = [];
    let next = page + this.#stride;
    while (pages.length < this.#window && next >= 0 && next < this.#pageCount) {
      pages.push(next);
      next += this.#stride;
    }
    this.#ahead = pages.length > 0 ? pages[pages.length - 1] : -1;
    return pages;
  }
}
