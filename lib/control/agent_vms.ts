/**
 * The agent's VMs (wasm backend): starts guests, implements the sf_* calls on
 * top of the control plane, forks parents, starts clones from descriptors,
 * serves fork memory and clone results to other agents, and reports every
 * VM's output and state to the master.
 */
import { join } from "node:path";
import {
  createGuestMemory,
  type ForkPoint,
  type GuestHooks,
  type PreparedModule,
  prepareModuleCached,
  SF_ECLONE,
  SF_EINVAL,
  SF_ENOCKPT,
  SF_ENOSLOTS,
  SF_ENOTICKET,
  SF_ETICKETUSED,
  WasmVm,
} from "../backend/wasm/mod.ts";
import { fromDescriptor, pageMapOf, toDescriptor, toHex } from "../backend/wasm/fork_descriptor.ts";
import { decodeDescriptor, encodeDescriptor } from "../descriptor/mod.ts";
import type { Logger } from "../log.ts";
import type { Agent } from "./agent.ts";
import type { DataServer } from "./agent_http.ts";
import {
  type ClusterView,
  type ForkPlan,
  type MasterCall,
  OutFiles,
  type TicketView,
  type VmEvent,
} from "./messages.ts";
import { fromBase64, readOutDir, toBase64, writeOutFiles } from "./out_files.ts";

export interface AgentVmsOptions {
  agent: Agent;
  data: DataServer;
  dataAddress: string;
  /** The master's host:port and token, to fetch modules. */
  master: string;
  token: string;
  /** VM working dirs (each VM's /out) live here. */
  workDir: string;
  /** Prepared modules are cached here by content hash. */
  cacheDir: string;
  logger: Logger;
}

interface TicketHandle {
  ticket: string;
  granted: number;
  /** Set once the ticket forked: its cluster and the fork that made it. */
  fork?: { plan: ForkPlan; forkId: string; forkKey: string };
}

interface Checkpoint {
  memory: Uint8Array;
  fork: ForkPoint["state"];
}

interface Vm {
  id: string;
  vm?: WasmVm;
  outDir: string;
  moduleHash: string;
  isClone: boolean;
  tickets: Map<number, TicketHandle>;
  checkpoints: Map<number, Checkpoint>;
  /** The fork key of the cluster a clone belongs to: other agents present it to read /out. */
  forkKey?: string;
}

/** A parent's memory as it was at a fork, served to that fork's clones. */
interface ForkMemory {
  key: string;
  bytes: Uint8Array;
}

const FORK_KEY_HEADER = "x-snowflock-fork-key";

export class AgentVms {
  #o: AgentVmsOptions;
  #vms = new Map<string, Vm>();
  #modules = new Map<string, Promise<PreparedModule>>();
  #forks = new Map<string, ForkMemory>();

  constructor(o: AgentVmsOptions) {
    this.#o = o;
    o.data.route((req, url) => this.#serve(req, url));
  }

  /** Answers a call from the master. */
  handle(call: MasterCall): Promise<unknown> {
    switch (call.method) {
      case "vm.start":
        return this.#start(call.params.vm, call.params.module, call.params.args, call.params.env);
      case "clone.start":
        return this.#startClones(
          call.params.cluster,
          call.params.clones,
          call.params.descriptor,
          call.params.resume,
        );
      case "vm.kill":
        return Promise.resolve(this.#kill(call.params.vm));
      case "vm.out":
        return this.#out(call.params.vm);
    }
  }

  close(): void {
    for (const vm of this.#vms.values()) vm.vm?.kill();
  }

  // ---- modules ----

  #module(hash: string): Promise<PreparedModule> {
    let p = this.#modules.get(hash);
    if (!p) {
      p = this.#fetchModule(hash);
      this.#modules.set(hash, p);
      p.catch(() => this.#modules.delete(hash));
    }
    return p;
  }

  async #fetchModule(hash: string): Promise<PreparedModule> {
    const res = await fetch(`http://${this.#o.master}/v1/modules/${hash}`, {
      headers: { authorization: `Bearer ${this.#o.token}` },
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`Cannot fetch module ${hash.slice(0, 12)}: HTTP ${res.status}`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    return await prepareModuleCached(bytes, this.#o.cacheDir);
  }

  // ---- VMs ----

  async #newVm(id: string, moduleHash: string, isClone: boolean): Promise<Vm> {
    const outDir = join(this.#o.workDir, id, "out");
    await Deno.mkdir(outDir, { recursive: true });
    const vm: Vm = {
      id,
      outDir,
      moduleHash,
      isClone,
      tickets: new Map(),
      checkpoints: new Map(),
    };
    this.#vms.set(id, vm);
    return vm;
  }

  #io(vm: Vm) {
    return {
      preopens: [{ guestPath: "/out", hostPath: vm.outDir }],
      hooks: this.#hooks(vm),
      onOutput: (stream: "stdout" | "stderr", line: string) =>
        this.#event({ kind: "output", vm: vm.id, stream, line }),
    };
  }

  async #start(id: string, hash: string, args: string[], env: string[]): Promise<{ vm: string }> {
    const module = await this.#module(hash);
    const vm = await this.#newVm(id, hash, false);
    vm.vm = await WasmVm.start({ module, args, env, ...this.#io(vm) });
    this.#watch(vm);
    return { vm: id };
  }

  #watch(vm: Vm): void {
    this.#event({ kind: "state", vm: vm.id, state: "running" });
    vm.vm!.exited.then((exit) => {
      if (exit.kind === "exit") {
        this.#event({
          kind: "state",
          vm: vm.id,
          state: exit.code === 137 ? "killed" : "exited",
          exitCode: exit.code,
        });
      } else {
        this.#event({ kind: "state", vm: vm.id, state: "failed", reason: exit.message });
      }
    });
  }

  #event(event: VmEvent): void {
    this.#o.agent.event(event);
  }

