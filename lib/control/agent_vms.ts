/**
 * The agent's VMs (wasm backend): starts guests, implements the sf_* calls on
 * top of the control plane, forks parents, starts clones from descriptors,
 * serves fork memory (memory server) and clone results to other agents, and
 * reports every VM's output, state and memory figures to the master.
 *
 * Memory at a fork: the parent's memory is captured copy-on-write
 * (Snapshot.capture) and the parent resumes at once; the page map (avoidance
 * heuristics) is computed afterwards from the snapshot and the fork is served
 * by this agent's memory server until its clones are joined or killed. Clones
 * start with empty memory filled on demand by memtap (default), or fetched
 * whole before they run (`--memory eager`, or where userfaultfd is missing).
 */
import { join } from "node:path";
import {
  deferRefill,
  type ForkPoint,
  type GuestHooks,
  GuestMemoryPool,
  type PreparedModule,
  prepareModuleOffThread,
  SF_ECLONE,
  SF_EINVAL,
  SF_ENOCKPT,
  SF_ENOSLOTS,
  SF_ENOTICKET,
  SF_ETICKETUSED,
  WasmVm,
} from "../backend/wasm/mod.ts";
import {
  fromDescriptor,
  OS_PAGE,
  pageMapOf,
  toDescriptor,
  toHex,
} from "../backend/wasm/fork_descriptor.ts";
import { countMarks, decodeDescriptor, encodeDescriptor } from "../descriptor/mod.ts";
import type { Logger } from "../log.ts";
import { isUserfaultfdAvailable } from "../memory/availability.ts";
import { fetchAllPages } from "../memory/eager.ts";
import { ForkPages } from "../memory/fork_pages.ts";
import {
  applyHeuristics,
  type ByteRange,
  type Heuristic,
  heuristicsFromEnv,
} from "../memory/heuristics.ts";
import { Memtap, type MemtapDirect } from "../memory/memtap.ts";
import { releasePages } from "../memory/release_pages.ts";
import { MemoryServer } from "../memory/server.ts";
import { prepareSnapshots, releaseSnapshots, Snapshot } from "../memory/snapshot.ts";
import type {
  ForkAccess,
  PageClient,
  PageReader,
  PushingPageServer,
  TransportStats,
} from "../memory/transport.ts";
import { type McdistConfig, type McdistStatus, openMcdistClient } from "../mcdist/mod.ts";
import { UnicastPageClient } from "../memory/unicast/client.ts";
import { UnicastPageServer } from "../memory/unicast/server.ts";
import type { Agent } from "./agent.ts";
import type { DataServer } from "./agent_http.ts";
import {
  type CloneMemoryStats,
  type CloneStartParams,
  type ClusterView,
  type ForkMemoryStats,
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
  /** How clones get their memory: on demand (default) or all before they run. */
  memory?: MemoryMode;
  /** Avoidance heuristics in use; default from SNOWFLOCK_AVOID (all). */
  avoid?: Set<Heuristic>;
  /** How often running clones and served forks report memory figures. Default 500 ms. */
  statsIntervalMs?: number;
  /** mcdist, for clones on other hosts; absent: unicast (TCP) for every clone. */
  multicast?: { server: PushingPageServer; status: McdistStatus; config: McdistConfig };
  /** Nice value of VM threads; default {@link DEFAULT_VM_NICE}. */
  vmNice?: number;
  /** Idle guest memories kept for the next clones (memory_pool.ts); default 4. */
  spareMemories?: number;
}

/**
 * VM threads run at a lower priority than the agent's own, as Xen's dom0 comes before its
 * guests: the agent's threads serve the guests (their pages, their faults), and a guest that
 * takes the CPU from them waits longer for its own memory. Measured with 16 clones on 4 hosts
 * sharing 2 cores, median of 8 runs: nice 0 → 810 ms, 5 → 620 ms, 10 → 635 ms; 1 clone 300 →
 * 265 ms. An idle host gives a guest the whole CPU whatever its nice value.
 */
