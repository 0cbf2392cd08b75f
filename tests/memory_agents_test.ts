/**
 * Memory-on-demand through real agents (embedded master + agents on loopback): clone-time
 * contents while the parent writes, pages that must never cross the network, a vanished
 * memory server, and the eager fallback without userfaultfd.
 */
import assert from "node:assert/strict";
import { runJob } from "../lib/cli/run_job.ts";
import { MasterClient } from "../lib/control/client.ts";
import { type EmbeddedCluster, startEmbeddedCluster } from "../lib/control/embedded.ts";
import type { ClusterView } from "../lib/control/messages.ts";
import { createLogger } from "../lib/log.ts";
import { NO_UFFD_ENV } from "../lib/memory/availability.ts";
import { testGuest } from "./guests.ts";
import { tempDir } from "./harness/temp_dir.ts";

const DATA = 1500;
const ZERO = 400;
const HINT = 300;

async function withCluster(
  hosts: number,
  fn: (cluster: EmbeddedCluster, client: MasterClient, logs: string[]) => Promise<void>,
): Promise<void> {
  const logs: string[] = [];
  const logger = createLogger("test", { quiet: true, sink: (line: string) => logs.push(line) });
  await using data = await tempDir("sf-memory-test");
  const cluster = await startEmbeddedCluster({
    hosts,
    slotsPerHost: 2,
    dataDir: data.path,
    logger,
  });
  try {
    await fn(cluster, new MasterClient(cluster.master.address, cluster.master.token), logs);
  } finally {
    await cluster.close();
  }
}

async function runGuest(client: MasterClient, args: string[]) {
  const lines = new Map<number, string[]>();
  const r = await runJob({
    client,
    wasmPath: await testGuest("memory_check"),
    args,
    onLine: (clone, _s, line) => lines.set(clone, [...(lines.get(clone) ?? []), line]),
  });
  const cluster = (await client.status()).clusters.find((c) => c.parentVm === r.vm.id)!;
  return { exitCode: r.exitCode, lines, cluster };
}

function checkedOk(lines: Map<number, string[]>, clones: number): void {
  for (let id = 1; id <= clones; id++) {
    assert.ok(
      lines.get(id)?.includes(`clone ${id} checked ok bad=0`),
      `clone ${id}: ${lines.get(id)?.join("\n")}`,
    );
  }
}

Deno.test("memory: lazy clones read clone-time contents while the parent writes; zero and hinted pages never cross the network", async () => {
  await withCluster(3, async (_cluster, client) => {
    const seed = 1 + Math.floor(Math.random() * 1e6);
    const r = await runGuest(client, ["4", String(DATA), String(ZERO), String(HINT), String(seed)]);
    assert.equal(r.exitCode, 0, JSON.stringify([...r.lines]));
    checkedOk(r.lines, 4);
    const c: ClusterView = r.cluster;
    for (const m of c.members) {
      assert.equal(m.memory?.mode, "lazy");
      assert.ok(m.memory!.pagesAvoided.zero >= ZERO - 1, JSON.stringify(m.memory));
      assert.ok(m.memory!.pagesAvoided.hinted >= HINT - 1, JSON.stringify(m.memory));
    }
    const hostsWithClones = new Set(c.members.map((m) => m.host)).size;
    const fork = c.memory!;
    assert.ok(fork.wpFaults > 0, "the parent's writes went through copy-on-write");
    // Each host fetches the data pages once at most (plus the guest's own few pages): zero
    // and hinted pages (ZERO + HINT more per host) never travelled.
    assert.ok(fork.pagesServed <= hostsWithClones * (DATA + 64), JSON.stringify(fork));
    assert.ok(fork.bytesSent < hostsWithClones * (DATA + 64) * 4096 * 1.05, JSON.stringify(fork));
  });
});

