import assert from "node:assert/strict";
import { StridePredictor } from "./readahead.ts";

const options = { initialWindow: 4, maxWindow: 16, history: 4 };
const run = (p: StridePredictor, pages: number[]) => pages.map((page) => p.observe(page));

Deno.test("a scan is recognised from the last faults and read ahead along its stride", () => {
  const forward = new StridePredictor(1000, options);
  assert.deepEqual(run(forward, [10, 11, 12, 13]), [[], [], [], [14, 15, 16, 17]]);
  const strided = new StridePredictor(1000, options);
  assert.deepEqual(run(strided, [0, 4, 8, 12]).at(-1), [16, 20, 24, 28]);
  const backwards = new StridePredictor(1000, options);
  assert.deepEqual(run(backwards, [50, 48, 46, 44]).at(-1), [42, 40, 38, 36]);
});

Deno.test("an unrolled loop's faults, out of order within each iteration, still make a scan", () => {
  // Two iterations of a loop unrolled by 4 over every 4th page, loads issued last to first.
  const p = new StridePredictor(1000, { initialWindow: 4, maxWindow: 16, history: 8 });
  const got = run(p, [269, 265, 261, 257, 285, 281, 277, 273]);
  assert.deepEqual(got.slice(0, 7), [[], [], [], [], [], [], []]);
  assert.deepEqual(got[7], [289, 293, 297, 301], "forwards, from the highest page");
});

Deno.test("faults inside the window push nothing; one just past it doubles the window", () => {
  const p = new StridePredictor(1000, options);
  run(p, [0, 1, 2, 3]); // pushed 4..7
  assert.deepEqual(run(p, [4, 5]), [[], []]);
  // The next iteration faults a little past the end (its first load went to its last page).
  assert.deepEqual(p.observe(10), [8, 9, 10, 11, 12, 13, 14, 15]);
  assert.deepEqual(p.observe(16), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]);
  assert.equal(p.observe(33).length, 16, "capped at maxWindow");
});

Deno.test("random access predicts nothing, and a new scan starts over", () => {
  const p = new StridePredictor(1000, options);
  assert.ok(run(p, [5, 90, 13, 13, 400, 2, 77]).every((pages) => pages.length === 0));
  assert.deepEqual(run(p, [100, 102, 104, 106]).at(-1), [108, 110, 112, 114]);
});

Deno.test("predictions stay inside the fork", () => {
  const p = new StridePredictor(20, options);
  assert.deepEqual(run(p, [13, 15, 17, 19]).at(-1), []);
  const q = new StridePredictor(20, options);
  assert.deepEqual(run(q, [4, 3, 2, 1]).at(-1), [0]);
});

Deno.test("a scan whose clones got far past the window (pages came by other routes) resumes", () => {
  const p = new StridePredictor(1000, options);
  run(p, [0, 1, 2, 3]); // pushed 4..7
  // The clones' next faults lie well beyond the window: a sibling's requests brought 8..39.
  const got = run(p, [40, 41, 42, 43]);
  assert.deepEqual(got.at(-1), [44, 45, 46, 47]);
  assert.deepEqual(run(p, [44, 45]), [[], []], "inside the new window: nothing more");
});

Deno.test("a clone reaching the latest window pushes the next one at once (asynchronous read-ahead)", () => {
  const p = new StridePredictor(1000, options);
  run(p, [0, 2, 4, 6]); // pushed 8..14
  // Any page of the window from its first on: the clone may not have faulted on the first.
  assert.deepEqual(p.reached(10), [16, 18, 20, 22, 24, 26, 28, 30], "doubled, from the end");
  assert.deepEqual(p.reached(10), [], "each window triggers once");
  assert.deepEqual(p.reached(14), [], "an older window");
  assert.deepEqual(p.reached(16), [32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62]);
  assert.deepEqual(p.reached(33), [], "off the scan's stride");
  assert.deepEqual(new StridePredictor(1000, options).reached(8), [], "no scan yet");
});

Deno.test("faults inside the window after it grew do not end the scan", () => {
  const p = new StridePredictor(1000, options);
  run(p, [0, 1, 2, 3]); // pushed 4..7
  p.observe(8); // past the window: 8..15 pushed, the history starts over
  assert.deepEqual(run(p, [9, 12]), [[], []], "inside the window");
  assert.equal(p.observe(17).length, 16, "just past it: the scan went on, doubled");
});
