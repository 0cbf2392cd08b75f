import assert from "node:assert/strict";
import { allocatedSlots, nodeUsable, SlurmJob, SlurmNode } from "./slurm_rest.ts";

// Trimmed from a real slurmrestd 22.05.8 GET /job/{id} (3 nodes × 2 CPUs, 4 tasks, spread).
const RUNNING = {
  job_id: 7,
  name: "snowflock-t-1",
  job_state: "RUNNING",
  state_reason: "None",
  job_resources: {
    nodes: "n[1-3]",
    allocated_cores: 4,
    allocated_nodes: [
      {
        sockets: { "0": { cores: { "0": "allocated" } }, "1": { cores: { "0": "allocated" } } },
        nodename: "n1",
      },
      {
        sockets: { "0": { cores: { "0": "allocated" } }, "1": { cores: { "0": "unallocated" } } },
        nodename: "n2",
      },
      { sockets: { "0": { cores: { "0": "allocated" } } }, nodename: "n3" },
    ],
  },
};

Deno.test("allocatedSlots() counts allocated cores per node", () => {
  const job = SlurmJob.parse(RUNNING);
  assert.deepEqual([...allocatedSlots(job)], [["n1", 2], ["n2", 1], ["n3", 1]]);
  assert.equal(allocatedSlots(SlurmJob.parse({ ...RUNNING, job_resources: {} })).size, 0);
});

Deno.test("nodeUsable() rejects drained, down and unresponsive nodes", () => {
  const node = (state: string, state_flags: string[] = []) =>
    SlurmNode.parse({ name: "n1", state, state_flags, cpus: 2, idle_cpus: 1 });
  assert.ok(nodeUsable(node("idle")));
  assert.ok(nodeUsable(node("mixed")));
  assert.ok(!nodeUsable(node("mixed", ["DRAIN"])));
  assert.ok(!nodeUsable(node("down")));
  assert.ok(!nodeUsable(node("idle", ["NOT_RESPONDING"])));
});
