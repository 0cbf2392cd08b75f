import assert from "node:assert/strict";
import { DeadlineQueue } from "./deadlines.ts";

function due(queue: DeadlineQueue, now: number): [number, number][] {
  const out: [number, number][] = [];
  queue.popDue(now, (page, at) => out.push([page, at]));
  return out;
}

Deno.test("pages come due in time order, only once their time has come", () => {
  const queue = new DeadlineQueue();
  for (const [page, at] of [[1, 30], [2, 10], [3, 20], [4, 10], [5, 50]]) queue.push(page, at);
  assert.deepEqual(due(queue, 5), []);
  assert.deepEqual(due(queue, 20).map(([, at]) => at), [10, 10, 20]);
  assert.deepEqual(due(queue, 40), [[1, 30]]);
  assert.equal(queue.size, 1);
  queue.clear();
  assert.deepEqual(due(queue, 100), []);
});

Deno.test("a page pushed again comes due at each time: the caller tells the stale one", () => {
  const queue = new DeadlineQueue();
  queue.push(7, 10);
  queue.push(7, 25);
  assert.deepEqual(due(queue, 30), [[7, 10], [7, 25]]);
});

Deno.test("random times pop sorted", () => {
  const queue = new DeadlineQueue();
  const times = Array.from({ length: 2000 }, () => Math.floor(Math.random() * 500));
  times.forEach((at, page) => queue.push(page, at));
  const popped = due(queue, 250).concat(due(queue, 1000)).map(([, at]) => at);
  assert.deepEqual(popped, [...times].sort((a, b) => a - b));
});
