/**
 * `bench fault-latency`: memtap fault service time (fault read → page installed) with the memory
 * server on another namespace host and on this host, and batched throughput (a whole memory
 * fetched through memtap at once), side by side in one run.
 */
import { toHex } from "../backend/wasm/fork_descriptor.ts";
import { ForkPages } from "../memory/fork_pages.ts";
import { Memtap } from "../memory/memtap.ts";
import { PAGE_PRESENT } from "../memory/page_mark.ts";
import { UnicastPageClient } from "../memory/unicast/client.ts";
import { createHosts, netnsAvailable } from "../../tests/harness/netns.ts";

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
  local_p50_us: number;
  local_p99_us: number;
  /** Pages per second fetched and installed with batching (same host). */
  pages_per_s: number;
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
    const near = await faultRun(address, forkId, key, pages, faults);
    const throughput = await batchRun(address, forkId, key, pages, batch);
    const available = netnsAvailable();
    if (available.ok) {
      await using net = await createHosts(1);
      const proc = net.spawn(0, [deno, "run", "-A", MAIN, net.hosts[0].address, ...serve]);
      const line = await proc.waitForLine(/^serving /);
      remote = await faultRun(line.slice("serving ".length), forkId, key, pages, faults);
    } else {
      note = `no namespace host: ${available.reason}`;
    }
    return {
      p50_us: remote ? round(remote.p50) : null,
      p99_us: remote ? round(remote.p99) : null,
      local_p50_us: round(near.p50),
      local_p99_us: round(near.p99),
      pages_per_s: Math.round(throughput),
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

async function openTap(server: string, forkId: Uint8Array, key: Uint8Array, pages: number) {
  const client = new UnicastPageClient({ forkId, key, server, pageSize: 4096, pageCount: pages });
  const fork = new ForkPages(client);
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
  server: string,
  forkId: Uint8Array,
  key: Uint8Array,
  pages: number,
  faults: number,
): Promise<{ p50: number; p99: number }> {
  const tap = await openTap(server, forkId, key, pages);
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
    return { p50: s.faultP50Us, p99: s.faultP99Us };
  } finally {
    await tap.close();
  }
}

/** Fetch `count` pages at once through memtap; pages per second. */
async function batchRun(
  server: string,
  forkId: Uint8Array,
  key: Uint8Array,
  pages: number,
  count: number,
): Promise<number> {
  const tap = await openTap(server, forkId, key, pages);
  try {
    const t0 = performance.now();
    await tap.memtap.fill();
    return count / ((performance.now() - t0) / 1000);
  } finally {
    await tap.close();
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