export const DEFAULT_VM_NICE = 5;

export type MemoryMode = "lazy" | "eager";

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
  /** Ranges a parent hinted its clones will overwrite (applied at its next fork). */
  hints: ByteRange[];
  /**
   * A lazy clone's memory-on-demand, until its memory is complete or it ends; meanwhile no VM
   * worker is started ahead of need on this thread, which installs the clone's pages.
   */
  memtap?: { memtap: Memtap; fork: string; pages: ForkPages; allowRefill: () => void };
  /** Why a clone was stopped by its agent (reported instead of "killed"). */
  failure?: string;
  /**
   * The memory of a VM that ended, until its pages are released (no fork of it served), and
   * whether it may be reused (its guest's thread is done with it).
   */
  ended?: { memory: WebAssembly.Memory; reusable: boolean };
  /**
   * The pages the clones of this VM's last fork asked for, first asked first: a program that
   * forks again mostly reads the same data, so they are pushed to the next fork's clones.
   */
  lastDemand?: number[];
}

/** A fork this agent serves. */
interface ServedFork {
  forkId: Uint8Array;
  cluster: string;
  parent: Vm;
  timer: ReturnType<typeof setInterval>;
  snapshot?: Snapshot;
}

/** A fork whose clones run here: one page client shared by them. */
interface ClientFork {
  pages: Promise<ForkPages>;
  users: number;
}

/** Memtap's own re-asking is left to the transport (reliable, reconnects): it only backstops. */
const MEMTAP_FETCH_TIMEOUT_MS = 15_000;

const FORK_KEY_HEADER = "x-snowflock-fork-key";

export class AgentVms {
  #o: AgentVmsOptions;
  #vms = new Map<string, Vm>();
  #modules = new Map<string, Promise<PreparedModule>>();
  #served = new Map<string, ServedFork>();
  #clientForks = new Map<string, ClientFork>();
  #eager = new Map<string, Promise<Uint8Array>>();
  #memoryServer: MemoryServer;
  #mode: MemoryMode;
  #uffd: boolean;
  #avoid: Set<Heuristic>;
  #statsEvery: number;
  #memories: GuestMemoryPool;

  constructor(o: AgentVmsOptions) {
    this.#o = o;
    o.data.route((req, url) => this.#serve(req, url));
    const host = o.dataAddress.slice(0, o.dataAddress.lastIndexOf(":"));
    this.#memoryServer = new MemoryServer(
      UnicastPageServer.listen({ hostname: "0.0.0.0", advertise: host }),
      o.multicast?.server,
    );
    this.#avoid = o.avoid ?? heuristicsFromEnv();
    this.#statsEvery = o.statsIntervalMs ?? 500;
    this.#memories = new GuestMemoryPool(o.spareMemories ?? 4);
    const uffd = isUserfaultfdAvailable();
    this.#uffd = uffd.ok;
    this.#mode = o.memory ?? memoryModeFromEnv();
    if (!uffd.ok) {
      o.logger.warn(
        `memory-on-demand unavailable: ${uffd.reason}; forks copy the parent's memory and ` +
          "clones fetch all of it before they run (eager)",
      );
      this.#mode = "eager";
    } else {
      // Parents' memories are write-protected on this thread's behalf at fork (shorter pause).
      prepareSnapshots();
      this.#snapshotsPrepared = true;
    }
  }

  #snapshotsPrepared = false;

  /** "lazy" or "eager": how this agent's clones get their memory. */
  get memoryMode(): MemoryMode {
    return this.#mode;
  }

