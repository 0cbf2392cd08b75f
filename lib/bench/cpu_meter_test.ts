import assert from "node:assert/strict";
import {
  CpuMeter,
  type CpuSample,
  parseCpuPressure,
  parseProcStat,
  sampleAt,
  useBetween,
} from "./cpu_meter.ts";

const STAT = "cpu  100 2 30 5000 7 0 4 1 0 0\ncpu0 50 1 15 2500 3 0 2 0 0 0\nintr 1 2 3\n";

Deno.test("parseProcStat() sums the busy columns of the first line, in ms", () => {
  // user 100 + nice 2 + system 30 + irq 0 + softirq 4 + steal 1 ticks; idle and iowait are not.
  assert.equal(parseProcStat(STAT), 137 * 10);
});

Deno.test("parseProcStat() rejects text that is not /proc/stat", () => {
  assert.throws(() => parseProcStat("cpu0 1 2 3 4 5 6 7 8\n"), SyntaxError);
  assert.throws(() => parseProcStat("cpu  1 2 3\n"), SyntaxError);
  assert.throws(() => parseProcStat("cpu  1 x 3 4 5 6 7 8 0 0\n"), /column 2 is x/);
  assert.throws(() => parseProcStat(""), SyntaxError);
});

Deno.test("parseCpuPressure() reads the total of the some line, in ms", () => {
  const text = "some avg10=0.24 avg60=5.35 avg300=9.25 total=13783882816\n" +
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
  assert.equal(parseCpuPressure(text), 13783882.816);
  assert.throws(() => parseCpuPressure("full avg10=0.00 total=5\n"), SyntaxError);
});

const samples: CpuSample[] = [
  { at: 1000, busyMs: 0, waitMs: 0 },
  { at: 1010, busyMs: 20, waitMs: 10 },
  { at: 1020, busyMs: 20, waitMs: 10 },
  { at: 1040, busyMs: 60, waitMs: 30 },
];

Deno.test("sampleAt() interpolates between the samples around a time", () => {
  assert.deepEqual(sampleAt(samples, 1005), { at: 1005, busyMs: 10, waitMs: 5 });
  assert.deepEqual(sampleAt(samples, 1030), { at: 1030, busyMs: 40, waitMs: 20 });
  assert.deepEqual(sampleAt(samples, 1040), { at: 1040, busyMs: 60, waitMs: 30 });
  assert.deepEqual(sampleAt(samples, 1000), { at: 1000, busyMs: 0, waitMs: 0 });
  assert.equal(sampleAt(samples, 999), undefined);
  assert.equal(sampleAt(samples, 1041), undefined);
  assert.equal(sampleAt([], 1000), undefined);
  assert.equal(sampleAt(samples, NaN), undefined);
});

Deno.test("useBetween() is the difference of the counters at both ends", () => {
  assert.deepEqual(useBetween(samples, 1005, 1030), { cpuMs: 30, waitMs: 15 });
  assert.equal(useBetween(samples, 990, 1030), undefined);
  const noPressure = samples.map((s) => ({ ...s, waitMs: undefined }));
  assert.deepEqual(useBetween(noPressure, 1000, 1040), { cpuMs: 60, waitMs: undefined });
});

Deno.test({
  name: "CpuMeter sees the CPU this process burns",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    using meter = new CpuMeter();
    const from = Date.now();
    // Busy for 200 ms of wall time: at least one core's worth of it, whatever else runs.
    while (Date.now() - from < 200) Math.sqrt(Math.random());
    const use = meter.useBetween(from, Date.now());
    assert.ok(use !== undefined, "the samples cover the window");
    // /proc/stat counts 10 ms ticks per core: allow two ticks of slack on each edge.
    assert.ok(use.cpuMs >= 160, `busy ${use.cpuMs} ms while spinning 200 ms`);
  },
});
