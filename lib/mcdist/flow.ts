/**
 * Flow control for the server's multicast: a token-bucket pacer whose rate follows the
 * receivers' reports. A receiver that gets much less than was sent (more than random loss would
 * explain) while pages are being asked for again (lost, not merely late) pulls the rate down to
 * what it manages; otherwise, while there is a backlog, the rate creeps up again.
 *
 * @module
 */

export interface FlowOptions {
  /** Datagrams a second at the start. */
  initialRate: number;
  minRate: number;
  maxRate: number;
  /** Share of datagrams a receiver may miss before it counts as overrun (random loss). */
  lossTolerance: number;
  /**
   * Share of the datagrams sent that must be pages sent again (asked for after they went) for a
   * receiver behind the rate to count as overrun. A receiver on a busy host reads its socket late,
   * in bursts: its rate dips below ours while its buffer holds the rest, and nothing is lost. An
   * overrun one drops datagrams, and their pages are asked for again.
   */
  overrunLoss: number;
  /** Multiplicative increase per good report while there is a backlog. */
  increase: number;
  /**
   * Most datagrams sent back to back. Receivers take them in batches into 4 MiB socket buffers
   * (about a thousand pages); a small burst starves the stream when the server's timers fire
   * late on a busy host (measured: 32 a wake-up with wake-ups 10 ms apart under load).
   */
  burst: number;
  /**
   * After a slow-down, reports for this long cannot slow down again: they were measured before
   * it took effect (as TCP reduces its window once per round trip).
   */
  holdMs: number;
}

export const DEFAULT_FLOW: FlowOptions = {
  initialRate: 8_000,
  minRate: 500,
  maxRate: 30_000,
  lossTolerance: 0.35,
  overrunLoss: 0.1,
  increase: 1.05,
  burst: 256,
  holdMs: 200,
};

/** Counts events in 10 ms buckets over the last second. */
export class RateMeter {
  static readonly BUCKET_MS = 10;
  static readonly BUCKETS = 100;
  #counts = new Float64Array(RateMeter.BUCKETS);
  #stamps = new Float64Array(RateMeter.BUCKETS).fill(-1);

  add(n: number, nowMs: number): void {
    const slot = Math.floor(nowMs / RateMeter.BUCKET_MS);
    const i = slot % RateMeter.BUCKETS;
    if (this.#stamps[i] !== slot) {
      this.#stamps[i] = slot;
      this.#counts[i] = 0;
    }
    this.#counts[i] += n;
  }

  /** Events a second over the last `windowMs` (at most one second). */
  rate(nowMs: number, windowMs: number): number {
    const slot = Math.floor(nowMs / RateMeter.BUCKET_MS);
    const span = Math.min(
      RateMeter.BUCKETS,
      Math.max(1, Math.round(windowMs / RateMeter.BUCKET_MS)),
    );
    let sum = 0;
    for (let s = slot - span + 1; s <= slot; s++) {
      const i = ((s % RateMeter.BUCKETS) + RateMeter.BUCKETS) % RateMeter.BUCKETS;
      if (this.#stamps[i] === s) sum += this.#counts[i];
    }
    return sum * 1000 / (span * RateMeter.BUCKET_MS);
  }
}

/** Token bucket: how many datagrams may go now. */
export class Pacer {
  #tokens = 0;
  #last = -1;

  /** Adds the tokens earned since the last call at `rate`, capped at `burst`; returns them. */
  refill(rate: number, burst: number, nowMs: number): number {
    if (this.#last >= 0) this.#tokens += (nowMs - this.#last) * rate / 1000;
    this.#last = nowMs;
    this.#tokens = Math.min(this.#tokens, burst);
    return this.#tokens;
  }

  spend(n: number): void {
    this.#tokens -= n;
  }

  /** Milliseconds until `n` tokens, at `rate`. */
  waitMs(rate: number, n: number): number {
    return Math.max(1, Math.ceil((n - this.#tokens) * 1000 / rate));
  }
}

/** Rates in datagrams a second, over the same recent window. */
export interface FlowReport {
  /** What the receiver says it got. */
  received: number;
  /** What the server sent it (multicast, plus unicast to it). */
  sent: number;
  /** Of `sent`, pages sent again because they were asked for after they went. */
  resent: number;
  /**
   * Whether the server had more to send than the rate allowed. Only then can a receiver be
   * overrun: without a backlog the server sends what was asked, as fast as asked, and the two
   * rates are measured over windows too unaligned to compare.
   */
  backlog: boolean;
}

/** The multicast rate of one fork, steered by its receivers' reports. */
export class FlowController {
  readonly options: FlowOptions;
  #rate: number;
  #lastDecrease = -Infinity;

  constructor(options: Partial<FlowOptions> = {}) {
    this.options = { ...DEFAULT_FLOW, ...options };
    this.#rate = this.options.initialRate;
  }

  /** Datagrams a second the server may send now. */
  get rate(): number {
    return this.#rate;
  }

  /** One receiver's report, judged against what the server sent meanwhile. */
  report(r: FlowReport, nowMs: number): void {
    const { minRate, maxRate, lossTolerance, overrunLoss, increase, holdMs } = this.options;
    const { received, sent } = r;
    // Too little was sent to judge a receiver by: an idle server learns nothing.
    if (!r.backlog || sent < minRate / 2) return;
    if (received < sent * (1 - lossTolerance) && r.resent >= sent * overrunLoss) {
      if (nowMs - this.#lastDecrease < holdMs) return;
      this.#lastDecrease = nowMs;
      // Towards what the receiver manages, but at most halving per report (one report can be noise).
      const target = Math.max(received * 1.1, this.#rate / 2);
      this.#rate = Math.max(minRate, Math.min(this.#rate, Math.round(target)));
    } else {
      this.#rate = Math.min(maxRate, this.#rate * increase);
    }
  }
}
