/**
 * The agent side of the xen backend: the same shape as AgentVms (`handle(call:
 * MasterCall)`), so `snowflock agent --backend xen` can hand master calls to it.
 *
 *   vm.start     fetch the guest image (a manifest, see manifest.ts), `xl create`
 *   clone.start  answered at once (a restore takes tens of seconds under emulation,
 *                longer than the master waits for a reply); then, in the background and
 *                one fork at a time: take the fork's PRESENT pages (on the parent's host,
 *                the capture itself; elsewhere fetched from the parent host's memory
 *                server through the transport seam, unicast or mcdist), write one
 *                restore image, restore each clone paused, give it its identity in
 *                XenStore, unpause, and report each clone `running` (or `failed`)
 *   vm.kill      `xl destroy`;  vm.out  (Xen guests have no /out: empty)
 *
 * Guests call sf_* through XenStore (channel.ts); each call becomes a control-plane
 * call to the master (ticket.request, fork.begin, fork.dispatch, cluster.join,
 * cluster.kill). A malformed request gets EINVAL and the agent keeps serving.
 *
 * @module
 */
import type { Agent } from "../../control/agent.ts";
import type {
  CloneMemoryStats,
  CloneStartParams,
  ClusterView,
  ForkDispatchParams,
  ForkPlan,
  MasterCall,
  TicketView,
  VmEvent,
} from "../../control/messages.ts";
import {
  decodeAnyDescriptor,
  encodeDescriptor,
  type XenDescriptor,
} from "../../descriptor/format.ts";
import { PAGE_PRESENT, PAGE_UNTOUCHED, PAGE_ZERO } from "../../descriptor/page_map.ts";
import type { Logger } from "../../log.ts";
import { fetchAllPages } from "../../memory/eager.ts";
import { MemoryServer } from "../../memory/server.ts";
import {
  emptyStats,
  type ForkAccess,
  type PageClient,
  type PushingPageServer,
} from "../../memory/transport.ts";
import { type McdistConfig, type McdistStatus, openMcdistClient } from "../../mcdist/mod.ts";
import { UnicastPageClient } from "../../memory/unicast/client.ts";
import { UnicastPageServer } from "../../memory/unicast/server.ts";
import { ForeignMemory } from "../../../native/xen/foreignmemory.ts";
import { XenCtrl } from "../../../native/xen/xenctrl.ts";
import { toHex } from "../wasm/fork_descriptor.ts";
import { XenStore } from "../../../native/xen/xenstore.ts";
import { SHUTDOWN } from "../../../native/xen/layouts.ts";
import { captureGuest } from "./capture.ts";
import {
  CLONE_ID_KEY,
  formatReply,
  type GuestRequest,
  parseRequest,
  REPLY_KEY,
  REQUEST_KEY,
  SF,
} from "./channel.ts";
import { type CloneIdentity, cloneIdentity, RestoreImage } from "./clone.ts";
import { decodeManifest, xlConfig } from "./manifest.ts";
import { domid as xlDomid, xl } from "./xl.ts";

export interface XenAgentOptions {
  agent: Pick<Agent, "request" | "event">;
  /** The master's host:port and token, to fetch guest images. */
  master: string;
  token: string;
  /** This host's address as other hosts reach it (the memory server binds here). */
  advertiseHost: string;
  /** xl configs, FIFOs. */
  workDir: string;
  logger: Logger;
  /** Where xenconsoled writes guest-<name>.log (xenconsoled --log=guest). */
  consoleDir?: string;
  /** mcdist, for clones on other hosts; absent: unicast (TCP) for every clone. */
  multicast?: { server: PushingPageServer; status: McdistStatus; config: McdistConfig };
}

interface FetchedPages {
  pages: Map<number, Uint8Array>;
  /** Pages that crossed the network (0 for a fork captured on this host). */
  count: number;
  local: boolean;
  ms: number;
  stats: ReturnType<PageClient["stats"]>;
}

