/**
 * Replay protection for authenticated packets: a sliding window of sequence numbers per sender
 * (as IPsec does) plus a clock check so that a recording of an earlier session is stale.
 *
 * @module
 */

/** Why a packet with a valid tag was still dropped. */
export type ReplayVerdict = "ok" | "replayed" | "stale";

/** Sequence numbers this far behind a sender's newest are judged replays (reordering allowance). */
export const WINDOW = 1024;
/** Tolerated distance between a packet's time stamp and our clock, in seconds. */
export const DEFAULT_MAX_SKEW_S = 300;
/** Senders remembered per guard; the least recently heard is forgotten first. */
const MAX_SENDERS = 4096;

interface SenderWindow {
  highest: number;
  /** Bit `seq % WINDOW` set: seen. */
  seen: Uint8Array;
}

export class ReplayGuard {
  #senders = new Map<number, SenderWindow>();
  #maxSkewS: number;

  constructor(maxSkewS = DEFAULT_MAX_SKEW_S) {
    this.#maxSkewS = maxSkewS;
  }

  /** Call only after the tag was verified, so forgers cannot move the windows. */
  check(sender: number, seq: number, time: number, nowS = Date.now() / 1000): ReplayVerdict {
    if (Math.abs(nowS - time) > this.#maxSkewS) return "stale";
    let window = this.#senders.get(sender);
    if (window === undefined) {
      if (this.#senders.size >= MAX_SENDERS) {
        this.#senders.delete(this.#senders.keys().next().value!);
      }
      window = { highest: 0, seen: new Uint8Array(WINDOW / 8) };
    }
    // Re-inserting keeps the map in least-recently-heard order.
    this.#senders.delete(sender);
    this.#senders.set(sender, window);
    if (seq === 0) return "replayed";
    if (seq > window.highest) {
      for (let s = Math.max(window.highest + 1, seq - WINDOW + 1); s < seq; s++) clear(window, s);
      window.highest = seq;
      mark(window, seq);
      return "ok";
    }
    if (window.highest - seq >= WINDOW || isMarked(window, seq)) return "replayed";
    mark(window, seq);
    return "ok";
  }
}

function mark(w: SenderWindow, seq: number): void {
  w.seen[(seq % WINDOW) >> 3] |= 1 << (seq & 7);
}

function clear(w: SenderWindow, seq: number): void {
  w.seen[(seq % WINDOW) >> 3] &= ~(1 << (seq & 7));
}

function isMarked(w: SenderWindow, seq: number): boolean {
  return (w.seen[(seq % WINDOW) >> 3] & (1 << (seq & 7))) !== 0;
}
