/**
 * `bench fault-latency`: memtap fault service time (fault read → page installed) with the memory
 * server on another namespace host, with the parent's snapshot in this process (a local clone),
 * and over loopback; and batched throughput (a whole memory fetched through memtap at once),
 * side by side in one run. Faults are resolved by the fault worker itself (memtap `direct`), as
 * the agent does; `source_*` figures time the old path through the main thread for comparison.
 */
import { toHex } from "../backend/wasm/fork_descriptor.ts";
import { ForkPages } from "../memory/fork_pages.ts";
import { Memtap, type MemtapDirect } from "../memory/memtap.ts";
import { PAGE_PRESENT } from "../memory/page_mark.ts";
import { Snapshot } from "../memory/snapshot.ts";
import { UnicastPageClient } from "../memory/unicast/client.ts";
import { createHosts, netnsAvailable } from "../netns/hosts.ts";

export interface FaultLatencyOptions {
  /** Pages touched one fault at a time. Default 2000. */
  faults?: number;
  /** Pages fetched in the batched run. Default 32768 (128 MiB). */
  batchPages?: number;
}

export interface FaultLatencyReport {
  /** Memory server on another namespace host; null where namespaces are unavailable. */
  p50_us: number | null;
  p99_us: number | null;
  /** A local clone: the parent's snapshot in this process, read by the fault worker. */
  local_p50_us: number;
  local_p99_us: number;
  /** Memory server in another process on this host, over loopback TCP. */
  loopback_p50_us: number;
  loopback_p99_us: number;
  /** Pages per second fetched and installed with batching from the loopback memory server. */
  pages_per_s: number;
  /**
   * CPU time per page of that batched run: the memory server's process (its worker reads, seals
   * and sends) and this one (the fault worker receives, checks and installs). Whichever side is
   * the larger bounds pages_per_s on a machine whose cores are busy elsewhere.
   */
  server_us_per_page: number;
  client_us_per_page: number;
  /** Pages per second installed with batching from a snapshot in this process. */
  local_pages_per_s: number;
  /** The previous path (fault worker → main thread → page client) over loopback. */
  source_p50_us: number;
  source_pages_per_s: number;
  note?: string;
}

const MAIN = new URL("./page_server_main.ts", import.meta.url).pathname;

export async function benchFaultLatency(o: FaultLatencyOptions = {}): Promise<FaultLatencyReport> {
  const faults = o.faults ?? 2000;
  const batch = o.batchPages ?? 32768;
  const pages = Math.max(faults, batch);
  const forkId = crypto.getRandomValues(new Uint8Array(16));
  const key = crypto.getRandomValues(new Uint8Array(32));
  const serve = [toHex(forkId), toHex(key), String(pages)];
  const deno = Deno.execPath();

  const local = new Deno.Command(deno, {
    args: ["run", "-A", MAIN, "127.0.0.1", ...serve],
    stdout: "piped",
  }).spawn();
  let remote: { p50: number; p99: number } | null = null;
  let note: string | undefined;
  try {
    const address = await firstLine(local.stdout);
    const unicast = (server: string): Via => ({ server, direct: true });
    const loopback = await faultRun(unicast(address), forkId, key, pages, faults);
    const throughput = await batchRun(unicast(address), forkId, key, pages, batch, local.pid);
    const viaSource: Via = { server: address, direct: false };
    const oldPath = await faultRun(viaSource, forkId, key, pages, faults);
    const oldThroughput = await batchRun(viaSource, forkId, key, pages, batch);
    const parent = snapshotParent(pages);
    let near: { p50: number; p99: number };
    let localThroughput: number;
    try {
      await parent.snapshot.ready;
      const via: Via = { server: address, direct: true, snapshot: parent.snapshot };
      near = await faultRun(via, forkId, key, pages, faults);
      localThroughput = (await batchRun(via, forkId, key, pages, batch)).pagesPerSecond;
    } finally {
      await parent.snapshot.release();
    }
    const available = netnsAvailable();
    if (available.ok) {
      await using net = await createHosts(1);
      const proc = net.spawn(0, [deno, "run", "-A", MAIN, net.hosts[0].address, ...serve]);
      const line = await proc.waitForLine(/^serving /);
      remote = await faultRun(unicast(line.slice("serving ".length)), forkId, key, pages, faults);
    } else {
      note = `no namespace host: ${available.reason}`;
    }
    return {
      p50_us: remote ? round(remote.p50) : null,
      p99_us: remote ? round(remote.p99) : null,
      local_p50_us: round(near.p50),
      local_p99_us: round(near.p99),
      loopback_p50_us: round(loopback.p50),
      loopback_p99_us: round(loopback.p99),
      pages_per_s: Math.round(throughput.pagesPerSecond),
      server_us_per_page: round(throughput.serverMicros / batch),
      client_us_per_page: round(throughput.clientMicros / batch),
      local_pages_per_s: Math.round(localThroughput),
      source_p50_us: round(oldPath.p50),
      source_pages_per_s: Math.round(oldThroughput.pagesPerSecond),
      ...(note ? { note } : {}),
    };
  } finally {
    local.kill();
    await local.status;
  }
}

