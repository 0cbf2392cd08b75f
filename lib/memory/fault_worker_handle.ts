/**
 * The main-thread side of a fault worker: start it, send it commands, stop it.
 *
 * @module
 */

import { close, EFD_CLOEXEC, EFD_NONBLOCK, eventfd, write } from "../../native/libc.ts";
import { SpareWorkers } from "../threads/spare_workers.ts";
import {
  CONTROL_SLOTS,
  type FromWorker,
  GEN,
  type InitMemtap,
  type InitSnapshot,
  type ToWorker,
} from "./fault_protocol.ts";

/** The fault worker failed (it no longer serves faults). */
export class FaultWorkerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FaultWorkerError";
  }
}

/** What the worker reports besides readiness. */
export interface FaultWorkerEvents {
  onFault?(pages: number[], at: number): void;
  onFilled?(): void;
  onDirectFailed?(message: string): void;
  onError(error: FaultWorkerError): void;
}

type Init =
  | Omit<InitMemtap, "control" | "efd" | "kind">
  | Omit<InitSnapshot, "control" | "efd" | "kind">;
type Command = ToWorker extends infer T ? T extends { gen: number } ? Omit<T, "gen"> : never
  : never;

const WORKER_URL = new URL("./fault_worker.ts", import.meta.url);

/**
 * Fault workers started ahead of time (lib/threads/spare_workers.ts): starting a Worker blocks
 * the starting thread for ~10–20 ms, which inside a parent's pause (a snapshot's worker) or a
 * clone's start (memtap's) is pure delay.
 */
const spares = new SpareWorkers(WORKER_URL);

/**
 * Keeps `size` fault workers ready while held (an agent: one per clone slot, and one for its
 * parents' snapshots); returns the release function.
 */
export function holdFaultWorkers(size: number): () => void {
  return spares.hold(size);
}

/** Fault workers waiting idle (for tests). */
export function idleFaultWorkers(): number {
  return spares.idle;
}

// eventfd increment (u64 1), 8 bytes; written synchronously.
const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

/** A running fault worker. */
export class FaultWorkerHandle {
  #worker: Worker | undefined;
  #queue: unknown[] = [];
  #control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
  #efd: number;
  #events: FaultWorkerEvents;
  #alive = true;
  #stopped: PromiseWithResolvers<void> = Promise.withResolvers();
  /**
   * Whether the worker may serve another session after this one: only if it was given no
   * guest memory (a snapshot's, or a parent's for direct resolution). An idle worker collects
   * its garbage rarely, and until then whatever shared memory it was given stays mapped.
   */
  #reusable: boolean;
  /** Settles when the worker serves faults (faults that come earlier wait in the uffd). */
  readonly ready: Promise<void>;

  constructor(init: Init, events: FaultWorkerEvents) {
    this.#events = events;
    this.#reusable = init.role === "memtap" && init.direct?.kind !== "snapshot";
    // Wakes the worker out of poll(); closed in #finish after the worker has exited.
    this.#efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const ready = Promise.withResolvers<void>();
    this.ready = ready.promise;
    this.ready.catch(() => {}); // reported through onError as well
    const message = { ...init, kind: "init", efd: this.#efd, control: this.#control.buffer };
    // Spawning a Worker blocks this thread for ~10–20 ms: take a spare if there is one, else
    // spawn after the caller's critical section (a snapshot capture pauses the parent);
    // commands issued meanwhile wait in #queue.
    if (spares.idle > 0) this.#spawn(message, ready, spares.take());
    else setTimeout(() => this.#spawn(message, ready, spares.take()), 0);
  }

  #spawn(init: unknown, ready: PromiseWithResolvers<void>, worker: Worker): void {
    if (this.#efd < 0) { // stopped before it started
      worker.terminate();
      return;
    }
    this.#worker = worker;
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      switch (message.kind) {
        case "fault":
          this.#events.onFault?.(message.pages, message.at);
          break;
        case "ready":
          ready.resolve();
          break;
        case "filled":
          this.#events.onFilled?.();
          break;
        case "direct-failed":
          this.#events.onDirectFailed?.(message.message);
          break;
        case "stopped":
          // Its serve loop is over and the session forgotten: another memtap may have it.
          this.#finish(this.#reusable ? worker : undefined);
          break;
        case "error": {
          const error = new FaultWorkerError(`Cannot serve page faults: ${message.message}`);
          ready.reject(error);
          this.#fail(error);
          break;
        }
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      const error = new FaultWorkerError(`Cannot serve page faults: worker died: ${event.message}`);
      ready.reject(error);
      this.#fail(error);
    };
    worker.postMessage(init);
    for (const queued of this.#queue) worker.postMessage(queued);
    this.#queue = [];
  }

  /** Post a command; the worker picks it up before serving any further fault. */
  command(command: Command): void {
    if (!this.#alive) throw new FaultWorkerError("Cannot command fault worker: it has stopped");
    const gen = Atomics.load(this.#control, GEN) + 1;
    if (this.#worker === undefined) this.#queue.push({ ...command, gen });
    else this.#worker.postMessage({ ...command, gen });
    Atomics.store(this.#control, GEN, gen);
    write("write eventfd", this.#efd, ONE);
  }

  /** Stop serving and end the worker. Resolves once it has left its serve loop. */
  stop(): Promise<void> {
    if (this.#alive) {
      this.command({ kind: "stop" });
      this.#alive = false;
    }
    return this.#stopped.promise;
  }

  #fail(error: FaultWorkerError): void {
    const wasAlive = this.#alive;
    this.#alive = false;
    this.#finish();
    if (wasAlive) this.#events.onError(error);
  }

  /** Ends the session; a worker that `stopped` cleanly goes back to the spares. */
  #finish(reusable?: Worker): void {
    if (this.#efd < 0) return;
    if (reusable !== undefined) spares.give(reusable);
    else this.#worker?.terminate();
    close(this.#efd);
    this.#efd = -1;
    this.#alive = false;
    this.#stopped.resolve();
  }
}
