/**
 * GET /v1/events: the master's status as server-sent events. The first event
 * is the full status, then one after every change (the master coalesces
 * changes over 50 ms). Every event is the whole StatusView, the same JSON as
 * GET /v1/status, so a client that reconnects has caught up with its first
 * event and never has to merge deltas.
 *
 * The stream is pulled: a client that reads slowly is not queued every
 * intermediate status, it gets the latest one when it is ready for more.
 */
import type { StatusView } from "../control/messages.ts";

export interface StatusSource {
  status(): StatusView;
  onChange(listener: () => void): () => void;
}

export interface StatusEventOptions {
  /** Ends the stream (the listener shutting down). */
  signal: AbortSignal;
  /** A comment line this often, so proxies and dead peers are noticed. */
  keepAliveMs?: number;
}

/** What an EventSource waits before reconnecting by itself after the stream ends. */
const RETRY_MS = 1000;
const KEEP_ALIVE_MS = 15_000;

export function statusEvents(
  source: StatusSource,
  o: StatusEventOptions,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let stream!: ReadableStreamDefaultController<Uint8Array>;
  let changed = true; // the first event is the initial status
  let keepAlive = false;
  let closed = false;
  let wake = () => {};
  let unsubscribe = () => {};
  let timer: ReturnType<typeof setInterval> | undefined;

  const finish = () => {
    closed = true;
    unsubscribe();
    clearInterval(timer);
    o.signal.removeEventListener("abort", end);
    wake();
  };
  // Closed here rather than in pull: a client that stopped reading has no pull
  // pending, and its open response would hold up the listener's shutdown.
  const end = () => {
    if (closed) return;
    finish();
    stream.close();
  };

  return new ReadableStream<Uint8Array>({
    start(controller) {
      stream = controller;
      if (o.signal.aborted) {
        closed = true;
        controller.close();
        return;
      }
      o.signal.addEventListener("abort", end);
      unsubscribe = source.onChange(() => {
        changed = true;
        wake();
      });
      timer = setInterval(() => {
        keepAlive = true;
        wake();
      }, o.keepAliveMs ?? KEEP_ALIVE_MS);
      controller.enqueue(encoder.encode(`retry: ${RETRY_MS}\n\n`));
    },
    async pull(controller) {
      while (!closed && !changed && !keepAlive) {
        await new Promise<void>((resolve) => wake = resolve);
      }
      if (closed) return;
      if (changed) {
        changed = false;
        keepAlive = false;
        let status: StatusView;
        try {
          status = source.status();
        } catch (e) {
          finish();
          controller.error(e);
          return;
        }
        // JSON.stringify never emits a raw newline, so the event is one data line.
        controller.enqueue(encoder.encode(`event: status\ndata: ${JSON.stringify(status)}\n\n`));
      } else {
        keepAlive = false;
        controller.enqueue(encoder.encode(": keep-alive\n\n"));
      }
    },
    cancel: finish,
  });
}
