/**
 * The host side of one wasm VM. The guest runs in its own Worker; when it calls
 * a `snowflock` import the worker blocks and the call reaches the VM's
 * {@link GuestHooks} here, on the host thread, where the agent does networking.
 *
 * @module
 */
import { adviseHugePages } from "../../memory/huge_pages.ts";
import { INTERRUPT_FLAG, SF_ECONTROL, SF_EFORK, SfError, WASM_PAGE } from "./guest_abi.ts";
import { VmError } from "./errors.ts";
import type { ForkPoint, ForkPointState } from "./fork_point.ts";
import type { PreparedModule } from "./prepare.ts";
import { giveWorker, takeWorker } from "./worker_pool.ts";
import type { OutputStream, Preopen } from "./wasi.ts";
import {
  CONTROL_BYTES,
  CONTROL_FLAG,
  CONTROL_VALUE,
  type HookCall,
  KILLED_EXIT_CODE,
  type WorkerInit,
  type WorkerMessage,
} from "./worker_protocol.ts";

/**
 * The impromptu-cluster calls of one VM, implemented by the agent. Each
 * resolves to the guest's return value (negative = an `SF_E*` code). A hook
 * that throws gives the guest the code of an {@link SfError}, else SF_EFORK
 * for clone/checkpoint/createClones and SF_ECONTROL for the rest.
 */
export interface GuestHooks {
  requestTicket(n: number): Promise<number>;
  ticketSize(ticket: number): Promise<number>;
  /**
   * The parent is paused at `sf_clone(ticket)`: capture `fork` (memory,
   * state) and start the clones, then resolve with what `sf_clone` returns in
   * the parent (0, or a negative code). The parent resumes when this settles.
   */
  clone(ticket: number, fork: ForkPoint): Promise<number>;
  join(ticket: number): Promise<number>;
  kill(ticket: number): Promise<number>;
  /** Like clone: resolve with the checkpoint id `sf_checkpoint_parent` returns. */
  checkpoint(fork: ForkPoint): Promise<number>;
  createClones(checkpoint: number, ticket: number): Promise<number>;
  hintOverwrite(ptr: number, len: number): Promise<number>;
}

/** How a VM ended. `kill()` reports `{ kind: "exit", code: 137 }`, like SIGKILL. */
export type VmExit = { kind: "exit"; code: number } | { kind: "trap"; message: string };

interface VmIo {
  /** Host directories the guest sees at `guestPath` (fds 3… in order). */
  preopens: Preopen[];
  hooks: GuestHooks;
  /** Guest output, one line at a time (without the newline). */
  onOutput(stream: OutputStream, line: string): void;
  /** Nice value of the VM's thread; default 0 (see DEFAULT_VM_NICE for agents). */
  nice?: number;
}

export interface StartOptions extends VmIo {
  module: PreparedModule;
  args: string[];
  env: string[];
}

export interface ResumeOptions extends VmIo {
  module: PreparedModule;
  /**
   * The clone's memory, made by the host: an eager copy of the parent's, or an
   * empty one that userfaultfd fills lazily. It must come from
   * {@link createGuestMemory} (shared, with the module's maximum) and hold at
   * least `forkPoint.memoryPages` pages.
   */
  memory: WebAssembly.Memory;
  forkPoint: ForkPointState;
  /** What the forking import returns in this VM (for sf_clone: the clone id). */
  returnValue: number;
  /** What `sf_clone_id()` answers in this VM; defaults to `returnValue`. */
  cloneId?: number;
}

const HOOK_DEFAULT_ERRORS: Record<HookCall | "clone" | "checkpoint", number> = {
  requestTicket: SF_ECONTROL,
  ticketSize: SF_ECONTROL,
  join: SF_ECONTROL,
  kill: SF_ECONTROL,
  hintOverwrite: SF_ECONTROL,
  createClones: SF_EFORK,
  clone: SF_EFORK,
  checkpoint: SF_EFORK,
};

/**
 * Compiled modules by hash, as promises: the clones of a fork start together on a host, and each
 * used to compile the module itself (4 clones: 4 compiles of 55–135 ms each on 2 cores).
 */
const compiled = new Map<string, Promise<WebAssembly.Module>>();

