/**
 * A rogue agent forks with a truncated and a corrupted descriptor: the clone
 * agent refuses each with a clear error, the clones count as failed in the
 * join, and the agent goes on serving other VMs.
 */
import assert from "node:assert/strict";
import { runJob } from "../lib/cli/run_job.ts";
import { MasterClient } from "../lib/control/client.ts";
import { startAgent } from "../lib/control/agent_service.ts";
import { startMaster } from "../lib/control/master_service.ts";
import type { ClusterView, ForkPlan, TicketView } from "../lib/control/messages.ts";
import { encodeDescriptor } from "../lib/descriptor/mod.ts";
import { goldenDescriptor } from "../lib/descriptor/testdata/make_golden.ts";
import { toBase64 } from "../lib/control/out_files.ts";
import { createLogger } from "../lib/log.ts";
import { testGuest } from "./guests.ts";
import { tempDir } from "./harness/temp_dir.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });

/** A hand-driven agent connection: answers every master call with success. */
async function rogueAgent(master: string) {
  const ws = new WebSocket(`ws://${master}/v1/agent`);
  await new Promise((r) => ws.onopen = r);
  let next = 1;
  const pending = new Map<
    number,
    (m: { ok: boolean; result?: unknown; error?: unknown }) => void
  >();
  const welcomed = Promise.withResolvers<void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") welcomed.resolve();
    if (m.type === "reply") pending.get(m.id)?.(m);
    if (m.type === "request") {
      ws.send(JSON.stringify({ v: 1, type: "reply", id: m.id, ok: true, result: {} }));
    }
  };
  ws.send(JSON.stringify({
    v: 1,
    type: "hello",
    token: "tok",
    name: "rogue",
    inventory: {
      cores: 1,
      memoryBytes: 1,
      slots: 0,
      backends: [{ kind: "wasm", available: true }],
      dataAddress: "127.0.0.1:9",
      version: "x",
    },
  }));
  await welcomed.promise;
  const call = (method: string, params: unknown) =>
    new Promise<{ ok: boolean; result?: unknown; error?: unknown }>((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ v: 1, type: "request", id, call: { method, params } }));
    });
  return { call, close: () => ws.close() };
}

Deno.test("a truncated or corrupted descriptor fails its clones, not the agent", async () => {
  await using data = await tempDir("sf-bad-descriptor");
  const master = await startMaster({
    listen: { hostname: "127.0.0.1", port: 0 },
    dataDir: data.path,
    allocator: "builtin",
    token: "tok",
    logger: quiet,
  });
  const agent = await startAgent({
    master: master.address,
    token: "tok",
    name: "honest",
    backend: "wasm",
    slots: 2,
    listen: { hostname: "127.0.0.1", port: 0 },
    logger: quiet,
  });
  await agent.agent.joined;
  const rogue = await rogueAgent(master.address);
  try {
    const client = new MasterClient(master.address, "tok");
    const wasm = await testGuest("semantics");
    const module = await client.uploadModule(await Deno.readFile(wasm));
    const good = encodeDescriptor(goldenDescriptor());
    const corrupted = good.slice();
    corrupted[good.length >> 1] ^= 0x40;
    for (const bytes of [good.subarray(0, good.length - 7), corrupted]) {
      const vm = await client.run(module, ["semantics"], [], "rogue");
      const ticket = (await rogue.call("ticket.request", { slots: 1, owner: vm.id }))
        .result as TicketView;
      assert.equal(ticket.granted, 1);
      const plan = (await rogue.call("fork.begin", { ticket: ticket.id, parentVm: vm.id }))
        .result as ForkPlan;
      assert.equal(plan.members[0].host, "honest");
      await rogue.call("fork.dispatch", {
        cluster: plan.cluster,
        descriptor: toBase64(bytes),
        pauseMs: 1,
        resume: "clone",
      });
      const joined = (await rogue.call("cluster.join", { cluster: plan.cluster }))
        .result as ClusterView;
      assert.equal(joined.members[0].state, "failed");
      assert.match(joined.members[0].reason ?? "", /Cannot decode descriptor/);
    }
    const ok = await runJob({
      client,
      wasmPath: wasm,
      args: ["2"],
      host: "honest",
      onLine: () => {},
    });
    assert.equal(ok.exitCode, 0);
  } finally {
    rogue.close();
    await master.close();
    await agent.close();
  }
});
