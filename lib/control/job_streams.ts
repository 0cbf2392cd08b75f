/**
 * Output and state events of running jobs, fanned out to every client that
 * follows the job. A late follower first gets what it missed (bounded), so
 * `snowflock run` never loses the first lines of a fast guest.
 */
import type { JobEvent } from "./messages.ts";

const HISTORY_LIMIT = 20_000;

interface Job {
  history: JobEvent[];
  dropped: number;
  followers: Set<(e: JobEvent) => void>;
  ended: boolean;
}

export class JobStreams {
  #jobs = new Map<string, Job>();

  #job(id: string): Job {
    let j = this.#jobs.get(id);
    if (!j) {
      j = { history: [], dropped: 0, followers: new Set(), ended: false };
      this.#jobs.set(id, j);
    }
    return j;
  }

  publish(job: string, event: JobEvent): void {
    const j = this.#job(job);
    if (j.ended) return;
    j.history.push(event);
    if (j.history.length > HISTORY_LIMIT) {
      j.history.shift();
      j.dropped++;
    }
    if (event.kind === "end") j.ended = true;
    for (const f of j.followers) f(event);
  }

  /** An NDJSON stream of the job's events, from its first kept event to its end. */
  follow(job: string): ReadableStream<Uint8Array> {
    const j = this.#job(job);
    const enc = new TextEncoder();
    let listener: ((e: JobEvent) => void) | undefined;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        const send = (e: JobEvent) => {
          controller.enqueue(enc.encode(JSON.stringify(e) + "\n"));
          if (e.kind === "end") {
            if (listener) j.followers.delete(listener);
            controller.close();
          }
        };
        for (const e of j.history) send(e);
        if (!j.ended) {
          listener = send;
          j.followers.add(listener);
        }
      },
      cancel: () => {
        if (listener) j.followers.delete(listener);
      },
    });
  }
}
