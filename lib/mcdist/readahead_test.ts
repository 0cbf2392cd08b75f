import assert from "node:assert/strict";
import { StridePredictor } from "./readahead.ts";

const run = (p: StridePredictor, pages: number[]) => pages.map((page) => p.observe(page));

Deno.test("a scan is recognised after two equal steps and the window follows its stride", () => {
  const forward = new StridePredictor(1000, { initialWindow: 4, maxWindow: 16 });
  assert.deepEqual(run(forward, [10, 11, 12]), [[], [], [13, 14, 15, 16]]);
  const strided = new StridePredictor(1000, { initialWindow: 3, maxWindow: 16 });
  assert.deepEqual(run(strided, [0, 4, 8]).at(-1), [12, 16, 20]);
  const backwards = new StridePredictor(1000, { initialWindow: 3, maxWindow: 16 });
  assert.deepEqual(run(backwards, [50, 48, 46]).at(-1), [44, 42, 40]);
});

Deno.test("faults inside the window push nothing; one just past it doubles the window", () => {
  const p = new StridePredictor(1000, { initialWindow: 4, maxWindow: 8 });
  run(p, [0, 1, 2]); // pushed 3..6
  assert.deepEqual(run(p, [3, 4]), [[], []]);
  assert.deepEqual(p.observe(7), [8, 9, 10, 11, 12, 13, 14, 15]);
  assert.deepEqual(p.observe(16), [17, 18, 19, 20, 21, 22, 23, 24], "capped at maxWindow");
});

Deno.test("random access and repeated pages predict nothing, and a new scan starts over", () => {
  const p = new StridePredictor(1000, { initialWindow: 2, maxWindow: 8 });
  assert.ok(run(p, [5, 90, 13, 13, 13, 400, 2]).every((pages) => pages.length === 0));
  assert.deepEqual(run(p, [100, 102, 104]).at(-1), [106, 108]);
});

Deno.test("predictions stay inside the fork", () => {
  const p = new StridePredictor(20, { initialWindow: 8, maxWindow: 8 });
  assert.deepEqual(run(p, [14, 16, 18]).at(-1), []);
  const q = new StridePredictor(20, { initialWindow: 8, maxWindow: 8 });
  assert.deepEqual(run(q, [3, 2, 1]).at(-1), [0]);
});