  /** Answers a call from the master. */
  handle(call: MasterCall): Promise<unknown> {
    switch (call.method) {
      case "vm.start":
        return this.#start(call.params.vm, call.params.module, call.params.args, call.params.env);
      case "clone.start":
        return this.#startClones(call.params);
      case "vm.kill":
        return Promise.resolve(this.#kill(call.params.vm));
      case "vm.out":
        return this.#out(call.params.vm);
    }
  }

  async close(): Promise<void> {
    for (const vm of this.#vms.values()) vm.vm?.kill();
    await Promise.all([...this.#vms.values()].map((vm) => this.#closeMemtap(vm)));
    for (const served of this.#served.values()) clearInterval(served.timer);
    this.#served.clear();
    await this.#memoryServer.close();
    if (this.#snapshotsPrepared) releaseSnapshots();
    this.#snapshotsPrepared = false;
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
    return await prepareModuleOffThread(bytes, this.#o.cacheDir);
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
      hints: [],
    };
    this.#vms.set(id, vm);
    return vm;
  }

  #io(vm: Vm) {
    return {
      nice: this.#o.vmNice ?? DEFAULT_VM_NICE,
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

  #watch(vm: Vm, onExit?: () => Promise<void>): void {
    this.#event({ kind: "state", vm: vm.id, state: "running" });
    vm.vm!.exited.then(async (exit) => {
      await onExit?.();
      this.#forget(vm);
      if (vm.failure !== undefined) {
        this.#event({ kind: "state", vm: vm.id, state: "failed", reason: vm.failure });
      } else if (exit.kind === "exit") {
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

  /**
   * Drops what an ended VM held of memory (its guest memory, checkpoints); its record stays, for
   * /out. A fork it made keeps what it serves from (its snapshot) until its clones are gone.
   */
  #forget(vm: Vm): void {
    vm.ended = vm.vm && { memory: vm.vm.memory, reusable: vm.vm.threadDone };
    vm.vm = undefined;
    vm.checkpoints.clear();
    vm.hints = [];
    vm.lastDemand = undefined;
    this.#releaseMemory(vm);
  }

  /**
   * Gives the pages of an ended VM's memory back to the kernel once no fork of it is served.
   * Dropping the last reference is not enough: the memory goes only when the main thread and
   * every worker it was posted to have collected their garbage, which an agent's mostly idle
   * isolates do rarely (measured: each job left its 64 MiB parent memory resident). A clone's
   * memory goes back to the pool for the next clones.
   */
  #releaseMemory(vm: Vm): void {
    const ended = vm.ended;
    if (ended === undefined) return;
    for (const served of this.#served.values()) if (served.parent === vm) return;
    vm.ended = undefined;
    if (ended.reusable) this.#memories.give(ended.memory);
    else releasePages(ended.memory.buffer);
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
        // A fork is coming: its copy-on-write store is made now, outside the parent's pause.
        if (this.#uffd && vm.vm) Snapshot.reserveStore(vm.vm.memory);
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
        await this.#recordExits(vm, c, h);
        await this.#stopServing(t.fork.forkId);
        return c.members.filter((m) => m.state !== "exited" || m.exitCode !== 0).length;
      },
      kill: async (h) => {
        const t = vm.tickets.get(h);
        if (!t) return vm.isClone ? SF_ECLONE : SF_ENOTICKET;
        if (!t.fork) return SF_EINVAL;
        await agent.request({ method: "cluster.kill", params: { cluster: t.fork.plan.cluster } });
        await this.#stopServing(t.fork.forkId);
        return 0;
      },
      checkpoint: async (fork) => {
        await this.#completeMemory(vm);
        const handle = newHandle(vm.checkpoints);
        vm.checkpoints.set(handle, {
          memory: new Uint8Array(fork.memory.buffer).slice(0, fork.state.memoryPages * 65536),
          fork: fork.state,
        });
        return handle;
      },
      createClones: (ckpt, h) => {
        const c = vm.checkpoints.get(ckpt);
        if (!c) return Promise.resolve(SF_ENOCKPT);
        return this.#fork(vm, h, c.fork, c.memory, performance.now());
      },
      hintOverwrite: (ptr, len) => Promise.resolve(this.#hint(vm, ptr, len)),
    };
  }

  /**
   * Forks `vm` from a paused state: the master names the clones, the memory is
   * captured (copy-on-write), and the clones start from a descriptor. Resolves
   * (resuming the parent) once the memory is captured; the page map, the
   * memory server and the clones follow while the parent runs.
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
    // The master's answer and the capture overlap: both are inside the parent's pause.
    const asked = this.#o.agent.request({
      method: "fork.begin",
      params: { ticket: t.ticket, parentVm: vm.id },
    }) as Promise<ForkPlan>;
    asked.catch(() => {}); // awaited below, after the capture
    const captured = await this.#capture(vm, state, memory);
    let plan: ForkPlan;
    try {
      plan = await asked;
    } catch (e) {
      await captured.snapshot?.release();
      throw e;
    }
    const forkId = crypto.getRandomValues(new Uint8Array(16));
    const forkKey = crypto.getRandomValues(new Uint8Array(32));
    t.fork = { plan, forkId: toHex(forkId), forkKey: toHex(forkKey) };
    const hints = vm.hints;
    vm.hints = [];
    const pauseMs = performance.now() - pausedAt;
    setTimeout(() =>
      this.#dispatch(vm, plan, state, captured, { forkId, forkKey, t, hints }, pauseMs)
    );
    return 0;
  }

  /**
   * The parent's clone-time memory: a write-protected snapshot of the live
   * memory, or a copy where that cannot be (no userfaultfd, a checkpoint's
   * saved bytes, a memory grown since an earlier snapshot still served).
   */
  async #capture(
    vm: Vm,
    state: ForkPoint["state"],
    memory: WebAssembly.Memory | Uint8Array,
  ): Promise<{ reader: PageReader; snapshot?: Snapshot; bytes?: Uint8Array }> {
    if (memory instanceof Uint8Array) return { reader: copyReader(memory), bytes: memory };
    await this.#completeMemory(vm);
    if (this.#uffd) {
      try {
        // Protected off this thread: the master's answer to fork.begin arrives meanwhile.
        const snapshot = await Snapshot.captureAsync({ memory });
        return { reader: snapshot, snapshot };
      } catch (e) {
        this.#o.logger.warn("copy-on-write capture failed; copying the memory", {
          vm: vm.id,
          error: e,
        });
      }
    }
    const bytes = new Uint8Array(memory.buffer).slice(0, state.memoryPages * 65536);
    return { reader: copyReader(bytes), bytes };
  }

  async #dispatch(
    vm: Vm,
    plan: ForkPlan,
    state: ForkPoint["state"],
    captured: { reader: PageReader; snapshot?: Snapshot; bytes?: Uint8Array },
    ids: { forkId: Uint8Array; forkKey: Uint8Array; t: TicketHandle; hints: ByteRange[] },
    pauseMs: number,
  ): Promise<void> {
    try {
      const module = await this.#module(vm.moduleHash);
      const baseMap = captured.snapshot
        ? captured.snapshot.pageMap(state.heapTop)
        : pageMapOf(captured.bytes!, state.heapTop);
      const pageMap = applyHeuristics({
        baseMap,
        reader: captured.reader,
        pageSize: OS_PAGE,
        hints: ids.hints,
        avoid: this.#avoid,
      });
      this.#memoryServer.add({
        forkId: ids.forkId,
        key: ids.forkKey,
        pageSize: OS_PAGE,
        pageCount: pageMap.length,
        pageMap,
        reader: captured.reader,
        clones: plan.members.length,
        release: () => captured.snapshot?.release() ?? Promise.resolve(),
      });
      this.#memoryServer.push(ids.forkId, vm.lastDemand ?? []);
      const served: ServedFork = {
        forkId: ids.forkId,
        cluster: plan.cluster,
        parent: vm,
        snapshot: captured.snapshot,
        timer: setInterval(() => this.#reportFork(served), this.#statsEvery),
      };
      this.#served.set(toHex(ids.forkId), served);
      const descriptor = encodeDescriptor(toDescriptor(
        {
          forkId: ids.forkId,
          forkKey: ids.forkKey,
          memoryServer: this.#memoryServer.address,
          parentVm: vm.id,
          ticket: ids.t.ticket,
          clones: plan.members.length,
        },
        module,
        vm.moduleHash,
        state,
        pageMap,
      ));
      await this.#o.agent.request({
        method: "fork.dispatch",
        params: {
          cluster: plan.cluster,
          descriptor: toBase64(descriptor),
          pauseMs,
          resume: state.kind,
          ...(this.#memoryServer.multicastAddress
            ? { mcdist: this.#memoryServer.multicastAddress }
            : {}),
        },
      });
    } catch (e) {
      this.#o.logger.warn("fork dispatch failed", { cluster: plan.cluster, error: e });
    }
  }

  #reportFork(served: ServedFork): void {
    const stats = this.#memoryServer.stats(served.forkId);
    if (stats === undefined) return;
    const snap = served.snapshot?.stats();
    const t = stats.transport;
    const memory: ForkMemoryStats = {
      pages: stats.pages,
      pagesPresent: stats.pagesPresent,
      pagesServed: stats.pagesServed,
      pagesPushed: stats.pagesPushed,
      bytesSent: t.bytesSent,
      packetsSent: t.packetsSent,
      multicastBytes: t.multicastBytes,
      unicastBytes: t.bytesSent - t.multicastBytes,
      retransmits: t.retransmits,
      rejected: t.rejected,
      wpFaults: snap?.wpFaults ?? 0,
      pagesSaved: snap?.pagesSaved ?? 0,
    };
    this.#event({ kind: "fork-memory", cluster: served.cluster, stats: memory });
  }

  /** The fork's clones are all gone: report its last figures and free its snapshot. */
  async #stopServing(forkIdHex: string): Promise<void> {
    const served = this.#served.get(forkIdHex);
    if (served === undefined) return;
    this.#served.delete(forkIdHex);
    clearInterval(served.timer);
    this.#reportFork(served);
    const demand = this.#memoryServer.demandOrder(served.forkId);
    // Kept for the parent's next fork, if it is still running.
    if (demand.length > 0 && served.parent.vm !== undefined) served.parent.lastDemand = demand;
    await this.#memoryServer.remove(served.forkId);
    this.#releaseMemory(served.parent);
  }

  /**
   * sf_hint_overwrite: a lazy clone stops wanting the pages; a parent records them. With the
   * "hinted" heuristic off (SNOWFLOCK_AVOID) a clone's hint is ignored, as a parent's is.
   */
  #hint(vm: Vm, ptr: number, len: number): number {
    if (!this.#avoid.has("hinted")) return 0;
    const first = Math.ceil(ptr / OS_PAGE);
    const end = Math.floor((ptr + len) / OS_PAGE);
    if (vm.memtap !== undefined) {
      if (end > first) vm.memtap.memtap.hintOverwrite(first, end - first);
    } else if (!vm.isClone) {
      vm.hints.push({ start: ptr, end: ptr + len });
    }
    return 0;
  }

  /**
   * A lazy clone about to fork or checkpoint: fetch the rest of its memory and
   * end its memtap, so the host thread may read the memory (a fault there would
   * wait for the host thread itself) and the memory can be write-protected.
   */
  async #completeMemory(vm: Vm): Promise<void> {
    if (vm.memtap === undefined) return;
    await vm.memtap.memtap.fill();
    await this.#closeMemtap(vm);
  }

