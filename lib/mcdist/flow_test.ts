import assert from "node:assert/strict";
import { FlowController, Pacer, RateMeter } from "./flow.ts";

/** A report with every page lost asked for again: what an overrun receiver causes. */
function lossy(received: number, sent: number) {
  return { received, sent, resent: sent - received, backlog: true };
}

Deno.test("FlowController slows to an overrun receiver and tolerates random loss", () => {
  const flow = new FlowController({ initialRate: 10_000, minRate: 500, maxRate: 20_000 });
  let now = 0;
  const later = () => now += 1000;
  flow.report(lossy(8_000, 10_000), later()); // 20 % random loss: keeps up
  assert.ok(flow.rate > 10_000);
  flow.report(lossy(6_000, 10_500), later()); // overrun: falls to what it gets, plus a margin
  assert.equal(flow.rate, 6_600);
  flow.report(lossy(50, 100), later()); // too little sent to judge
  assert.equal(flow.rate, 6_600);
  flow.report(lossy(0, 6_600), later()); // at most halves per report
  assert.equal(flow.rate, 3_300);
  for (let i = 0; i < 100; i++) flow.report(lossy(3_300, 3_300), later());
  assert.equal(flow.rate, 20_000);
  for (let i = 0; i < 10; i++) flow.report(lossy(0, 20_000), later());
  assert.equal(flow.rate, 500);
});

Deno.test("FlowController keeps its rate for a receiver that is late but loses nothing", () => {
  const flow = new FlowController({ initialRate: 10_000, maxRate: 20_000 });
  // A busy host reads its socket in bursts: behind now, nothing asked for again.
  flow.report({ received: 2_000, sent: 10_000, resent: 0, backlog: true }, 0);
  assert.ok(flow.rate >= 10_000);
  // A little loss (5 % random) does not make lateness an overrun either.
  flow.report({ received: 2_000, sent: 10_000, resent: 500, backlog: true }, 1000);
  assert.ok(flow.rate >= 10_000);
  // Pages lost in numbers: overrun.
  flow.report({ received: 2_000, sent: 10_000, resent: 3_000, backlog: true }, 2000);
  assert.ok(flow.rate < 10_000);
});

Deno.test("FlowController slows down once per hold time: later reports predate the slow-down", () => {
  const flow = new FlowController({ initialRate: 10_000, holdMs: 200 });
  flow.report(lossy(1_000, 10_000), 0);
  assert.equal(flow.rate, 5_000);
  flow.report(lossy(1_000, 10_000), 150);
  assert.equal(flow.rate, 5_000, "within the hold time");
  flow.report(lossy(5_000, 5_000), 160);
  assert.equal(flow.rate, 5_250, "speeding up is not held");
  flow.report(lossy(1_000, 10_000), 200);
  assert.equal(flow.rate, 2_625);
});

Deno.test("FlowController judges nobody while there is no backlog", () => {
  const flow = new FlowController({ initialRate: 10_000 });
  flow.report({ ...lossy(10_000, 10_000), backlog: false }, 0);
  flow.report({ ...lossy(0, 10_000), backlog: false }, 1000);
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
