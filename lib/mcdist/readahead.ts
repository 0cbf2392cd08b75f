/**
 * Read-ahead for the server's push: the likely order of a fork's next pages, predicted from the
 * pages its clones fault on. Clones of one parent run the same code over the same data, so their
 * faults follow the parent's access pattern. A scan (stride 1 or any constant stride, forwards or
 * backwards) is recognised in the last `history` fresh faults taken as a set: compilers unroll
 * loops and issue an iteration's loads in any order (a guest summing every 4th page faulted in
 * groups like 269, 265, 261), so the faults form an arithmetic progression only once sorted, and
 * the direction is where the newer half of them lies. The pages ahead of the scan are then
 * pushed before anybody faults on them. A fault just past what was pushed means the clones kept
 * going: the window doubles (as the kernel's file read-ahead does), up to `maxWindow`.
 *
 * Like the kernel's asynchronous read-ahead (its PG_readahead mark), the next window is also
 * pushed as soon as a clone reaches the first page of the latest one ({@link reached}): the
 * stream then stays a window ahead of the clones instead of stopping at the end of each window
 * until a fault past it has gone to the server and back.
 *
 * @module
 */

export interface ReadaheadOptions {
  /** Pages pushed when a scan is first recognised. */
  initialWindow: number;
  maxWindow: number;
  /** Fresh faults a scan is recognised from. */
  history: number;
}

/** At most 64 pages: what a scan that stops costs in pages nobody reads. */
export const DEFAULT_READAHEAD: ReadaheadOptions = { initialWindow: 8, maxWindow: 64, history: 8 };

/** Strides past the window's end that a fault may land and still continue the scan. */
const SLACK_STRIDES = 8;

/** Predicts one fork's next pages from the pages asked for the first time, in request order. */
export class StridePredictor {
  readonly options: ReadaheadOptions;
  #pageCount: number;
  #recent: number[] = [];
  /** The scan being read ahead: its step (signed) and the last page pushed; 0 when none. */
  #step = 0;
  #ahead = 0;
  #window = 0;
  /** First page of the latest window, until a clone reaches it; -1 once it has. */
  #mark = -1;

  constructor(pageCount: number, options: Partial<ReadaheadOptions> = {}) {
    this.#pageCount = pageCount;
    this.options = { ...DEFAULT_READAHEAD, ...options };
  }

  /** A clone faulted on `page`; returns the pages to push next, in order (maybe none). */
  observe(page: number): number[] {
    if (this.#continues(page)) {
      // The clones ran through the window: push the next, larger one from its end.
      this.#window = Math.min(this.options.maxWindow, this.#window * 2);
      this.#recent = [];
      return this.#predictFrom(this.#ahead);
    }
    this.#recent.push(page);
    if (this.#recent.length > this.options.history) this.#recent.shift();
    // Too few faults since the window last grew to judge by: a scan goes on until a full history
    // shows none (faults that land inside its window dropped it, and the next eight faults of a
    // scan read ahead were round trips each until it was recognised again).
    if (this.#recent.length < this.options.history) return [];
    const step = this.#scanStep();
    if (step === 0) {
      this.#step = 0;
      return [];
    }
    const edge = step > 0 ? Math.max(...this.#recent) : Math.min(...this.#recent);
    if (step === this.#step) {
      // Inside the scan already read ahead, unless the clones got well past its end (pages
      // reached them by other routes, so no fault fell just past the window): then the read-ahead
      // would never resume. Read ahead again from where they are.
      if ((edge - this.#ahead) / step <= SLACK_STRIDES) return [];
      return this.#predictFrom(edge);
    }
    this.#step = step;
    this.#window = this.options.initialWindow;
    return this.#predictFrom(edge);
  }

  /** Whether a fault on `page` (a page not read ahead) is the scan running past its window. */
  #continues(page: number): boolean {
    if (this.#step === 0) return false;
    const past = (page - this.#ahead) / this.#step;
    return Number.isInteger(past) && past >= 1 && past <= SLACK_STRIDES;
  }

  /**
   * A clone wants `page`, which was read ahead (it is on its way, or queued): when that is the
   * first page of the latest window or beyond, returns the next window, doubled (maybe none).
   */
  reached(page: number): number[] {
    if (this.#step === 0 || this.#mark < 0) return [];
    const into = (page - this.#mark) / this.#step;
    const past = (page - this.#ahead) / this.#step;
    if (!Number.isInteger(into) || into < 0 || past > 0) return [];
    this.#window = Math.min(this.options.maxWindow, this.#window * 2);
    return this.#predictFrom(this.#ahead);
  }

  /**
   * The signed step of the scan the recent faults form, else 0: sorted, they are evenly spaced
   * (a page pushed meanwhile may leave a gap of one step), and the newer half lies ahead.
   */
  #scanStep(): number {
    const recent = this.#recent;
    const sorted = [...recent].sort((a, b) => a - b);
    const stride = sorted[1] - sorted[0];
    if (stride <= 0) return 0;
    for (let i = 2; i < sorted.length; i++) {
      const gap = sorted[i] - sorted[i - 1];
      if (gap !== stride && gap !== 2 * stride) return 0;
    }
    const half = recent.length >> 1;
    const older = recent.slice(0, half).reduce((a, b) => a + b, 0) / half;
    const newer = recent.slice(half).reduce((a, b) => a + b, 0) / (recent.length - half);
    return newer > older ? stride : newer < older ? -stride : 0;
  }

  #predictFrom(page: number): number[] {
    const pages: number[] = [];
    let next = page + this.#step;
    while (pages.length < this.#window && next >= 0 && next < this.#pageCount) {
      pages.push(next);
      next += this.#step;
    }
    if (pages.length === 0) {
      this.#step = 0;
      this.#mark = -1;
    } else {
      this.#ahead = pages[pages.length - 1];
      this.#mark = pages[0];
    }
    return pages;
  }
}
