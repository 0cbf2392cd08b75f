/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * Worker entry of one wasm VM: instantiates the prepared guest, serves its
 * WASI and `snowflock` imports, and forks it by asyncify.
 *
 * A fork: the forking import starts an unwind and returns; `_start` returns
 * with the whole call stack saved in the asyncify memory; the worker reports
 * the fork point and blocks until the host answers; then it starts a rewind
 * and calls `_start` again, which replays the stack down to the same import,
 * which stops the rewind and returns the host's answer. A clone does the same
 * replay from the parent's saved stack in a new instance over a copy of the
 * parent's memory.
 *
 * A kill sets the VM's interrupt word: the guest traps at its next check
 * (interrupt.ts), and a host call it makes or is blocked in ends the VM.
 *
 * @module
 */
import {
  ASYNCIFY_MEMORY_EXPORT,
  INTERRUPT_FLAG,
  INTERRUPT_IMPORT,
  SF_EINVAL,
} from "./guest_abi.ts";
import type { ForkPointState } from "./fork_point.ts";
import { setThreadNice } from "../../../native/libc.ts";
import { type OutputStream, ProcExit, WasiHost } from "./wasi.ts";
import {
  CONTROL_FLAG,
  CONTROL_VALUE,
  type HookCall,
  KILLED_EXIT_CODE,
  type WorkerInit,
  type WorkerMessage,
} from "./worker_protocol.ts";

// Values of asyncify_get_state().
const REWINDING = 2;
// The asyncify data header ({ i32 current, i32 end }) sits at offset 0.
const ASYNCIFY_HEADER = 0;
const ASYNCIFY_HEADER_BYTES = 8;

interface GuestExports {
  _start(): void;
  asyncify_start_unwind(data: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(data: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
  [name: string]: unknown;
}

interface PendingFork {
  kind: ForkPointState["kind"];
  ticket: number;
  startedAt: number;
}

class GuestRunner {
  #init: WorkerInit;
  #control: Int32Array;
  #interrupt: Int32Array;
  #wasi: WasiHost;
  #exports: GuestExports;
  #pending: PendingFork | null = null;
  #pausedSince: number | null = null;
  #rewindValue = 0;
  #decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };

  constructor(init: WorkerInit) {
    this.#init = init;
    this.#control = new Int32Array(init.control);
    this.#interrupt = new Int32Array(init.interrupt.buffer, INTERRUPT_FLAG, 1);
    this.#wasi = new WasiHost({
      memory: init.memory,
      args: init.args,
      env: init.env,
      preopens: init.preopens,
      fds: init.resume?.fds,
      onOutput: (stream, bytes) => this.#output(stream, bytes),
      sleeper: this.#interrupt,
    });
    const instance = new WebAssembly.Instance(init.module, {
      env: { memory: init.memory },
      wasi_snapshot_preview1: this.#unlessKilled(this.#wasi.imports()),
      snowflock: { ...this.#snowflockImports(), [INTERRUPT_IMPORT.name]: init.interrupt },
    });
    this.#exports = instance.exports as GuestExports;
    if (init.resume) this.#prepareRewind(init.resume);
  }

  run(): WorkerMessage {
    try {
      for (;;) {
        this.#exports._start();
        if (!this.#pending) return { type: "exit", code: 0 };
        this.#forkAndRewind(this.#pending);
      }
    } catch (error) {
      if (error instanceof ProcExit) return { type: "exit", code: error.code };
      return { type: "trap", message: error instanceof Error ? error.message : String(error) };
    } finally {
      this.#flushOutput();
      this.#wasi.close();
    }
  }

  #snowflockImports(): Record<string, (...args: number[]) => number | void> {
    const call = (hook: HookCall) => (...args: number[]) =>
      this.#block({ type: "call", hook, args });
    return {
      sf_request_ticket: call("requestTicket"),
      sf_ticket_size: call("ticketSize"),
      sf_clone: (ticket) => this.#fork("clone", ticket),
      sf_join: call("join"),
      sf_exit: (code) => {
        throw new ProcExit(code);
      },
      sf_kill: call("kill"),
      sf_checkpoint_parent: () => this.#fork("checkpoint", 0),
      sf_create_clones: call("createClones"),
      sf_hint_overwrite: (ptr, len) => {
        const size = this.#init.memory.buffer.byteLength;
        if (ptr < 0 || len < 0 || ptr + len > size) return SF_EINVAL;
        return this.#block({ type: "call", hook: "hintOverwrite", args: [ptr, len] });
      },
      sf_clone_id: () => this.#init.cloneId,
    };
  }

  #fork(kind: ForkPointState["kind"], ticket: number): number {
    if (this.#exports.asyncify_get_state() === REWINDING) {
      this.#exports.asyncify_stop_rewind();
      if (this.#pausedSince !== null) {
        this.#post({ type: "resumed", pauseMs: performance.now() - this.#pausedSince });
        this.#pausedSince = null;
      }
      return this.#rewindValue;
    }
    const header = new Int32Array(this.#asyncifyMemory().buffer, ASYNCIFY_HEADER, 2);
    header[0] = ASYNCIFY_HEADER_BYTES;
    header[1] = this.#init.asyncifyDataBytes;
    this.#pending = { kind, ticket, startedAt: performance.now() };
    this.#exports.asyncify_start_unwind(ASYNCIFY_HEADER);
    // Ignored: the unwind discards it, the rewind returns the host's answer.
    return 0;
  }

  #forkAndRewind(pending: PendingFork): void {
    this.#exports.asyncify_stop_unwind();
    this.#pending = null;
    this.#pausedSince = pending.startedAt;
    const state = this.#captureForkPoint(pending.kind);
    this.#rewindValue = this.#block({ type: "fork", ticket: pending.ticket, state });
    this.#exports.asyncify_start_rewind(ASYNCIFY_HEADER);
  }