Deno.test("memory: a clone whose memory server vanishes fails with a clear reason", async () => {
  await withCluster(3, async (cluster, client) => {
    const wasm = await testGuest("memory_check");
    const job = runJob({
      client,
      wasmPath: wasm,
      args: ["4", String(DATA), "0", "0", "7", "2"],
      onLine: () => {},
    }).catch(() => undefined);
    // Wait for the clones to run (they sleep 2 s before reading their data).
    let c: ClusterView | undefined;
    for (let i = 0; i < 100 && c?.members.every((m) => m.state === "running") !== true; i++) {
      await new Promise((r) => setTimeout(r, 50));
      c = (await client.status()).clusters[0];
    }
    assert.ok(c !== undefined, "the cluster formed");
    const parentAgent = cluster.agents[Number(c.parentHost.replace("host", "")) - 1];
    await parentAgent.close();
    const others = () => c!.members.filter((m) => m.host !== c!.parentHost);
    for (let i = 0; i < 200; i++) {
      c = (await client.status()).clusters[0];
      if (others().every((m) => m.state !== "running")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(others().length > 0);
    for (const m of others()) {
      assert.equal(m.state, "failed", JSON.stringify(m));
      assert.match(m.reason ?? "", /memory-on-demand failed: Cannot fetch pages/);
    }
    await job;
  });
});

Deno.test("memory: without userfaultfd the agent says why and clones get their memory eagerly", async () => {
  Deno.env.set(NO_UFFD_ENV, "1");
  try {
    await withCluster(2, async (_cluster, client, logs) => {
      assert.ok(
        logs.some((l) => l.includes("memory-on-demand unavailable") && l.includes(NO_UFFD_ENV)),
        logs.join("\n"),
      );
      const r = await runGuest(client, ["2", "200", "50", "20", "3"]);
      assert.equal(r.exitCode, 0);
      checkedOk(r.lines, 2);
      for (const m of r.cluster.members) assert.equal(m.memory?.mode, "eager");
    });
  } finally {
    Deno.env.delete(NO_UFFD_ENV);
  }
});

Deno.test("memory: a parent's next fork gets the pages its last fork's clones asked for pushed", async () => {
  await withCluster(2, async (_cluster, client) => {
    const lines = new Map<number, string[]>();
    const r = await runJob({
      client,
      wasmPath: await testGuest("fork_rounds"),
      args: ["4", "2", "600"],
      onLine: (clone, _s, line) => lines.set(clone, [...(lines.get(clone) ?? []), line]),
    });
    assert.equal(r.exitCode, 0, JSON.stringify([...lines]));
    for (let id = 1; id <= 4; id++) {
      for (const round of [0, 1]) {
        assert.ok(
          lines.get(id)?.includes(`round ${round} clone ${id} ok bad=0`),
          `clone ${id}: ${lines.get(id)?.join("\n")}`,
        );
      }
    }
    const [first, second] = (await client.status()).clusters.filter((c) => c.parentVm === r.vm.id)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const remote = (c: ClusterView) => c.members.filter((m) => m.host !== c.parentHost);
    assert.ok(remote(second).length > 0, "clones on the other host (mcdist)");
    assert.equal(first.memory?.pagesPushed ?? 0, 0, "nothing to go by at the first fork");
    assert.ok((second.memory?.pagesPushed ?? 0) > 100, JSON.stringify(second.memory));
    for (const m of remote(second)) {
      assert.ok(m.memory!.pagesUnrequested > 0, JSON.stringify(m.memory));
    }
  });
});

Deno.test("memory: agents give a finished job's memory back (parent, clones, what was served)", async () => {
  const pages = 4096; // 16 MiB the parent fills, and each clone reads
  await withCluster(2, async (_cluster, client) => {
    const job = async () => {
      const r = await runGuest(client, ["2", String(pages), "0", "0", "7"]);
      assert.equal(r.exitCode, 0, JSON.stringify([...r.lines]));
      checkedOk(r.lines, 2);
    };
    await job(); // the first job also loads what stays (workers, compiled guest, stores)
    const after = Deno.memoryUsage().rss;
    for (let i = 0; i < 3; i++) await job();
    // Each job held 48 MiB or more (the parent's and two clones' memory); kept, three more
    // would add 144 MiB.
    const grown = (Deno.memoryUsage().rss - after) / 2 ** 20;
    assert.ok(grown < 40, `the agents kept ${grown.toFixed(0)} MiB of three finished jobs`);
  });
});