/** A shared memory that a VM of `module` can import, `pages` pages large. */
export function createGuestMemory(
  module: PreparedModule,
  pages: number = module.initialPages,
): WebAssembly.Memory {
  const memory = new WebAssembly.Memory({ initial: pages, maximum: module.maxPages, shared: true });
  adviseHugePages(memory, module.maxPages);
  return memory;
}

export class WasmVm {
  #worker: Worker;
  #memory: WebAssembly.Memory;
  #interrupt: Int32Array;
  #control: Int32Array;
  #io: VmIo;
  #exited: Promise<VmExit>;
  #resolveExit!: (exit: VmExit) => void;
  #done = false;
  #threadDone = false;
  #lines: Record<OutputStream, string> = { stdout: "", stderr: "" };
  #pauses: number[] = [];
  #ready = Promise.withResolvers<void>();

  /** Starts a fresh VM: data segments are written, then `_start` runs. */
  static async start(options: StartOptions): Promise<WasmVm> {
    const memory = createGuestMemory(options.module);
    const view = new Uint8Array(memory.buffer);
    for (const segment of options.module.dataSegments) view.set(segment.bytes, segment.offset);
    return await WasmVm.#launch(options, memory, {
      args: options.args,
      env: options.env,
      cloneId: 0,
    });
  }

  /**
   * Starts a clone of a paused parent from its fork point. Data segments are
   * not applied (the memory is the parent's); the guest continues inside the
   * forking import, which returns `returnValue`.
   *
   * @throws {VmError} if the fork point belongs to another module, the memory
   * is too small, or the clone's descriptors cannot be re-opened.
   */
  static async resume(options: ResumeOptions): Promise<WasmVm> {
    const { module, memory, forkPoint } = options;
    if (forkPoint.moduleHash !== module.hash) {
      throw new VmError(
        `Cannot resume VM: the fork point is of module ${forkPoint.moduleHash}, not ${module.hash}`,
      );
    }
    if (memory.buffer.byteLength < forkPoint.memoryPages * WASM_PAGE) {
      throw new VmError(
        `Cannot resume VM: memory has ${memory.buffer.byteLength / WASM_PAGE} pages, ` +
          `the fork point ${forkPoint.memoryPages}`,
      );
    }
    return await WasmVm.#launch(options, memory, {
      args: forkPoint.wasi.args,
      env: forkPoint.wasi.env,
      cloneId: options.cloneId ?? options.returnValue,
      resume: {
        fds: forkPoint.wasi.fds,
        globals: forkPoint.globals,
        asyncifyData: forkPoint.asyncifyData,
        returnValue: options.returnValue,
      },
    });
  }

  static async #launch(
    options: VmIo & { module: PreparedModule },
    memory: WebAssembly.Memory,
    run: Pick<WorkerInit, "args" | "env" | "cloneId" | "resume">,
  ): Promise<WasmVm> {
    const { module } = options;
    let compiling = compiled.get(module.hash);
    if (!compiling) {
      compiling = WebAssembly.compile(module.bytes);
      compiled.set(module.hash, compiling);
      compiling.catch(() => compiled.delete(module.hash)); // the next VM tries again
    }
    const wasm = await compiling;
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const interrupt = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const worker = takeWorker();
    const vm = new WasmVm(worker, memory, interrupt, control, options);
    const init: WorkerInit = {
      module: wasm,
      moduleHash: module.hash,
      memory,
      interrupt,
      control,
      globals: module.globals,
      stackPointer: module.stackPointer,
      asyncifyDataBytes: module.asyncifyDataBytes,
      preopens: [...options.preopens, ...(module.preopens ?? [])],
      nice: options.nice ?? 0,
      ...run,
    };
    worker.postMessage(init);
    await vm.#ready.promise;
    return vm;
  }

  private constructor(
    worker: Worker,
    memory: WebAssembly.Memory,
    interrupt: WebAssembly.Memory,
    control: SharedArrayBuffer,
    io: VmIo,
  ) {
    this.#worker = worker;
    this.#memory = memory;
    this.#interrupt = new Int32Array(interrupt.buffer, INTERRUPT_FLAG, 1);
    this.#control = new Int32Array(control);
    this.#io = { preopens: io.preopens, hooks: io.hooks, onOutput: io.onOutput };
    this.#exited = new Promise((resolve) => this.#resolveExit = resolve);
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => this.#onMessage(event.data);
    worker.onerror = (event: ErrorEvent) => {
      // Keep a worker failure from becoming an uncaught error of the host.
      event.preventDefault();
      this.#finish({ kind: "trap", message: event.message });
    };
  }

  /** The guest's linear memory (shared with the worker). */
  get memory(): WebAssembly.Memory {
    return this.#memory;
  }

  /** Settles once, when the guest exits, traps or is killed. */
  get exited(): Promise<VmExit> {
    return this.#exited;
  }

  /**
   * Whether the guest's thread is done with its memory: the guest exited, trapped or failed to
   * start on its own. A killed guest's thread may still run for a moment after `exited`.
   */
  get threadDone(): boolean {
    return this.#threadDone;
  }

  /** Milliseconds the guest was paused at each completed fork, in order. */
  forkPauses(): number[] {
    return [...this.#pauses];
  }

  /**
   * Ends the VM at once; `exited` reports exit code 137. The worker thread
   * ends at the guest's next interrupt check (worker_protocol.ts).
   */
  kill(): void {
    if (this.#done) return;
    Atomics.store(this.#interrupt, 0, 1);
    Atomics.notify(this.#interrupt, 0);
    Atomics.store(this.#control, CONTROL_FLAG, 1);
    Atomics.notify(this.#control, CONTROL_FLAG);
    this.#finish({ kind: "exit", code: KILLED_EXIT_CODE });
  }

  #onMessage(message: WorkerMessage): void {
    // A killed guest may still post on its way out: its hooks must not run.
    if (this.#done) return;
    switch (message.type) {
      case "ready":
        this.#ready.resolve();
        return;
      case "failed":
        this.#ready.reject(new VmError(`Cannot start VM: ${message.message}`));
        this.#finish({ kind: "trap", message: message.message }, "idle");
        return;
      case "output":
        this.#output(message.stream, message.text);
        return;
      case "call":
        this.#answer(message.hook, () => {
          const hook = this.#io.hooks[message.hook] as (...args: number[]) => Promise<number>;
          return hook.apply(this.#io.hooks, message.args);
        });
        return;
      case "fork":
        this.#answer(message.state.kind, () => {
          const fork = { memory: this.#memory, state: message.state, pausedAt: performance.now() };
          return message.state.kind === "clone"
            ? this.#io.hooks.clone(message.ticket, fork)
            : this.#io.hooks.checkpoint(fork);
        });
        return;
      case "resumed":
        this.#pauses.push(message.pauseMs);
        return;
      case "exit":
        this.#finish({ kind: "exit", code: message.code }, "idle");
        return;
      case "trap":
        this.#finish({ kind: "trap", message: message.message }, "idle");
        return;
    }
  }

  #answer(hook: keyof typeof HOOK_DEFAULT_ERRORS, run: () => Promise<number>): void {
    const fallback = HOOK_DEFAULT_ERRORS[hook];
    Promise.resolve()
      .then(run)
      .then(
        (value) => Number.isInteger(value) && (value | 0) === value ? value : fallback,
        (error) => error instanceof SfError && error.code < 0 ? error.code : fallback,
      )
      .then((value) => {
        Atomics.store(this.#control, CONTROL_VALUE, value);
        Atomics.store(this.#control, CONTROL_FLAG, 1);
        Atomics.notify(this.#control, CONTROL_FLAG);
      });
  }

  #output(stream: OutputStream, text: string): void {
    const lines = (this.#lines[stream] + text).split("\n");
    this.#lines[stream] = lines.pop() ?? "";
    for (const line of lines) this.#io.onOutput(stream, line);
  }

  /**
   * `idle`: the worker's guest returned (its last message), and the worker waits for another:
   * it goes back to the pool. Killed or broken, it is ended.
   */
  #finish(exit: VmExit, worker: "idle" | "end" = "end"): void {
    if (this.#done) return;
    this.#done = true;
    this.#threadDone = worker === "idle";
    if (worker === "idle") giveWorker(this.#worker);
    else this.#worker.terminate();
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.#lines[stream]) this.#io.onOutput(stream, this.#lines[stream]);
      this.#lines[stream] = "";
    }
    this.#ready.reject(new VmError(`Cannot start VM: it ended first (${describe(exit)})`));
    this.#resolveExit(exit);
  }
}

function describe(exit: VmExit): string {
  return exit.kind === "exit" ? `exit ${exit.code}` : `trap: ${exit.message}`;
}
