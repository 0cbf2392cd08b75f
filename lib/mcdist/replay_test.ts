import assert from "node:assert/strict";
import { ReplayGuard, WINDOW } from "./replay.ts";

const NOW = 1_800_000_000;

Deno.test("ReplayGuard accepts each sequence number once, in any order within the window", () => {
  const guard = new ReplayGuard();
  assert.equal(guard.check(7, 5, NOW, NOW), "ok");
  assert.equal(guard.check(7, 3, NOW, NOW), "ok");
  assert.equal(guard.check(7, 5, NOW, NOW), "replayed");
  assert.equal(guard.check(7, 3, NOW, NOW), "replayed");
  assert.equal(guard.check(8, 5, NOW, NOW), "ok"); // another sender has its own window
  assert.equal(guard.check(7, 4, NOW, NOW), "ok");
});

Deno.test("ReplayGuard judges packets older than the window replays", () => {
  const guard = new ReplayGuard();
  assert.equal(guard.check(1, 10, NOW, NOW), "ok");
  assert.equal(guard.check(1, 10 + WINDOW, NOW, NOW), "ok");
  assert.equal(guard.check(1, 10, NOW, NOW), "replayed");
  assert.equal(guard.check(1, 11, NOW, NOW), "ok");
  assert.equal(guard.check(1, 0, NOW, NOW), "replayed");
});

Deno.test("ReplayGuard judges packets stamped far from our clock stale", () => {
  const guard = new ReplayGuard(300);
  assert.equal(guard.check(1, 1, NOW - 301, NOW), "stale");
  assert.equal(guard.check(1, 2, NOW + 301, NOW), "stale");
  assert.equal(guard.check(1, 3, NOW - 299, NOW), "ok");
});