interface Vm {
  id: string;
  domid: number;
  isClone: boolean;
  tickets: Map<string, { granted: number; cluster?: string; forkId?: Uint8Array }>;
  lastSeq?: string;
  consoleOffset: number;
  exitCode?: number;
  done: boolean;
}

export class XenAgentVms {
  #o: XenAgentOptions;
  #vms = new Map<string, Vm>();
  #xs = new XenStore();
  #watchXs = new XenStore();
  #xc = new XenCtrl();
  #foreign = new ForeignMemory();
  #server: MemoryServer;
  /**
   * Capture stores by parent vm, made when the parent asks for a ticket: its fork's copy then
   * lands in memory already in place (first touches of fresh memory cost seconds per 128 MiB
   * under emulation, inside the parent's pause).
   */
  #stores = new Map<string, Uint8Array<SharedArrayBuffer>>();
  /** Pages of the forks captured here, by fork id: clones on this host read them in place. */
  #captured = new Map<string, Map<number, Uint8Array>>();
  #timer: ReturnType<typeof setInterval>;
  #closed = false;
  /** Clone restores, one fork after another (memory in dom0 is tight; xl is slow). */
  #restores: Promise<void> = Promise.resolve();
  /** Clones killed before their restore finished. */
  #cancelled = new Set<string>();
  /** Figures of the last fork and clone start, for labs and status. */
  readonly figures: {
    pauseMs?: number;
    descriptorBytes?: number;
    guestMemoryBytes?: number;
    pagesPresent?: number;
    pagesAvoided?: number;
    /** Pages the capture read from the paused parent through foreign mappings. */
    pagesForeign?: number;
    foreignMismatches?: number;
    cloneReadyMs?: number;
  } = {};