  #captureForkPoint(kind: ForkPointState["kind"]): ForkPointState {
    const asyncify = this.#asyncifyMemory().buffer;
    const used = new Int32Array(asyncify, ASYNCIFY_HEADER, 1)[0];
    const memoryBytes = this.#init.memory.buffer.byteLength;
    const globals = this.#init.globals.map(({ name }) => ({
      name,
      value: (this.#exports[name] as WebAssembly.Global).value as number | bigint,
    }));
    const stackPointer = globals.find((g) => g.name === this.#init.stackPointer)?.value;
    return {
      kind,
      moduleHash: this.#init.moduleHash,
      globals,
      asyncifyData: new Uint8Array(asyncify, 0, used).slice(),
      wasi: this.#wasi.captureState(),
      memoryPages: memoryBytes / 65536,
      heapTop: memoryBytes,
      stackPointer: typeof stackPointer === "number" ? stackPointer : null,
    };
  }

  #prepareRewind(resume: NonNullable<WorkerInit["resume"]>): void {
    for (const { name, value } of resume.globals) {
      (this.#exports[name] as WebAssembly.Global).value = value;
    }
    new Uint8Array(this.#asyncifyMemory().buffer).set(resume.asyncifyData);
    this.#rewindValue = resume.returnValue;
    this.#exports.asyncify_start_rewind(ASYNCIFY_HEADER);
  }

  #asyncifyMemory(): WebAssembly.Memory {
    return this.#exports[ASYNCIFY_MEMORY_EXPORT] as WebAssembly.Memory;
  }

  /**
   * The imports, each ending the VM first if it was killed: a guest that was
   * blocked in a page fault when its memory went away reads zeros until its
   * next check, and must not write them anywhere.
   */
  #unlessKilled<F extends (...args: never[]) => unknown>(
    imports: Record<string, F>,
  ): Record<string, F> {
    return Object.fromEntries(
      Object.entries(imports).map(([name, fn]) => [
        name,
        ((...args) => {
          this.#exitIfKilled();
          return fn(...args);
        }) as F,
      ]),
    );
  }

  #block(message: WorkerMessage): number {
    Atomics.store(this.#control, CONTROL_FLAG, 0);
    // A kill before the store above had set the flag this store cleared.
    this.#exitIfKilled();
    this.#post(message);
    while (Atomics.load(this.#control, CONTROL_FLAG) === 0) {
      Atomics.wait(this.#control, CONTROL_FLAG, 0);
    }
    this.#exitIfKilled();
    return Atomics.load(this.#control, CONTROL_VALUE);
  }

  #exitIfKilled(): void {
    if (Atomics.load(this.#interrupt, 0) !== 0) throw new ProcExit(KILLED_EXIT_CODE);
  }

  #output(stream: OutputStream, bytes: Uint8Array): void {
    const text = this.#decoders[stream].decode(bytes, { stream: true });
    if (text) this.#post({ type: "output", stream, text });
  }

  #flushOutput(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      const text = this.#decoders[stream].decode();
      if (text) this.#post({ type: "output", stream, text });
    }
  }

  #post(message: WorkerMessage): void {
    self.postMessage(message);
  }
}

/** This thread's nice value: a worker keeps it from one guest to the next. */
let threadNice = 0;

self.onmessage = (event: MessageEvent<WorkerInit>) => {
  const { nice } = event.data;
  // Refused only when raising it without the right to: the guest runs all the same.
  if (nice !== threadNice && setThreadNice(nice)) threadNice = nice;
  let runner: GuestRunner;
  try {
    runner = new GuestRunner(event.data);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    self.postMessage({ type: "failed", message } satisfies WorkerMessage);
    return;
  }
  self.postMessage({ type: "ready" } satisfies WorkerMessage);
  self.postMessage(runner.run());
};
