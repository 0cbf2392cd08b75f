import assert from "node:assert/strict";
import { join } from "node:path";
import { Store, StoreError } from "./store.ts";

Deno.test("Store keeps hosts, tickets and clusters across reopen", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "state.db");
    const a = Store.open(path);
    a.upsertHost({
      name: "h1",
      state: "up",
      backends: [{ kind: "wasm", available: true }],
      cores: 2,
      memoryBytes: 1024,
      slots: 2,
      dataAddress: "127.0.0.1:1",
      lastSeen: "2026-01-01T00:00:00.000Z",
    });
    a.insertTicket({
      id: "t-1",
      requested: 4,
      granted: 2,
      state: "granted",
      placements: [{ host: "h1", slots: 2 }],
      allocator: "builtin",
      createdAt: "2026-01-01T00:00:00.000Z",
    });
    a.insertCluster({
      id: "c-1",
      ticket: "t-1",
      parentVm: "vm-1",
      parentHost: "h1",
      state: "running",
      createdAt: "2026-01-01T00:00:00.000Z",
      timeline: {},
    }, [
      { clone: 1, vm: "vm-2", host: "h1", state: "running" },
      { clone: 2, vm: "vm-3", host: "h1", state: "starting" },
    ]);
    a.setMemberState("c-1", 1, "exited", { exitCode: 0 });
    a.close();

    const b = Store.open(path);
    assert.equal(b.host("h1")?.slots, 2);
    assert.deepEqual(b.ticket("t-1")?.placements, [{ host: "h1", slots: 2 }]);
    const c = b.cluster("c-1")!;
    assert.deepEqual(c.members.map((m) => [m.clone, m.state, m.exitCode]), [
      [1, "exited", 0],
      [2, "starting", undefined],
    ]);
    assert.deepEqual(b.liveMembersOn("h1"), [{ cluster: "c-1", clone: 2 }]);
    b.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Store.transaction() rolls back every write when one fails", () => {
  const s = Store.open(":memory:");
  assert.throws(() =>
    s.transaction(() => {
      s.insertTicket({
        id: "t-x",
        requested: 1,
        granted: 0,
        state: "pending",
        placements: [],
        allocator: "builtin",
        createdAt: "x",
      });
      throw new Error("boom");
    }), /boom/);
  assert.equal(s.ticket("t-x"), undefined);
  s.close();
});

Deno.test("Store.open() names the file when it cannot open it", () => {
  assert.throws(() => Store.open("/nonexistent/dir/state.db"), (e) => {
    assert.ok(e instanceof StoreError);
    assert.match(e.message, /Cannot open state database \/nonexistent\/dir\/state.db/);
    return true;
  });
});