  constructor(o: XenAgentOptions) {
    this.#o = o;
    this.#server = new MemoryServer(
      UnicastPageServer.listen({ hostname: "0.0.0.0", advertise: o.advertiseHost }),
      o.multicast?.server,
    );
    this.#timer = setInterval(() => this.#poll(), 500);
    this.#watchLoop();
  }

  get memoryServer(): string {
    return this.#server.address;
  }

  handle(call: MasterCall): Promise<unknown> {
    switch (call.method) {
      case "vm.start":
        return this.#start(call.params.vm, call.params.module);
      case "clone.start":
        return this.#startClones(call.params);
      case "vm.kill":
        return this.#kill(call.params.vm).then(() => ({ killed: true }));
      case "vm.out":
        return Promise.resolve({ files: [] });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#server.close();
    this.#captured.clear();
    this.#foreign.close();
  }

  // ---- VMs ----

  async #start(id: string, moduleHash: string): Promise<{ started: true; domid: number }> {
    const res = await fetch(`http://${this.#o.master}/v1/modules/${moduleHash}`, {
      headers: { authorization: `Bearer ${this.#o.token}` },
    });
    if (!res.ok) {
      throw new Error(`Cannot fetch guest image ${moduleHash.slice(0, 12)}: HTTP ${res.status}`);
    }
    const manifest = decodeManifest(new Uint8Array(await res.arrayBuffer()));
    if (!manifest) {
      throw new Error(
        `Cannot start ${id}: module ${moduleHash.slice(0, 12)} is not a Xen guest image`,
      );
    }
    const cfg = `${this.#o.workDir}/${id}.cfg`;
    await Deno.writeTextFile(cfg, xlConfig(id, manifest));
    await xl(["create", "-e", cfg], 300_000);
    const dom = await xlDomid(id);
    if (dom === undefined) throw new Error(`Cannot find domain ${id} after xl create`);
    this.#adopt(id, dom, false);
    this.#event({ kind: "state", vm: id, state: "running" });
    return { started: true, domid: dom };
  }

  #adopt(id: string, domid: number, isClone: boolean): Vm {
    const vm: Vm = { id, domid, isClone, tickets: new Map(), consoleOffset: 0, done: false };
    this.#vms.set(id, vm);
    // The token names the VM; the watch fires once at once, then on every guest write.
    this.#watchXs.watch(`/local/domain/${domid}/${REQUEST_KEY}`, id);
    return vm;
  }

  async #kill(id: string): Promise<void> {
    const vm = this.#vms.get(id);
    if (!vm) {
      this.#cancelled.add(id);
      return;
    }
    if (vm.done) return;
    await this.#finish(vm, "killed");
  }

  async #finish(vm: Vm, state: "exited" | "failed" | "killed", reason?: string): Promise<void> {
    if (vm.done) return;
    vm.done = true;
    this.#stores.delete(vm.id);
    await this.#drainConsole(vm);
    try {
      this.#watchXs.unwatch(`/local/domain/${vm.domid}/${REQUEST_KEY}`, vm.id);
    } catch { /* gone with the domain */ }
    // Reported before the (slow) destroy: a parent's sf_join waits for this event.
    this.#event({
      kind: "state",
      vm: vm.id,
      state,
      ...(state === "exited" ? { exitCode: vm.exitCode ?? 0 } : {}),
      ...(reason ? { reason } : {}),
    });
    await xl(["destroy", vm.id], 60_000).catch(() => {});
  }

  /** Domain states and console output, twice a second. */
  async #poll(): Promise<void> {
    if (this.#closed) return;
    const live = new Map(this.#xc.domains(0, 1024).map((d) => [d.domid, d]));
    for (const vm of this.#vms.values()) {
      if (vm.done) continue;
      await this.#drainConsole(vm);
      const d = live.get(vm.domid);
      if (!d) await this.#finish(vm, "exited");
      else if (d.shutdownReason !== undefined && d.shutdownReason !== SHUTDOWN.suspend) {
        await this.#finish(
          vm,
          d.shutdownReason === SHUTDOWN.crash ? "failed" : "exited",
          d.shutdownReason === SHUTDOWN.crash ? "the guest crashed" : undefined,
        );
      }
    }
  }

  async #drainConsole(vm: Vm): Promise<void> {
    const path = `${this.#o.consoleDir ?? "/var/log/xen/console"}/guest-${vm.id}.log`;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      return;
    }
    const end = text.lastIndexOf("\n") + 1;
    if (end <= vm.consoleOffset) return;
    for (const line of text.slice(vm.consoleOffset, end).split("\n").slice(0, -1)) {
      this.#event({ kind: "output", vm: vm.id, stream: "stdout", line: line.replace(/\r$/, "") });
    }
    vm.consoleOffset = end;
  }

  #event(e: VmEvent): void {
    this.#o.agent.event(e);
  }

  // ---- the guest channel ----

  async #watchLoop(): Promise<void> {
    while (!this.#closed) {
      let ev;
      try {
        ev = await this.#watchXs.readWatch();
      } catch (e) {
        this.#o.logger.warn("xenstore watch failed", { error: e });
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      const vm = this.#vms.get(ev.token);
      if (vm && !vm.done) this.#onRequest(vm);
    }
  }

  #onRequest(vm: Vm): void {
    const home = `/local/domain/${vm.domid}`;
    const text = this.#xs.read(`${home}/${REQUEST_KEY}`);
    if (text === undefined || text === "") return;
    const parsed = parseRequest(text);
    const seq = parsed.ok ? parsed.request.seq : parsed.seq;
    if (seq === vm.lastSeq) return;
    vm.lastSeq = seq;
    const reply = (rc: number, value?: string | number) => {
      try {
        this.#xs.write(`${home}/${REPLY_KEY}`, formatReply(seq, rc, value));
      } catch (e) {
        this.#o.logger.warn("cannot reply to guest", { vm: vm.id, error: e });
      }
    };
    if (!parsed.ok) {
      this.#o.logger.warn("malformed guest request", { vm: vm.id, reason: parsed.reason });
      reply(parsed.code, parsed.reason.replace(/\s+/g, "_").slice(0, 100));
      return;
    }
    this.#serveRequest(vm, parsed.request).then(
      ([rc, value]) => reply(rc, value),
      (e) => {
        this.#o.logger.warn("guest request failed", { vm: vm.id, op: parsed.request.op, error: e });
        reply(SF.EIO, String((e as Error).message).replace(/\s+/g, "_").slice(0, 100));
      },
    );
  }

  async #serveRequest(vm: Vm, r: GuestRequest): Promise<[number, string | number | undefined]> {
    const agent = this.#o.agent;
    switch (r.op) {
      case "ticket": {
        const t = await agent.request({
          method: "ticket.request",
          params: { slots: r.slots, owner: vm.id },
        }) as TicketView;
        if (t.granted === 0) return [SF.ENOSLOTS, undefined];
        vm.tickets.set(t.id, { granted: t.granted });
        setTimeout(() => this.#makeStore(vm), 0); // after the answer: the guest need not wait
        return [0, `${t.id} ${t.granted}`];
      }
      case "clone":
        return await this.#fork(vm, r.ticket);
      case "join": {
        const t = vm.tickets.get(r.ticket);
        if (!t?.cluster) return [SF.ENOTICKET, undefined];
        const c = await agent.request(
          { method: "cluster.join", params: { cluster: t.cluster } },
          24 * 3600_000,
        ) as ClusterView;
        if (t.forkId) this.#releaseFork(t.forkId);
        vm.tickets.delete(r.ticket);
        const failed = c.members.filter((m) => m.state === "failed").length;
        const exited = c.members.filter((m) => m.state === "exited").length;
        return [failed > 0 ? SF.ECLONE : 0, `exited=${exited} failed=${failed}`];
      }
      case "kill": {
        const t = vm.tickets.get(r.ticket);
        if (!t?.cluster) return [SF.ENOTICKET, undefined];
        await agent.request({ method: "cluster.kill", params: { cluster: t.cluster } });
        return [0, undefined];
      }
      case "exit":
        vm.exitCode = r.code;
        // Answer first, so the guest's sf exits cleanly (and its last console lines reach
        // the log); the domain goes right after, unless it powered off by itself first.
        setTimeout(() => this.#finish(vm, "exited"), 1000);
        return [0, undefined];
    }
  }

  /** The parent is waiting in sf_clone: name the clones, capture, answer 0, dispatch. */
  async #fork(vm: Vm, ticket: string): Promise<[number, number]> {
    const t = vm.tickets.get(ticket);
    if (!t) return [SF.ENOTICKET, 0];
    if (t.cluster) return [SF.EINVAL, 0];
    const t0 = performance.now();
    const plan = await this.#o.agent.request({
      method: "fork.begin",
      params: { ticket, parentVm: vm.id },
    }) as ForkPlan;
    t.cluster = plan.cluster;
    const t1 = performance.now();
    const home = `/local/domain/${vm.domid}`;
    const xenstore = [...this.#xs.dump(home)].filter(([k]) => !k.startsWith("device/"));
    const t2 = performance.now();
    const cap = await captureGuest(
      vm.id,
      { domid: vm.domid, foreign: this.#foreign, unpause: (d) => this.#xc.unpause(d) },
      { tmpDir: this.#o.workDir, xenstore, ...this.#takeStore(vm) },
    );
    if (cap.counts.foreignMismatches > 0) {
      // The p2m was misread: clones would run on the wrong memory.
      this.#o.logger.error("xen fork capture inconsistent", { vm: vm.id, ...cap.counts });
      return [SF.EINVAL, 0];
    }
    const t3 = performance.now();
    const forkId = crypto.getRandomValues(new Uint8Array(16));
    const forkKey = crypto.getRandomValues(new Uint8Array(32));
    t.forkId = forkId;
    const d: XenDescriptor = {
      kind: "xen",
      forkId,
      forkKey,
      memoryServer: this.#server.address,
      parentVm: vm.id,
      ticket,
      clones: plan.members.length,
      pageSize: 4096,
      pageMap: cap.pageMap,
      inlinePages: [],
      xen: cap.body,
    };
    const bytes = encodeDescriptor(d);
    const memory = cap.memory;
    this.#captured.set(toHex(forkId), cap.image.pages);
    this.#server.add({
      forkId,
      key: forkKey,
      pageSize: 4096,
      pageCount: cap.pageMap.length,
      pageMap: cap.pageMap,
      clones: plan.members.length,
      release: () => Promise.resolve(),
      reader: {
        readPages: (first, count) => memory.slice(first * 4096, (first + count) * 4096),
        // Served as it is by the memory server's threads: no second copy of the fork.
        shared: { source: { kind: "image", bytes: memory.buffer }, read: new SharedArrayBuffer(8) },
      },
    });
    Object.assign(this.figures, {
      pauseMs: cap.pauseMs,
      descriptorBytes: bytes.length,
      guestMemoryBytes: cap.pageMap.length * 4096,
      pagesPresent: cap.counts.present,
      pagesAvoided: cap.counts.zero + cap.counts.absent,
      pagesForeign: cap.counts.foreign,
      foreignMismatches: cap.counts.foreignMismatches,
    });
    this.#o.logger.info("xen fork captured", {
      vm: vm.id,
      pauseMs: Math.round(cap.pauseMs),
      descriptorBytes: bytes.length,
      ...cap.counts,
      beginMs: Math.round(t1 - t0),
      xenstoreMs: Math.round(t2 - t1),
      saveMs: Math.round(cap.phases?.saveMs ?? 0),
      readMs: Math.round(cap.phases?.readMs ?? 0),
      copyMs: Math.round(cap.phases?.copyMs ?? 0),
      describeMs: Math.round(cap.phases?.describeMs ?? 0),
      encodeMs: Math.round(performance.now() - t3),
    });
    // The parent already runs again; the clones start on their hosts in the background.
    this.#dispatch({
      cluster: plan.cluster,
      descriptor: toBase64(bytes),
      pauseMs: cap.pauseMs,
      resume: "clone",
      ...(this.#multicastPays(plan) ? { mcdist: this.#server.multicastAddress } : {}),
    });
    return [0, 0];
  }

  /**
   * Whether the fork's clones on other hosts should fetch by mcdist. Xen clones fetch the whole
   * fork before they run: multicast pays once several hosts take the same pages; to one host a
   * TCP stream costs far less per page than datagrams (lab, 15.7k pages to one dom0 under
   * emulation: unicast 9 s, mcdist over 3 min).
   */
  #multicastPays(plan: ForkPlan): boolean {
    const hosts = new Set(plan.members.map((m) => m.dataAddress.replace(/:\d+$/, "")));
    hosts.delete(this.#o.advertiseHost);
    return this.#server.multicastAddress !== undefined && hosts.size >= 2;
  }

  /** fork.dispatch, retried while the master connection is re-established. */
  async #dispatch(
    params: ForkDispatchParams,
  ): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        await this.#o.agent.request({ method: "fork.dispatch", params }, 600_000);
        return;
      } catch (e) {
        if (attempt >= 20 || !/not connected/.test(String((e as Error).message))) {
          this.#o.logger.warn("fork dispatch failed", { cluster: params.cluster, error: e });
          return;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /**
   * clone.start: checks the descriptor and answers at once; the clones are restored in
   * the background (after any earlier fork's) and each reports `running` or `failed`.
   */
  #startClones(
    { cluster, clones, descriptor, mcdist, local }: CloneStartParams,
  ): Promise<{ started: number }> {
    let d;
    try {
      d = decodeAnyDescriptor(fromBase64(descriptor));
    } catch (e) {
      return Promise.reject(e);
    }
    if (d.kind !== "xen") {
      return Promise.reject(new Error(`Cannot start ${d.kind} clones on a xen agent`));
    }
    // Clones on other hosts take mcdist when the parent offers it; on the parent's host they
    // read the capture in place.
    const route = mcdist && !local ? mcdist : undefined;
    const job = this.#restores.then(() => this.#restoreClones(cluster, clones, d, route));
    this.#restores = job.catch(() => {});
    return Promise.resolve({ started: clones.length });
  }

  async #restoreClones(
    cluster: string,
    clones: { clone: number; vm: string }[],
    d: XenDescriptor,
    mcdist: string | undefined,
  ): Promise<void> {
    const t0 = performance.now();
    const log = this.#o.logger;
    let fetched: FetchedPages;
    try {
      fetched = this.#localPages(d) ?? await this.#fetchPages(d, mcdist);
    } catch (e) {
      log.warn("xen clone pages failed", { cluster, error: e });
      for (const { vm } of clones) {
        this.#event({
          kind: "state",
          vm,
          state: "failed",
          reason: `Cannot fetch the fork's memory: ${(e as Error).message}`,
        });
      }
      return;
    }
    log.info("xen clone pages fetched", {
      cluster,
      pages: fetched.count,
      local: fetched.local,
      ms: Math.round(fetched.ms),
    });
    const seq = (d.xen.xenstore.find(([k]) => k === REQUEST_KEY)?.[1] ?? "0").split(" ")[0];
    const zero = d.pageMap.filter((m) => m === PAGE_ZERO).length;
    const untouched = d.pageMap.filter((m) => m === PAGE_UNTOUCHED).length;
    // One restore at a time: under emulation two in parallel are no faster, and memory is tight.
    let image: RestoreImage | undefined;
    try {
      for (const { clone, vm: id } of clones) {
        if (this.#cancelled.delete(id) || this.#closed) {
          this.#event({ kind: "state", vm: id, state: "killed", reason: "killed before it ran" });
          continue;
        }
        await this.#restoreClone(cluster, d, { clone, id }, {
          image: async (identity) =>
            image ??= await RestoreImage.write(
              d,
              (pfn) => fetched.pages.get(pfn)!,
              identity,
              this.#o.workDir,
            ),
          seq,
          t0,
          stats: { ...fetched, zero, untouched },
        });
      }
    } finally {
      await image?.remove();
    }
  }

  /** Restores one clone from the fork's image, gives it its identity, and runs it. */
  async #restoreClone(
    cluster: string,
    d: XenDescriptor,
    { clone, id }: { clone: number; id: string },
    o: {
      image: (first: CloneIdentity) => Promise<RestoreImage>;
      seq: string;
      t0: number;
      stats: FetchedPages & { zero: number; untouched: number };
    },
  ): Promise<void> {
    const log = this.#o.logger;
    const fetched = o.stats;
    try {
      const identity = cloneIdentity(d, id, clone);
      const r = await (await o.image(identity)).restore(identity);
      const home = `/local/domain/${r.domid}`;
      for (const [k, v] of d.xen.xenstore) {
        if (k.startsWith("data/") && !k.startsWith("data/snowflock/")) {
          this.#xs.write(`${home}/${k}`, v);
        }
      }
      this.#xs.write(`${home}/${CLONE_ID_KEY}`, String(clone));
      this.#xs.write(`${home}/${REPLY_KEY}`, formatReply(o.seq, 0, clone));
      const vm = this.#adopt(id, r.domid, true);
      vm.lastSeq = o.seq;
      if (this.#cancelled.delete(id)) {
        await this.#finish(vm, "killed", "killed before it ran");
        return;
      }
      await xl(["unpause", id], 60_000);
      this.figures.cloneReadyMs = performance.now() - o.t0;
      log.info("xen clone running", {
        cluster,
        clone,
        vm: id,
        domid: r.domid,
        restoreMs: Math.round(r.ms),
        readyMs: Math.round(performance.now() - o.t0),
      });
      this.#event({ kind: "state", vm: id, state: "running" });
      const stats: CloneMemoryStats = {
        mode: "eager",
        faults: 0,
        pagesFetched: fetched.count,
        pagesAvoided: { zero: fetched.zero, untouched: fetched.untouched, hinted: 0, free: 0 },
        pagesUnrequested: 0,
        bytesReceived: fetched.stats.bytesReceived,
        multicastBytes: fetched.stats.multicastBytes,
        unicastBytes: fetched.stats.bytesReceived - fetched.stats.multicastBytes,
        retransmits: fetched.stats.retransmits,
        faultP50Us: 0,
        faultP99Us: 0,
        stalledMs: fetched.ms,
      };
      this.#event({ kind: "memory", vm: id, stats });
    } catch (e) {
      log.warn("xen clone failed", { cluster, clone, error: e });
      this.#event({ kind: "state", vm: id, state: "failed", reason: (e as Error).message });
    }
  }

  /** A capture store for `vm`'s next fork, its pages touched so they are in memory. */
  #makeStore(vm: Vm): void {
    if (this.#stores.has(vm.id) || vm.done) return;
    try {
      const bytes = Number(this.#xc.maximumGpfn(vm.domid) + 1n) * 4096;
      const store = new Uint8Array(new SharedArrayBuffer(bytes));
      // One write per page faults it in (the kernel zero-fills it).
      for (let i = 0; i < bytes; i += 4096) store[i] = 0;
      this.#stores.set(vm.id, store);
    } catch (e) {
      this.#o.logger.debug("xen capture store not made", { vm: vm.id, error: e });
    }
  }

  #takeStore(vm: Vm): { store?: Uint8Array<SharedArrayBuffer> } {
    const store = this.#stores.get(vm.id);
    this.#stores.delete(vm.id);
    return store ? { store } : {};
  }

  /** Stops serving a fork and drops its captured pages (its clones are gone). */
  #releaseFork(forkId: Uint8Array): void {
    this.#captured.delete(toHex(forkId));
    this.#server.remove(forkId).catch((e) =>
      this.#o.logger.warn("xen fork release failed", { error: e })
    );
  }

  /** A fork captured on this host: its clones here read the parent's pages in place. */
  #localPages(d: XenDescriptor): FetchedPages | undefined {
    const pages = this.#captured.get(toHex(d.forkId));
    if (pages === undefined) return undefined;
    return { pages, count: 0, local: true, ms: 0, stats: emptyStats() };
  }

  /**
   * Every PRESENT page of the fork, through the transport seam, before any clone runs (the
   * wasm backend's eager fetch): mcdist when the parent offers it, else unicast.
   */
  async #fetchPages(d: XenDescriptor, mcdist: string | undefined): Promise<FetchedPages> {
    const t0 = performance.now();
    const access: ForkAccess = {
      forkId: d.forkId,
      key: d.forkKey,
      server: d.memoryServer,
      pageSize: d.pageSize,
      pageCount: d.pageMap.length,
    };
    const m = this.#o.multicast;
    // Generous: dom0s under emulation stall for seconds.
    const client: PageClient = mcdist
      ? await openMcdistClient({ ...access, server: mcdist }, {
        ...(m ? { config: m.config, multicast: m.status.mode === "multicast" } : {}),
        failAfterMs: 60_000,
        maxTimeoutMs: 2_000,
      })
      : new UnicastPageClient(access, { idleTimeoutMs: 60_000, retries: 8 });
    try {
      // Pages the fork does not send stay untouched here and cost no memory.
      const memory = new Uint8Array(d.pageMap.length * d.pageSize);
      const count = await fetchAllPages(client, d.pageMap, memory, d.pageSize);
      const pages = new Map<number, Uint8Array>();
      d.pageMap.forEach((mark, pfn) => {
        if (mark === PAGE_PRESENT) pages.set(pfn, memory.subarray(pfn * 4096, (pfn + 1) * 4096));
      });
      return { pages, count, local: false, ms: performance.now() - t0, stats: client.stats() };
    } finally {
      await client.close();
    }
  }
}

function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

/** Re-exported so the lab and `status` can say whether lazy memory (paging) exists here. */
export { domidOf };
async function domidOf(name: string): Promise<number | undefined> {
  return await xlDomid(name);
}
