import assert from "node:assert/strict";
import { deferRefills, SpareWorkers } from "./spare_workers.ts";

const URL_IDLE = new URL("./testdata/idle_worker.ts", import.meta.url);

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("Cannot wait: condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("holders' sizes add up; a take is replaced later; a deferral holds every pool back", async () => {
  const a = new SpareWorkers(URL_IDLE);
  const b = new SpareWorkers(URL_IDLE);
  const releases = [a.hold(1), a.hold(1), b.hold(1)];
  const taken: Worker[] = [];
  try {
    await until(() => a.idle === 2 && b.idle === 1);
    const allow = deferRefills();
    taken.push(a.take(), b.take());
    assert.deepEqual([a.idle, b.idle], [1, 0]);
    await new Promise((r) => setTimeout(r, 600)); // longer than the quiet time before a refill
    assert.deepEqual([a.idle, b.idle], [1, 0], "a replacement started during the deferral");
    allow();
    allow(); // idempotent
    await until(() => a.idle === 2 && b.idle === 1);
  } finally {
    for (const w of taken) w.terminate();
    for (const release of releases) release();
  }
  assert.deepEqual([a.idle, b.idle], [0, 0], "released pools keep no idle worker");
});

Deno.test("a worker given back before its replacement starts is not replaced", async () => {
  const pool = new SpareWorkers(URL_IDLE);
  const release = pool.hold(2);
  try {
    await until(() => pool.idle === 2);
    pool.give(pool.take()); // a replacement is due after the quiet time
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(pool.idle, 2, "a worker was started that the pool did not lack");
  } finally {
    release();
  }
});

Deno.test("an empty pool still hands out a worker at once", () => {
  const pool = new SpareWorkers(URL_IDLE);
  const worker = pool.take();
  worker.terminate();
  assert.equal(pool.idle, 0, "not held: nothing is kept");
});
