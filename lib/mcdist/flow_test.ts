import assert from "node:assert/strict";
import { FlowController, Pacer, RateMeter } from "./flow.ts";

Deno.test("FlowController slows to an overrun receiver and tolerates random loss", () => {
  const flow = new FlowController({ initialRate: 10_000, minRate: 500, maxRate: 20_000 });
  let now = 0;
  const later = () => now += 1000;
  flow.report(8_000, 10_000, true, later()); // 20 % random loss: keeps up
  assert.ok(flow.rate > 10_000);
  flow.report(6_000, 10_500, true, later()); // overrun: falls to what it gets, plus a margin
  assert.equal(flow.rate, 6_600);
  flow.report(50, 100, true, later()); // too little sent to judge
  assert.equal(flow.rate, 6_600);
  flow.report(0, 6_600, true, later()); // at most halves per report
  assert.equal(flow.rate, 3_300);
  for (let i = 0; i < 100; i++) flow.report(3_300, 3_300, true, later());
  assert.equal(flow.rate, 20_000);
  for (let i = 0; i < 10; i++) flow.report(0, 20_000, true, later());
  assert.equal(flow.rate, 500);
});

Deno.test("FlowController slows down once per hold time: later reports predate the slow-down", () => {
  const flow = new FlowController({ initialRate: 10_000, holdMs: 200 });
  flow.report(1_000, 10_000, true, 0);
  assert.equal(flow.rate, 5_000);
  flow.report(1_000, 10_000, true, 150);
  assert.equal(flow.rate, 5_000, "within the hold time");
  flow.report(5_000, 5_000, true, 160);
  assert.equal(flow.rate, 5_250, "speeding up is not held");
  flow.report(1_000, 10_000, true, 200);
  assert.equal(flow.rate, 2_625);
});

Deno.test("FlowController judges nobody while there is no backlog", () => {
  const flow = new FlowController({ initialRate: 10_000 });
  flow.report(10_000, 10_000, false, 0);
  flow.report(0, 10_000, false, 1000);
  assert.equal(flow.rate, 10_000);
});

Deno.test("Pacer grants tokens at the rate, capped at the burst", () => {
  const pacer = new Pacer();
  assert.equal(pacer.refill(1000, 32, 0), 0);
  assert.equal(pacer.refill(1000, 32, 10), 10);
  pacer.spend(10);
  assert.equal(pacer.refill(1000, 32, 1000), 32);
  pacer.spend(32);
  assert.equal(pacer.waitMs(1000, 3), 3);
});

Deno.test("RateMeter measures events a second over a window", () => {
  const meter = new RateMeter();
  for (let t = 0; t < 1000; t += 10) meter.add(10, t);
  assert.equal(meter.rate(995, 100), 1000);
  assert.equal(meter.rate(5000, 100), 0);
});
