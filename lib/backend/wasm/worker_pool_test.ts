import assert from "node:assert/strict";
import { deferRefill, holdWorkerPool, idleWorkers, takeWorker } from "./worker_pool.ts";

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("Cannot wait: condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("the worker pool refills after a take, but not while a refill is deferred", async () => {
  const release = holdWorkerPool(1);
  const taken: Worker[] = [];
  try {
    await until(() => idleWorkers() === 1);
    const allow = deferRefill();
    taken.push(takeWorker());
    assert.equal(idleWorkers(), 0);
    await new Promise((r) => setTimeout(r, 600)); // more than the quiet time before a refill
    assert.equal(idleWorkers(), 0, "a replacement started during the deferral");
    allow();
    allow(); // idempotent
    await until(() => idleWorkers() === 1);
  } finally {
    for (const w of taken) w.terminate();
    release();
  }
  assert.equal(idleWorkers(), 0, "released pools keep no idle worker");
});
