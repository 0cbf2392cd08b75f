import assert from "node:assert/strict";
import { DescriptorError } from "./errors.ts";
import {
  countMarks,
  isPageMark,
  PAGE_FREE,
  PAGE_HINTED,
  PAGE_PRESENT,
  PAGE_UNTOUCHED,
  PAGE_ZERO,
} from "./page_map.ts";

Deno.test("countMarks() counts each mark", () => {
  const map = Uint8Array.of(
    PAGE_PRESENT,
    PAGE_ZERO,
    PAGE_ZERO,
    PAGE_UNTOUCHED,
    PAGE_UNTOUCHED,
    PAGE_UNTOUCHED,
    PAGE_HINTED,
    PAGE_FREE,
  );
  assert.deepEqual(countMarks(map), { present: 1, zero: 2, untouched: 3, hinted: 1, free: 1 });
  assert.deepEqual(countMarks(new Uint8Array(0)), {
    present: 0,
    zero: 0,
    untouched: 0,
    hinted: 0,
    free: 0,
  });
});

Deno.test("countMarks() rejects an invalid mark, naming the page", () => {
  for (const mark of [0, 6, 255]) {
    assert.throws(
      () => countMarks(Uint8Array.of(PAGE_ZERO, PAGE_ZERO, mark)),
      (e: unknown) =>
        e instanceof DescriptorError &&
        e.message === `Cannot count page marks: page 2 has invalid mark ${mark}`,
    );
  }
});

Deno.test("isPageMark() accepts exactly 1 to 5", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 1.5, -1].map(isPageMark), [
    false,
    true,
    true,
    true,
    true,
    true,
    false,
    false,
    false,
  ]);
});
