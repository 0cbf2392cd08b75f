import assert from "node:assert/strict";
import { BuiltinAllocator, spread } from "./builtin.ts";

Deno.test("spread() places one slot per host before doubling up", () => {
  const free = new Map([["a", 4], ["b", 4], ["c", 4], ["d", 4]]);
  assert.deepEqual(spread(4, free), [
    { host: "a", slots: 1 },
    { host: "b", slots: 1 },
    { host: "c", slots: 1 },
    { host: "d", slots: 1 },
  ]);
  assert.deepEqual(spread(6, free).map((p) => p.slots), [2, 2, 1, 1]);
});

Deno.test("spread() grants fewer when capacity runs out", () => {
  const free = new Map([["a", 1], ["b", 2], ["c", 0]]);
  assert.deepEqual(spread(10, free), [{ host: "a", slots: 1 }, { host: "b", slots: 2 }]);
  assert.deepEqual(spread(3, new Map()), []);
});

Deno.test("BuiltinAllocator.request() subtracts slots in use", async () => {
  const grant = await new BuiltinAllocator().request({ ticket: "t", slots: 8, timeoutMs: 1 }, {
    upHosts: () => [{ name: "a", slots: 4, inUse: 3 }, { name: "b", slots: 2, inUse: 0 }],
  });
  assert.deepEqual(grant.placements, [{ host: "a", slots: 1 }, { host: "b", slots: 2 }]);
});
