/**
 * Fork semantics across an embedded cluster (master + 4 agents on loopback):
 * ids, inheritance, isolation, join/kill, nested forks, bad input, and every
 * example guest's forked result against its sequential run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runJob } from "../lib/cli/run_job.ts";
import { defaultCacheDir } from "../lib/control/agent_service.ts";
import { ClientError, MasterClient } from "../lib/control/client.ts";
import { startEmbeddedCluster } from "../lib/control/embedded.ts";
import { buildExample } from "../lib/guest/cc.ts";
import { createLogger } from "../lib/log.ts";
import { testGuest } from "./guests.ts";
import { tempDir } from "./harness/temp_dir.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });

interface Run {
  exitCode: number;
  parent: string[];
  clones: Map<number, string[]>;
  reason?: string;
}

async function withCluster(fn: (client: MasterClient) => Promise<void>): Promise<void> {
  await using data = await tempDir("sf-fork-test");
  const cluster = await startEmbeddedCluster({
    hosts: 4,
    slotsPerHost: 2,
    dataDir: data.path,
    logger: quiet,
  });
  try {
    await fn(new MasterClient(cluster.master.address, cluster.master.token));
  } finally {
    await cluster.close();
  }
}

async function run(client: MasterClient, wasm: string, args: string[]): Promise<Run> {
  const parent: string[] = [];
  const clones = new Map<number, string[]>();
  const r = await runJob({
    client,
    wasmPath: wasm,
    args,
    onLine: (clone, _s, line) => {
      if (clone === 0) parent.push(line);
      else clones.set(clone, [...(clones.get(clone) ?? []), line]);
    },
  });
  return { exitCode: r.exitCode, parent, clones, ...(r.reason ? { reason: r.reason } : {}) };
}

Deno.test("fork: ids, inherited state, isolation, error codes, gathering /out", async () => {
  const wasm = await testGuest("semantics");
  await withCluster(async (client) => {
    const r = await run(client, wasm, ["5"]);
    assert.equal(r.exitCode, 0, r.parent.join("\n"));
    assert.deepEqual(r.parent.filter((l) => l.includes("FAIL")), []);
    assert.ok(r.parent.includes("done 0"));
    assert.equal(r.clones.size, 5);
    for (const [id, lines] of r.clones) {
      assert.ok(lines.includes(`clone ${id} of 5 inherited ok id=${id}`), lines.join("\n"));
      assert.ok(lines.includes("clone join -5"), "sf_join in a clone gives SF_ECLONE");
    }
    assert.ok(r.parent.includes("gathered 5"));
    const s = await client.status();
    const c = s.clusters[0];
    assert.equal(c.state, "joined");
    assert.deepEqual(new Set(c.members.map((m) => m.host)).size, 4, "spread over 4 hosts");
    assert.equal(s.tickets[0].state, "released");
  });
});

Deno.test("fork: a trapping clone fails the join, and the agents keep serving", async () => {
  const wasm = await testGuest("semantics");
  await withCluster(async (client) => {
    const r = await run(client, wasm, ["3", "trap"]);
    assert.ok(r.parent.includes("join failed=1"), r.parent.join("\n"));
    assert.equal(r.exitCode, 11);
    const again = await run(client, wasm, ["3"]);
    assert.equal(again.exitCode, 0);
  });
});

Deno.test("fork: a clone forks again (nested), sf_kill ends a cluster", async () => {
  const wasm = await testGuest("semantics");
  await withCluster(async (client) => {
    const nested = await run(client, wasm, ["2", "nested"]);
    assert.equal(nested.exitCode, 0, nested.parent.join("\n"));
    assert.ok(nested.clones.get(1)?.includes("nested join 0"));
    const killed = await run(client, wasm, ["3", "kill"]);
    assert.ok(killed.parent.includes("kill 0"), killed.parent.join("\n"));
    assert.ok(killed.parent.includes("join failed=3"));
    const s = await client.status();
    assert.ok(s.clusters.some((c) => c.state === "killed"));
  });
});

Deno.test("bad guests: not Wasm, unknown imports, a trap in the parent", async () => {
  const unknown = await testGuest("unknown_import");
  await using dir = await tempDir("sf-bad");
  const notWasm = join(dir.path, "not.wasm");
  await Deno.writeTextFile(notWasm, "#!/bin/sh\necho hi\n");
  await withCluster(async (client) => {
    await assert.rejects(
      run(client, notWasm, []),
      (e) => e instanceof ClientError && /not a WebAssembly module/.test(e.message),
    );
    await assert.rejects(run(client, unknown, []), /env\.mystery_call/);
    const ok = await run(client, await testGuest("semantics"), ["1"]);
    assert.equal(ok.exitCode, 0);
  });
});

for (
  const [example, args] of [
    ["mandelbrot", ["160", "120", "200"]],
    ["pricer", ["200000"]],
    ["search", ["GATTACA", "2"]],
  ] as const
) {
  Deno.test(`example ${example}: forked over 4 hosts = sequential`, async () => {
    const wasm = await buildExample(example, join(defaultCacheDir(), "examples"));
    await withCluster(async (client) => {
      const seq = await run(client, wasm, ["0", ...args]);
      const forked = await run(client, wasm, ["6", ...args]);
      const result = (r: Run) => r.parent.find((l) => l.startsWith("result:"));
      assert.equal(seq.exitCode, 0);
      assert.equal(forked.exitCode, 0, forked.parent.join("\n"));
      assert.ok(result(seq));
      assert.equal(result(forked), result(seq));
      assert.equal(forked.clones.size, 6);
    });
  });
}