  #kill(id: string): { killed: boolean } {
    const vm = this.#vms.get(id);
    vm?.vm?.kill();
    return { killed: vm !== undefined };
  }

  async #out(id: string): Promise<OutFiles> {
    const vm = this.#vms.get(id);
    if (!vm) throw new Error(`Cannot read /out of ${id}: not on this host`);
    return { files: await readOutDir(vm.outDir) };
  }

  // ---- the sf_* calls ----

  #hooks(vm: Vm): GuestHooks {
    const agent = this.#o.agent;
    return {
      requestTicket: async (n) => {
        if (n <= 0) return SF_EINVAL;
        const t = await agent.request({
          method: "ticket.request",
          params: { slots: n, owner: vm.id },
        }) as TicketView;
        if (t.granted === 0) return SF_ENOSLOTS;
        const handle = newHandle(vm.tickets);
        vm.tickets.set(handle, { ticket: t.id, granted: t.granted });
        return handle;
      },
      ticketSize: (h) => Promise.resolve(vm.tickets.get(h)?.granted ?? SF_ENOTICKET),
      clone: (h, fork) => this.#fork(vm, h, fork.state, fork.memory, fork.pausedAt),
      join: async (h) => {
        const t = vm.tickets.get(h);
        if (!t) return vm.isClone ? SF_ECLONE : SF_ENOTICKET;
        if (!t.fork) return SF_EINVAL;
        const c = await agent.request({
          method: "cluster.join",
          params: { cluster: t.fork.plan.cluster },
        }, 7 * 86_400_000) as ClusterView;
        await this.#gather(vm, c, t.fork);
        this.#forks.delete(t.fork.forkId);
        return c.members.filter((m) => m.state !== "exited" || m.exitCode !== 0).length;
      },
      kill: async (h) => {
        const t = vm.tickets.get(h);
        if (!t) return vm.isClone ? SF_ECLONE : SF_ENOTICKET;
        if (!t.fork) return SF_EINVAL;
        await agent.request({ method: "cluster.kill", params: { cluster: t.fork.plan.cluster } });
        this.#forks.delete(t.fork.forkId);
        return 0;
      },
      checkpoint: (fork) => {
        const handle = newHandle(vm.checkpoints);
        vm.checkpoints.set(handle, {
          memory: new Uint8Array(fork.memory.buffer).slice(0, fork.state.memoryPages * 65536),
          fork: fork.state,
        });
        return Promise.resolve(handle);
      },
      createClones: (ckpt, h) => {
        const c = vm.checkpoints.get(ckpt);
        if (!c) return Promise.resolve(SF_ENOCKPT);
        return this.#fork(vm, h, c.fork, c.memory, performance.now());
      },
      hintOverwrite: () => Promise.resolve(0),
    };
  }

  /**
   * Forks `vm` from a paused state: the master names the clones, the memory is
   * captured, and the clones start from a descriptor. Resolves (resuming the
   * parent) once the memory is captured; the clones start after that.
   */
  async #fork(
    vm: Vm,
    handle: number,
    state: ForkPoint["state"],
    memory: WebAssembly.Memory | Uint8Array,
    pausedAt: number,
  ): Promise<number> {
    const t = vm.tickets.get(handle);
    if (!t) return SF_ENOTICKET;
    if (t.fork) return SF_ETICKETUSED;
    const plan = await this.#o.agent.request({
      method: "fork.begin",
      params: { ticket: t.ticket, parentVm: vm.id },
    }) as ForkPlan;
    const bytes = memory instanceof Uint8Array
      ? memory
      : new Uint8Array(memory.buffer).slice(0, state.memoryPages * 65536);
    const forkId = crypto.getRandomValues(new Uint8Array(16));
    const forkKey = crypto.getRandomValues(new Uint8Array(32));
    t.fork = { plan, forkId: toHex(forkId), forkKey: toHex(forkKey) };
    this.#forks.set(t.fork.forkId, { key: t.fork.forkKey, bytes });
    const pauseMs = performance.now() - pausedAt;
    queueMicrotask(() => this.#dispatch(vm, plan, state, bytes, { forkId, forkKey, t }, pauseMs));
    return 0;
  }

  async #dispatch(
    vm: Vm,
    plan: ForkPlan,
    state: ForkPoint["state"],
    bytes: Uint8Array,
    ids: { forkId: Uint8Array; forkKey: Uint8Array; t: TicketHandle },
    pauseMs: number,
  ): Promise<void> {
    try {
      const module = await this.#module(vm.moduleHash);
      const descriptor = encodeDescriptor(toDescriptor(
        {
          forkId: ids.forkId,
          forkKey: ids.forkKey,
          memoryServer: this.#o.dataAddress,
          parentVm: vm.id,
          ticket: ids.t.ticket,
          clones: plan.members.length,
        },
        module,
        vm.moduleHash,
        state,
        pageMapOf(bytes, state.heapTop),
      ));
      await this.#o.agent.request({
        method: "fork.dispatch",
        params: {
          cluster: plan.cluster,
          descriptor: toBase64(descriptor),
          pauseMs,
          resume: state.kind,
        },
      });
    } catch (e) {
      this.#o.logger.warn("fork dispatch failed", { cluster: plan.cluster, error: e });
    }
  }

  async #startClones(
    cluster: string,
    clones: { clone: number; vm: string }[],
    descriptorB64: string,
    resume: "clone" | "checkpoint",
  ): Promise<{ started: number }> {
    const d = decodeDescriptor(fromBase64(descriptorB64));
    const sourceHash = toHex(d.wasm.moduleHash);
    const module = await this.#module(sourceHash);
    const memory = await this.#fetchMemory(d.memoryServer, toHex(d.forkId), toHex(d.forkKey));
    const state = { ...fromDescriptor(d, resume), moduleHash: module.hash };
    await Promise.all(clones.map(async ({ clone, vm: id }) => {
      const vm = await this.#newVm(id, sourceHash, true);
      vm.forkKey = toHex(d.forkKey);
      const mem = createGuestMemory(module, d.wasm.memory.pages);
      new Uint8Array(mem.buffer).set(memory);
      try {
        vm.vm = await WasmVm.resume({
          module,
          memory: mem,
          forkPoint: state,
          returnValue: resume === "clone" ? clone : 0,
          cloneId: clone,
          ...this.#io(vm),
        });
        this.#watch(vm);
      } catch (e) {
        this.#event({ kind: "state", vm: id, state: "failed", reason: (e as Error).message });
      }
    }));
    this.#o.logger.debug("clones started", { cluster, clones: clones.length });
    return { started: clones.length };
  }

  async #fetchMemory(server: string, forkId: string, key: string): Promise<Uint8Array> {
    const res = await fetch(`http://${server}/v1/forks/${forkId}/memory`, {
      headers: { [FORK_KEY_HEADER]: key },
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`Cannot fetch fork memory from ${server}: HTTP ${res.status}`);
    }
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Copies every clone's /out into the parent's /out/clone-<id>/. */
  async #gather(vm: Vm, c: ClusterView, fork: NonNullable<TicketHandle["fork"]>): Promise<void> {
    const addresses = new Map(fork.plan.members.map((m) => [m.clone, m.dataAddress]));
    await Promise.all(c.members.map(async (m) => {
      const address = addresses.get(m.clone);
      if (!address) return;
      try {
        const res = await fetch(`http://${address}/v1/vms/${m.vm}/out`, {
          headers: { [FORK_KEY_HEADER]: fork.forkKey },
        });
        if (!res.ok) {
          await res.body?.cancel();
          return;
        }
        const files = OutFiles.parse(await res.json());
        await writeOutFiles(join(vm.outDir, `clone-${m.clone}`), files.files);
      } catch (e) {
        this.#o.logger.warn("cannot gather clone output", { vm: m.vm, error: e });
      }
    }));
  }

  // ---- data plane ----

  async #serve(req: Request, url: URL): Promise<Response | undefined> {
    let m = /^\/v1\/forks\/([0-9a-f]{32})\/memory$/.exec(url.pathname);
    if (m && req.method === "GET") {
      const fork = this.#forks.get(m[1]);
      if (!fork) return new Response("no such fork", { status: 404 });
      if (req.headers.get(FORK_KEY_HEADER) !== fork.key) {
        return new Response("wrong fork key", { status: 403 });
      }
      return new Response(fork.bytes.slice());
    }
    m = /^\/v1\/vms\/([\w-]+)\/out$/.exec(url.pathname);
    if (m && req.method === "GET") {
      const vm = this.#vms.get(m[1]);
      if (!vm?.isClone) return new Response("no such clone", { status: 404 });
      if (req.headers.get(FORK_KEY_HEADER) !== vm.forkKey) {
        return new Response("wrong fork key", { status: 403 });
      }
      return Response.json({ files: await readOutDir(vm.outDir) });
    }
    return undefined;
  }
}

/**
 * A fresh handle for a VM's table. Random rather than counted: a clone's
 * memory holds its parent's handles, and a clone's own new ticket must never
 * be mistaken for one of those.
 */
function newHandle(table: Map<number, unknown>): number {
  for (;;) {
    const h = 1 + (crypto.getRandomValues(new Uint32Array(1))[0] % 0x3fffffff);
    if (!table.has(h)) return h;
  }
}
