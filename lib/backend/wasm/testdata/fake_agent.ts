/**
 * Test double of the agent: implements GuestHooks in process, forks by copying
 * the parent's memory eagerly and resuming every clone on this host.
 */
import { SF_ENOCKPT, SF_ENOTICKET, SF_ETICKETUSED, SfError } from "../guest_abi.ts";
import type { ForkPoint, ForkPointState } from "../fork_point.ts";
import type { PreparedModule } from "../prepare.ts";
import { createGuestMemory, type GuestHooks, type VmExit, WasmVm } from "../vm.ts";
import type { Preopen } from "../wasi.ts";

interface Ticket {
  size: number;
  used: boolean;
  clones: Promise<VmExit>[];
}

interface Image {
  state: ForkPointState;
  memory: Uint8Array;
}

export class FakeCluster {
  /** Output of every VM, as "<vm>: <line>"; the first VM is "p", its clones "p.1"… */
  readonly lines: string[] = [];
  readonly exits = new Map<string, VmExit>();
  /** Per clone: ms from the parent's pause to the clone running, and for resume() alone. */
  readonly cloneTimes: { sincePause: number; resume: number }[] = [];
  #module: PreparedModule;
  #preopens: Preopen[];
  #tickets = new Map<number, Ticket>();
  #checkpoints = new Map<number, Image>();
  #nextId = 1;

  constructor(module: PreparedModule, preopens: Preopen[] = []) {
    this.#module = module;
    this.#preopens = preopens;
  }

  start(args: string[], hooks?: GuestHooks, nice?: number): Promise<WasmVm> {
    return WasmVm.start({
      module: this.#module,
      args: ["guest", ...args],
      env: [],
      preopens: this.#preopens,
      hooks: hooks ?? this.hooks("p"),
      onOutput: (_stream, line) => this.lines.push(`p: ${line}`),
      ...(nice !== undefined ? { nice } : {}),
    });
  }

  linesOf(vm: string): string[] {
    const prefix = `${vm}: `;
    return this.lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
  }

  hooks(vm: string): GuestHooks {
    return {
      requestTicket: (n) => {
        const id = this.#nextId++;
        this.#tickets.set(id, { size: n, used: false, clones: [] });
        return Promise.resolve(id);
      },
      ticketSize: (ticket) => Promise.resolve(this.#tickets.get(ticket)?.size ?? SF_ENOTICKET),
      clone: (ticket, fork) => {
        const granted = this.#useTicket(ticket);
        const image = capture(fork);
        for (let id = 1; id <= granted.size; id++) {
          granted.clones.push(this.#spawn(`${vm}.${id}`, image, id, id, fork.pausedAt));
        }
        return Promise.resolve(0);
      },
      join: async (ticket) => {
        const granted = this.#tickets.get(ticket);
        if (!granted) throw new SfError(SF_ENOTICKET, "unknown ticket");
        return (await Promise.all(granted.clones)).length;
      },
      kill: () => Promise.resolve(0),
      checkpoint: (fork) => {
        const id = this.#nextId++;
        this.#checkpoints.set(id, capture(fork));
        return Promise.resolve(id);
      },
      createClones: (checkpoint, ticket) => {
        const image = this.#checkpoints.get(checkpoint);
        if (!image) throw new SfError(SF_ENOCKPT, "unknown checkpoint");
        const granted = this.#useTicket(ticket);
        for (let id = 1; id <= granted.size; id++) {
          granted.clones.push(this.#spawn(`${vm}.c${id}`, image, 0, id, performance.now()));
        }
        return Promise.resolve(granted.size);
      },
      hintOverwrite: () => Promise.resolve(0),
    };
  }

  #useTicket(ticket: number): Ticket {
    const granted = this.#tickets.get(ticket);
    if (!granted) throw new SfError(SF_ENOTICKET, "unknown ticket");
    if (granted.used) throw new SfError(SF_ETICKETUSED, "ticket used");
    granted.used = true;
    return granted;
  }

  async #spawn(
    vm: string,
    image: Image,
    returnValue: number,
    cloneId: number,
    pausedAt: number,
  ): Promise<VmExit> {
    // Let the hook answer first, so the parent's pause is the capture alone.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const memory = createGuestMemory(this.#module, image.state.memoryPages);
    new Uint8Array(memory.buffer).set(image.memory);
    const started = performance.now();
    const clone = await WasmVm.resume({
      module: this.#module,
      memory,
      forkPoint: image.state,
      returnValue,
      cloneId,
      preopens: this.#preopens,
      hooks: this.hooks(vm),
      onOutput: (_stream, line) => this.lines.push(`${vm}: ${line}`),
    });
    const running = performance.now();
    this.cloneTimes.push({ sincePause: running - pausedAt, resume: running - started });
    const exit = await clone.exited;
    this.exits.set(vm, exit);
    return exit;
  }
}

function capture(fork: ForkPoint): Image {
  return { state: fork.state, memory: new Uint8Array(fork.memory.buffer).slice() };
}
