import assert from "node:assert/strict";
import { createLogger } from "../log.ts";
import { startAgent } from "./agent_service.ts";
import { MasterClient } from "./client.ts";
import { startMaster } from "./master_service.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });

async function withMaster(
  fn: (m: Awaited<ReturnType<typeof startMaster>>, client: MasterClient) => Promise<void>,
  options: { heartbeatTimeoutMs?: number; ticketTtlMs?: number } = {},
): Promise<void> {
  const dataDir = await Deno.makeTempDir();
  const m = await startMaster({
    listen: { hostname: "127.0.0.1", port: 0 },
    dataDir,
    allocator: "builtin",
    token: "tok",
    heartbeatMs: 100,
    heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 2000,
    ticketTtlMs: options.ticketTtlMs ?? 60_000,
    logger: quiet,
  });
  try {
    await fn(m, new MasterClient(m.address, "tok"));
  } finally {
    await m.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

function agentAt(master: string, name: string, token = "tok", slots = 2) {
  return startAgent({
    master,
    token,
    name,
    backend: "wasm",
    slots,
    listen: { hostname: "127.0.0.1", port: 0 },
    logger: quiet,
  });
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("an agent with a wrong join token is refused and never listed", async () => {
  await withMaster(async (m, client) => {
    const a = await agentAt(m.address, "intruder", "wrong");
    try {
      await assert.rejects(a.agent.refused, /wrong join token/);
      const s = await client.status();
      assert.equal(s.hosts.length, 0);
      assert.equal(s.rejectedMessages, 1);
    } finally {
      await a.close();
    }
  });
});

Deno.test("the HTTP API refuses a missing or wrong token", async () => {
  await withMaster(async (m) => {
    await assert.rejects(new MasterClient(m.address, "nope").status(), /wrong token/);
    const res = await fetch(`http://${m.address}/v1/status`);
    assert.equal(res.status, 401);
    await res.body?.cancel();
  });
});

Deno.test("malformed agent messages are rejected, counted and survive", async () => {
  await withMaster(async (m, client) => {
    const ws = new WebSocket(`ws://${m.address}/v1/agent`);
    await new Promise((r) => ws.onopen = r);
    const replies: unknown[] = [];
    ws.onmessage = (e) => replies.push(JSON.parse(e.data));
    ws.send(JSON.stringify({
      v: 1,
      type: "hello",
      token: "tok",
      name: "raw",
      inventory: {
        cores: 1,
        memoryBytes: 1,
        slots: 1,
        backends: [{ kind: "wasm", available: true }],
        dataAddress: "127.0.0.1:9",
        version: "x",
      },
    }));
    await until("welcome", () => replies.length === 1);
    ws.send("not json");
    ws.send(JSON.stringify({ v: 99, type: "heartbeat", seq: 1 }));
    ws.send(JSON.stringify({ v: 1, type: "request", id: 1, call: { method: "rm -rf" } }));
    ws.send(JSON.stringify({ v: 1, type: "heartbeat", seq: -1 }));
    ws.send(new Uint8Array([1, 2, 3]));
    await until("rejections", async () => (await client.status()).rejectedMessages === 5);
    // Still connected and answering well-formed requests.
    ws.send(JSON.stringify({
      v: 1,
      type: "request",
      id: 2,
      call: { method: "ticket.request", params: { slots: 1 } },
    }));
    await until("reply", () => replies.length === 2);
    assert.deepEqual((replies[1] as { ok: boolean }).ok, true);
    ws.close();
    const bad = await fetch(`http://${m.address}/v1/tickets`, {
      method: "POST",
      headers: { authorization: "Bearer tok" },
      body: '{"slots": "many"}',
    });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /Cannot request ticket: slots/);
  });
});

Deno.test("a host that stops heartbeating is marked down", async () => {
  await withMaster(async (m, client) => {
    const ws = new WebSocket(`ws://${m.address}/v1/agent`);
    await new Promise((r) => ws.onopen = r);
    ws.send(JSON.stringify({
      v: 1,
      type: "hello",
      token: "tok",
      name: "silent",
      inventory: {
        cores: 1,
        memoryBytes: 1,
        slots: 1,
        backends: [{ kind: "wasm", available: true }],
        dataAddress: "127.0.0.1:9",
        version: "x",
      },
    }));
    await until("up", async () => (await client.status()).hosts[0]?.state === "up");
    await until("down", async () => (await client.status()).hosts[0]?.state === "down");
    assert.equal((await client.status()).hosts[0].reason, "missed heartbeats");
    ws.close();
  }, { heartbeatTimeoutMs: 400 });
});

Deno.test("tickets: over-asking is granted m < n, spread over hosts; release frees slots", async () => {
  await withMaster(async (m, client) => {
    const agents = await Promise.all([agentAt(m.address, "a"), agentAt(m.address, "b")]);
    try {
      await Promise.all(agents.map((a) => a.agent.joined));
      const t = await client.requestTicket(10);
      assert.equal(t.requested, 10);
      assert.equal(t.granted, 4);
      assert.equal(t.state, "granted");
      assert.deepEqual(t.placements, [{ host: "a", slots: 2 }, { host: "b", slots: 2 }]);
      const none = await client.requestTicket(1);
      assert.equal(none.granted, 0);
      assert.equal(none.reason, "no slots available");
      assert.equal((await client.releaseTicket(t.id)).state, "released");
      assert.equal((await client.requestTicket(1)).granted, 1);
      await assert.rejects(client.ticket("t-missing"), /Cannot find ticket t-missing/);
    } finally {
      await Promise.all(agents.map((a) => a.close()));
    }
  });
});

Deno.test("an unused ticket expires and its slots return", async () => {
  await withMaster(async (m, client) => {
    const a = await agentAt(m.address, "a", "tok", 1);
    try {
      await a.agent.joined;
      const t = await client.requestTicket(1);
      assert.equal(t.granted, 1);
      await until("expiry", async () => (await client.ticket(t.id)).state === "expired");
      assert.equal((await client.requestTicket(1)).granted, 1);
    } finally {
      await a.close();
    }
  }, { ticketTtlMs: 300 });
});
