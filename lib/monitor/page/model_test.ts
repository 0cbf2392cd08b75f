import assert from "node:assert/strict";
import type { CloneMemoryStats, ClusterView } from "../../control/messages.ts";
import {
  formatBytes,
  formatMs,
  formatUs,
  memberCounts,
  MemoryHistory,
  memoryTotals,
  timelineSteps,
} from "./model.js";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");

function stats(over: Partial<CloneMemoryStats>): CloneMemoryStats {
  return {
    mode: "lazy",
    faults: 0,
    pagesFetched: 0,
    pagesAvoided: { zero: 0, untouched: 0, hinted: 0, free: 0 },
    pagesUnrequested: 0,
    bytesReceived: 0,
    multicastBytes: 0,
    unicastBytes: 0,
    retransmits: 0,
    faultP50Us: 0,
    faultP99Us: 0,
    stalledMs: 0,
    ...over,
  };
}

function cluster(over: Partial<ClusterView> = {}): ClusterView {
  return {
    id: "c-1",
    ticket: "t-1",
    parentVm: "vm-p",
    parentHost: "host1",
    state: "running",
    createdAt: new Date(T0).toISOString(),
    timeline: { pauseMs: 4.2, dispatchedMs: 9.5, descriptorBytes: 2048, readyMs: 30 },
    members: [
      {
        clone: 1,
        vm: "vm-1",
        host: "host2",
        state: "running",
        memory: stats({
          faults: 10,
          pagesFetched: 100,
          pagesAvoided: { zero: 5, untouched: 1, hinted: 2, free: 3 },
          multicastBytes: 4096,
          faultP50Us: 40,
          faultP99Us: 300,
        }),
      },
      {
        clone: 2,
        vm: "vm-2",
        host: "host3",
        state: "exited",
        exitCode: 0,
        memory: stats({ pagesFetched: 50, unicastBytes: 100, faultP50Us: 60, faultP99Us: 200 }),
      },
      { clone: 3, vm: "vm-3", host: "host4", state: "starting" },
    ],
    ...over,
  };
}

Deno.test("memoryTotals(): sums the clones, worst clone's latency, server's wire bytes", () => {
  const t = memoryTotals(cluster());
  assert.equal(t.reporting, 2);
  assert.equal(t.pagesFetched, 150);
  assert.deepEqual(t.avoided, { zero: 5, untouched: 1, hinted: 2, free: 3 });
  assert.equal(t.pagesAvoided, 11);
  assert.equal(t.multicastBytes, 4096);
  assert.equal(t.unicastBytes, 100);
  assert.equal(t.faultP50Us, 60);
  assert.equal(t.faultP99Us, 300);
  const served = memoryTotals(cluster({
    memory: {
      pages: 256,
      pagesPresent: 200,
      pagesServed: 120,
      bytesSent: 491520,
      packetsSent: 400,
      multicastBytes: 480000,
      unicastBytes: 11520,
      retransmits: 0,
      rejected: 0,
      wpFaults: 0,
      pagesSaved: 0,
    },
  }));
  assert.equal(served.multicastBytes, 480000, "a multicast reply counts once, at the server");
  assert.equal(served.pagesServed, 120);
});

Deno.test("memoryTotals(): a fork nobody reported memory for is all zeros", () => {
  const t = memoryTotals(cluster({ members: [{ clone: 1, vm: "v", host: "h", state: "exited" }] }));
  assert.equal(t.reporting, 0);
  assert.equal(t.pagesFetched + t.pagesAvoided + t.multicastBytes + t.faultP99Us, 0);
});

Deno.test("MemoryHistory: samples while live, one more when the fork ends, then none", () => {
  const h = new MemoryHistory();
  h.record(cluster(), T0 + 500);
  h.record(cluster(), T0 + 1500);
  h.record(cluster({ state: "joined" }), T0 + 2000);
  h.record(cluster({ state: "joined" }), T0 + 9000);
  assert.deepEqual(h.samples("c-1").map((s) => s.t), [0.5, 1.5, 2]);
  assert.equal(h.samples("c-1")[0].totals.pagesFetched, 150);
  h.record(cluster({ id: "c-old", state: "joined" }), T0 + 60_000);
  assert.equal(h.samples("c-old").length, 1, "a fork first seen finished gets one sample");
  h.retain(new Set(["c-old"]));
  assert.deepEqual(h.samples("c-1"), []);
});

Deno.test("timelineSteps(): begin, resume, descriptor, ready, join; unreached ones have no time", () => {
  const steps = timelineSteps(cluster());
  assert.deepEqual(steps.map((s) => [s.key, s.ms]), [
    ["begin", 0],
    ["resumed", 4.2],
    ["descriptor", 9.5],
    ["ready", 30],
    ["joined", undefined],
  ]);
  assert.equal(steps[2].detail, "2.0 KiB");
  assert.equal(timelineSteps(cluster({ state: "killed" }))[4].label, "killed");
});

Deno.test("memberCounts() and the formats", () => {
  assert.deepEqual(memberCounts(cluster()), { running: 1, exited: 1, starting: 1 });
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(300 * 1024 * 1024), "300 MiB");
  assert.equal(formatMs(undefined), "…");
  assert.equal(formatMs(4.25), "4.3 ms");
  assert.equal(formatMs(12_345), "12.3 s");
  assert.equal(formatUs(0.5), "0.5 µs");
  assert.equal(formatUs(0), "0 µs");
  assert.equal(formatUs(4200), "4.2 ms");
});