async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("Cannot start the page server: it exited");
    text += value;
  }
  reader.releaseLock();
  return text.split("\n")[0].slice("serving ".length);
}

/** How the clone gets its pages: the worker itself (unicast or a snapshot), or the old path. */
interface Via {
  server: string;
  direct: boolean;
  snapshot?: Snapshot;
}

/** A parent memory of `pages` pages of 0x5a (as the page server's), captured copy-on-write. */
function snapshotParent(pages: number): { snapshot: Snapshot } {
  const memory = new WebAssembly.Memory({
    initial: Math.ceil(pages / 16),
    maximum: Math.ceil(pages / 16),
    shared: true,
  });
  new Uint8Array(memory.buffer).fill(0x5a);
  return { snapshot: Snapshot.capture({ memory }) };
}

async function openTap(via: Via, forkId: Uint8Array, key: Uint8Array, pages: number) {
  const server = via.server;
  const access = { forkId, key, server, pageSize: 4096, pageCount: pages };
  const client = new UnicastPageClient(access);
  const direct: MemtapDirect | undefined = !via.direct
    ? undefined
    : via.snapshot
    ? { kind: "snapshot", buffers: via.snapshot.sharedBuffers() }
    : { kind: "unicast", access };
  const fork = new ForkPages(client, pages);
  const memory = new WebAssembly.Memory({
    initial: Math.ceil(pages / 16),
    maximum: Math.ceil(pages / 16),
    shared: true,
  });
  const memtap = await Memtap.open({
    memory,
    pageMap: new Uint8Array(pages).fill(PAGE_PRESENT),
    source: fork.source,
    fetchTimeoutMs: 15_000,
    ...(direct ? { direct } : {}),
  });
  fork.attach(memtap);
  return {
    memory,
    memtap,
    close: async () => {
      fork.detach(memtap);
      await memtap.close();
      await client.close();
    },
  };
}

/** Touch `faults` pages one at a time from a worker; memtap times each fault. */
async function faultRun(
  via: Via,
  forkId: Uint8Array,
  key: Uint8Array,
  pages: number,
  faults: number,
): Promise<{ p50: number; p99: number }> {
  const tap = await openTap(via, forkId, key, pages);
  try {
    const worker = new Worker(new URL("./touch_worker.ts", import.meta.url), { type: "module" });
    const done = new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    worker.postMessage({ buffer: tap.memory.buffer, pages: faults });
    await done;
    worker.terminate();
    const s = tap.memtap.stats();
    if (via.direct && s.resolver === "source") {
      throw new Error(`Cannot measure direct faults: ${s.directFailure}`);
    }
    return { p50: s.faultP50Us, p99: s.faultP99Us };
  } finally {
    await tap.close();
  }
}

/**
 * Fetch `count` pages at once through memtap: pages per second, and the CPU time it took in
 * this process and in the memory server's (`serverPid`, 0 when it is not measured).
 */
async function batchRun(
  via: Via,
  forkId: Uint8Array,
  key: Uint8Array,
  pages: number,
  count: number,
  serverPid = 0,
): Promise<{ pagesPerSecond: number; serverMicros: number; clientMicros: number }> {
  const tap = await openTap(via, forkId, key, pages);
  try {
    const server0 = serverPid ? cpuMicros(serverPid) : 0;
    const client0 = cpuMicros(Deno.pid);
    const t0 = performance.now();
    await tap.memtap.fill();
    const seconds = (performance.now() - t0) / 1000;
    return {
      pagesPerSecond: count / seconds,
      serverMicros: serverPid ? cpuMicros(serverPid) - server0 : 0,
      clientMicros: cpuMicros(Deno.pid) - client0,
    };
  } finally {
    await tap.close();
  }
}

/** CPU time (µs) the live threads of process `pid` have used: /proc/<pid>/task/<tid>/schedstat. */
function cpuMicros(pid: number): number {
  let nanos = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      nanos += Number(
        Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0],
      );
    } catch { /* the thread ended meanwhile */ }
  }
  return nanos / 1000;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
