/**
 * Messages between {@link WasmVm} (host thread) and vm_worker.ts.
 *
 * Blocking host calls: the worker sets `control[CONTROL_FLAG]` to 0, posts a
 * `call` or `fork` message and `Atomics.wait`s on the flag; the host runs the
 * hook, stores the result in `control[CONTROL_VALUE]`, sets the flag to 1 and
 * notifies. The worker thread never runs an event loop while the guest runs.
 *
 * Kill: `Worker.terminate()` stops neither Wasm code nor `Atomics.wait`, so the
 * host first sets the interrupt word (interrupt.ts) and notifies it (a WASI
 * sleep waits on it), then sets `control[CONTROL_FLAG]` and notifies (a
 * blocking call waits on that). The guest traps at its next check; a blocking
 * call, or any WASI call, that finds the word set ends the VM with
 * {@link KILLED_EXIT_CODE}. The host reports the kill before any of that.
 *
 * @module
 */
import type { ForkPointState, GlobalValue } from "./fork_point.ts";
import type { GlobalExport } from "./prepare.ts";
import type { OutputStream, Preopen, WasiFdState } from "./wasi.ts";

export const CONTROL_FLAG = 0;
export const CONTROL_VALUE = 1;
export const CONTROL_BYTES = 8;

/** Exit code of a killed VM, as of a process killed by SIGKILL. */
export const KILLED_EXIT_CODE = 137;

/** Hooks reached through `call` messages. */
export type HookCall =
  | "requestTicket"
  | "ticketSize"
  | "join"
  | "kill"
  | "createClones"
  | "hintOverwrite";

export interface WorkerInit {
  module: WebAssembly.Module;
  moduleHash: string;
  memory: WebAssembly.Memory;
  /** The VM's own interrupt memory (one shared page; interrupt.ts). */
  interrupt: WebAssembly.Memory;
  control: SharedArrayBuffer;
  globals: GlobalExport[];
  stackPointer: string | null;
  asyncifyDataBytes: number;
  args: string[];
  env: string[];
  preopens: Preopen[];
  /** sf_clone_id() in this VM. */
  cloneId: number;
  /** Nice value of the VM's thread (0–19): guests yield to their host's own threads. */
  nice: number;
  /** Present for a clone: where to rewind to and what the fork returns. */
  resume?: {
    fds: WasiFdState[];
    globals: GlobalValue[];
    asyncifyData: Uint8Array;
    returnValue: number;
  };
}

export type WorkerMessage =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "output"; stream: OutputStream; text: string }
  | { type: "call"; hook: HookCall; args: number[] }
  | { type: "fork"; ticket: number; state: ForkPointState }
  | { type: "resumed"; pauseMs: number }
  | { type: "exit"; code: number }
  | { type: "trap"; message: string };