  async #closeMemtap(vm: Vm): Promise<void> {
    const tap = vm.memtap;
    if (tap === undefined) return;
    vm.memtap = undefined;
    tap.allowRefill();
    tap.pages.detach(tap.memtap);
    await tap.memtap.close();
    tap.pages.askAgain();
    await this.#releasePages(tap.fork);
  }

  /**
   * This host's page client for `fork`, shared by its clones of it (opened by the first user);
   * every user, whether or not the client opened, releases it once.
   */
  #acquirePages(
    fork: string,
    pageCount: number,
    openClient: () => Promise<PageClient>,
    pageFile: boolean,
  ): Promise<ForkPages> {
    let shared = this.#clientForks.get(fork);
    if (shared === undefined) {
      // Registered before any await so that the host's other clones of the fork share it.
      const pages = openClient().then((client) => new ForkPages(client, pageCount, { pageFile }));
      shared = { pages, users: 0 };
      this.#clientForks.set(fork, shared);
    }
    shared.users++;
    return shared.pages;
  }

  /** The last user of a fork's page client closes it. */
  async #releasePages(fork: string): Promise<void> {
    const shared = this.#clientForks.get(fork);
    if (shared === undefined || --shared.users > 0) return;
    this.#clientForks.delete(fork);
    const pages = await shared.pages.catch(() => undefined);
    await pages?.close();
  }

  async #startClones(
    { cluster, clones, descriptor: descriptorB64, resume, mcdist, local }: CloneStartParams,
  ): Promise<{ started: number }> {
    const d = decodeDescriptor(fromBase64(descriptorB64));
    if (d.kind !== "wasm") throw new Error(`Cannot start clones: a ${d.kind} descriptor`);
    const sourceHash = toHex(d.wasm.moduleHash);
    const fork = toHex(d.forkId);
    const access: ForkAccess = {
      forkId: d.forkId,
      key: d.forkKey,
      server: d.memoryServer,
      pageSize: d.pageSize,
      pageCount: d.pageMap.length,
    };
    // Clones on other hosts take mcdist when the parent offers it: a page sent for one of
    // them reaches all. Clones on the parent's host stay on local unicast.
    const mcdistServer = local ? undefined : mcdist || undefined;
    const viaMcdist = mcdistServer !== undefined;
    const openClient = (): Promise<PageClient> =>
      mcdistServer !== undefined
        ? this.#mcdistClient({ ...access, server: mcdistServer })
        : Promise.resolve(new UnicastPageClient(access));
    const eager = this.#mode === "eager"
      ? this.#eagerPages(fork, access, d.pageMap, openClient)
      : undefined;
    // Lazy clones: the host listens for the fork's pages before its first clone is made, so
    // that it misses nothing its siblings on other hosts fetch meanwhile (making VMs takes a
    // while, hosts start at different times, and a page missed is a page sent again).
    if (eager === undefined) {
      void this.#acquirePages(fork, access.pageCount, openClient, viaMcdist).catch(() => {});
    }
    try {
      const module = await this.#module(sourceHash);
      const state = { ...fromDescriptor(d, resume), moduleHash: module.hash };
      await Promise.all(clones.map(async ({ clone, vm: id }) => {
        const vm = await this.#newVm(id, sourceHash, true);
        vm.forkKey = toHex(d.forkKey);
        const mem = this.#memories.take(module, d.wasm.memory.pages);
        try {
          let stats: () => CloneMemoryStats;
          if (eager) {
            new Uint8Array(mem.buffer).set(await eager);
            stats = this.#eagerStats(d.pageMap, access);
          } else {
            stats = await this.#openMemtap(vm, fork, d.pageMap, mem, openClient, {
              access,
              unicast: !viaMcdist,
            });
          }
          vm.vm = await WasmVm.resume({
            module,
            memory: mem,
            forkPoint: state,
            returnValue: resume === "clone" ? clone : 0,
            cloneId: clone,
            ...this.#io(vm),
          });
          const report = () => this.#event({ kind: "memory", vm: id, stats: stats() });
          const timer = setInterval(report, this.#statsEvery);
          this.#watch(vm, async () => {
            clearInterval(timer);
            report();
            await this.#closeMemtap(vm);
          });
          this.#failOnMemoryLoss(vm);
        } catch (e) {
          await this.#closeMemtap(vm);
          this.#event({ kind: "state", vm: id, state: "failed", reason: (e as Error).message });
        }
      }));
    } finally {
      if (eager === undefined) await this.#releasePages(fork);
    }
    this.#eager.delete(fork);
    this.#o.logger.debug("clones started", { cluster, clones: clones.length, mode: this.#mode });
    return { started: clones.length };
  }

  /** An mcdist client of this host's configuration; unicast replies where multicast fails. */
  #mcdistClient(access: ForkAccess): Promise<PageClient> {
    const m = this.#o.multicast;
    return openMcdistClient(access, {
      ...(m ? { config: m.config, multicast: m.status.mode === "multicast" } : {}),
    });
  }

  /** The whole fork fetched once per host, for every eager clone of it here. */
  #eagerPages(
    fork: string,
    access: ForkAccess,
    pageMap: Uint8Array,
    openClient: () => Promise<PageClient>,
  ): Promise<Uint8Array> {
    let pages = this.#eager.get(fork);
    if (pages === undefined) {
      pages = (async () => {
        const client = await openClient();
        try {
          const bytes = new Uint8Array(access.pageCount * access.pageSize);
          await fetchAllPages(client, pageMap, bytes, access.pageSize);
          this.#eagerTransport.set(fork, client.stats());
          return bytes;
        } finally {
          await client.close();
        }
      })();
      this.#eager.set(fork, pages);
    }
    return pages;
  }

  #eagerTransport = new Map<string, TransportStats>();

  #eagerStats(pageMap: Uint8Array, access: ForkAccess): () => CloneMemoryStats {
    const marks = countMarks(pageMap);
    const t = this.#eagerTransport.get(toHex(access.forkId));
    const figures: CloneMemoryStats = {
      mode: "eager",
      faults: 0,
      pagesFetched: marks.present,
      pagesAvoided: {
        zero: marks.zero,
        untouched: marks.untouched,
        hinted: marks.hinted,
        free: marks.free,
      },
      pagesUnrequested: 0,
      bytesReceived: t?.bytesReceived ?? 0,
      multicastBytes: t?.multicastBytes ?? 0,
      unicastBytes: (t?.bytesReceived ?? 0) - (t?.multicastBytes ?? 0),
      retransmits: t?.retransmits ?? 0,
      faultP50Us: 0,
      faultP99Us: 0,
      stalledMs: 0,
    };
    return () => figures;
  }

  /** Empty the clone's memory and fill it on demand from the fork's shared page client. */
  async #openMemtap(
    vm: Vm,
    fork: string,
    pageMap: Uint8Array,
    memory: WebAssembly.Memory,
    openClient: () => Promise<PageClient>,
    route: { access: ForkAccess; unicast: boolean },
  ): Promise<() => CloneMemoryStats> {
    let pages: ForkPages;
    let memtap: Memtap;
    try {
      // mcdist clones map the host's page file of the fork (a page arrives once for all of
      // them); others resolve pages in their fault workers, which copy them in.
      pages = await this.#acquirePages(fork, pageMap.length, openClient, !route.unicast);
      const direct = this.#directRoute(fork, route);
      memtap = await Memtap.open({
        memory,
        pageMap,
        source: pages.source,
        hostAsked: pages.asked,
        fetchTimeoutMs: MEMTAP_FETCH_TIMEOUT_MS,
        retries: 1,
        ...direct,
        ...(direct.direct === undefined && pages.pageFile ? { backing: pages.pageFile } : {}),
      });
    } catch (e) {
      await this.#releasePages(fork);
      throw e;
    }
    pages.attach(memtap);
    vm.memtap = { memtap, fork, pages, allowRefill: deferRefill() };
    const opened = memtap.stats();
    this.#o.logger.debug("memtap open", {
      vm: vm.id,
      resolver: opened.resolver,
      ...(opened.directFailure ? { directFailure: opened.directFailure } : {}),
    });
    return () => {
      const m = memtap.stats();
      const t = pages.client.stats();
      return {
        mode: "lazy",
        faults: m.faults,
        pagesFetched: m.pagesFetched,
        pagesAvoided: m.pagesAvoided,
        pagesUnrequested: m.pagesInstalledUnrequested,
        // The host's client (shared by its clones of the fork) plus this clone's own connection.
        bytesReceived: t.bytesReceived + m.direct.bytesReceived,
        multicastBytes: t.multicastBytes,
        unicastBytes: t.bytesReceived - t.multicastBytes + m.direct.bytesReceived,
        retransmits: t.retransmits + m.pagesReRequested,
        faultP50Us: m.faultP50Us,
        faultP99Us: m.faultP99Us,
        stalledMs: m.stalledMs,
      };
    };
  }

  /**
   * How the clone's fault worker resolves PRESENT pages itself, with no main-thread hop: from
   * the parent's snapshot when this agent serves the fork (a clone on the parent's host), else
   * over its own connection to the unicast memory server. Clones fed by mcdist keep the page
   * client (pages arriving by multicast are installed by the main thread).
   */
  #directRoute(
    fork: string,
    route: { access: ForkAccess; unicast: boolean },
  ): { direct?: MemtapDirect } {
    const snapshot = this.#served.get(fork)?.snapshot;
    if (snapshot !== undefined) {
      try {
        return { direct: { kind: "snapshot", buffers: snapshot.sharedBuffers() } };
      } catch {
        // released or broken: fall through to the memory server
      }
    }
    return route.unicast ? { direct: { kind: "unicast", access: route.access } } : {};
  }

  /** A lazy clone whose pages cannot be fetched any more is failed, never left hanging. */
  #failOnMemoryLoss(vm: Vm): void {
    const tap = vm.memtap;
    if (tap === undefined) return;
    Promise.race([tap.memtap.failed, tap.pages.client.failed]).then(async (error) => {
      if (vm.memtap !== tap) return; // already completed or closed
      vm.failure = `memory-on-demand failed: ${error.message}`;
      this.#o.logger.warn("clone lost its memory server", { vm: vm.id, error: error.message });
      vm.vm?.kill();
      // The VM thread may be blocked in a page fault: unregistering wakes it so it can end.
      await this.#closeMemtap(vm);
    });
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

  /**
   * Writes each clone's end to /out/clone-<id>/.snowflock/exit.json, so a
   * guest can learn every clone's exit code (sf_join only counts failures);
   * the Python module's join() reads it.
   */
  async #recordExits(vm: Vm, c: ClusterView, handle: number): Promise<void> {
    await Promise.all(c.members.map(async (m) => {
      const dir = join(vm.outDir, `clone-${m.clone}`, ".snowflock");
      await Deno.mkdir(dir, { recursive: true });
      const record = {
        ticket: handle,
        state: m.state,
        exit_code: m.state === "exited" ? m.exitCode ?? null : null,
        reason: m.reason ?? null,
      };
      await Deno.writeTextFile(join(dir, "exit.json"), JSON.stringify(record) + "\n");
    }));
  }

  // ---- data plane ----

  async #serve(req: Request, url: URL): Promise<Response | undefined> {
    const m = /^\/v1\/vms\/([\w-]+)\/out$/.exec(url.pathname);
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

/** SNOWFLOCK_MEMORY=eager|lazy (default lazy), for embedded clusters (benchmarks). */
function memoryModeFromEnv(): MemoryMode {
  let mode: string | undefined;
  try {
    mode = Deno.env.get("SNOWFLOCK_MEMORY");
  } catch {
    mode = undefined; // no --allow-env: the default
  }
  return mode === "eager" ? "eager" : "lazy";
}

/** Pages of a copied memory. */
function copyReader(bytes: Uint8Array): PageReader {
  return {
    readPages: (first, count) => bytes.slice(first * OS_PAGE, (first + count) * OS_PAGE),
  };
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
