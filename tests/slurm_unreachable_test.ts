/** --allocator slurm with slurmrestd unreachable: the ticket fails fast, the guest gets a code. */
import assert from "node:assert/strict";
import { runJob } from "../lib/cli/run_job.ts";
import { MasterClient } from "../lib/control/client.ts";
import { startEmbeddedCluster } from "../lib/control/embedded.ts";
import { createLogger } from "../lib/log.ts";
import { testGuest } from "./guests.ts";
import { tempDir } from "./harness/temp_dir.ts";

Deno.test("slurm: slurmrestd unreachable fails the ticket at once; sf_request_ticket < 0", async () => {
  await using data = await tempDir("sf-slurm-down");
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close(); // nothing listens there now
  const cluster = await startEmbeddedCluster({
    hosts: 2,
    slotsPerHost: 2,
    dataDir: data.path,
    logger: createLogger("test", { quiet: true, sink: () => {} }),
    allocator: "slurm",
    allocatorSettings: {
      slurm: { url: `http://127.0.0.1:${port}`, user: "nobody", token: "x", callTimeoutMs: 2000 },
    },
  });
  try {
    const client = new MasterClient(cluster.master.address, cluster.master.token);
    const started = Date.now();
    const parent: string[] = [];
    const r = await runJob({
      client,
      wasmPath: await testGuest("semantics"),
      args: ["2"],
      onLine: (clone, _s, line) => clone === 0 && parent.push(line),
    });
    assert.ok(Date.now() - started < 20_000, "no hang");
    assert.ok(parent.includes("check ticket FAIL (-4)"), parent.join("\n")); // SF_ENOSLOTS
    assert.notEqual(r.exitCode, 0);
    const t = (await client.status()).tickets[0];
    assert.equal(t.state, "failed");
    assert.match(t.reason ?? "", /Cannot read nodes: slurmrestd at .* unreachable/);
  } finally {
    await cluster.close();
  }
});
