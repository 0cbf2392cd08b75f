/**
 * --allocator slurm against a real Slurm 22.05 (tests/slurm_cluster.ts: munged,
 * slurmctld, 3 slurmd, slurmrestd + JWT, installed from Debian if missing):
 * tickets granted, used and released through Slurm jobs, partial grants,
 * pending jobs timing out, drained nodes failing their clones, status.
 */
import assert from "node:assert/strict";
import { formatStatus } from "../lib/cli/status.ts";
import {
  CPUS_PER_NODE,
  jobGone,
  NODES,
  runningClones,
  runSlurmScenario,
  withSlurmLab,
} from "./slurm_scenario.ts";

const root = Deno.uid() === 0;
if (!root) {
  console.error("slurm tests skipped: they install and run Slurm daemons, which needs root");
}

Deno.test({
  name: "slurm: a guest's ticket is a Slurm job; clones run on its nodes; join cancels it",
  ignore: !root,
  fn: () =>
    withSlurmLab(async ({ slurm, client, runGuest }) => {
      const r = await runGuest(["4"]);
      assert.equal(r.exitCode, 0, r.parent.join("\n"));
      assert.equal(r.ticket.allocator, "slurm");
      assert.equal(r.ticket.granted, 4);
      assert.match(r.ticket.source ?? "", /^\d+$/, "the Slurm job id");
      const placed = new Set(r.ticket.placements.map((p) => p.host));
      assert.ok(r.cluster.members.every((m) => placed.has(m.host) && m.state === "exited"));
      assert.equal(r.ticket.state, "released");
      assert.ok(await jobGone(slurm, r.ticket.source!), "the job ends with the ticket");
      const text = formatStatus(await client.status());
      assert.match(text, /allocator slurm/);
      assert.match(text, new RegExp(`slurm:${r.ticket.source}`));
    }),
});

Deno.test({
  name: "slurm: a request larger than the cluster gets a partial grant",
  ignore: !root,
  fn: () =>
    withSlurmLab(async ({ slurm, client }) => {
      const t = await client.requestTicket(NODES * CPUS_PER_NODE + 4);
      assert.equal(t.state, "granted");
      assert.equal(t.granted, NODES * CPUS_PER_NODE);
      assert.equal(await slurm.jobState(t.source!), "RUNNING");
      await client.releaseTicket(t.id);
      assert.ok(await jobGone(slurm, t.source!));
    }),
});

Deno.test({
  name: "slurm: a job still pending at the request's wait is cancelled and grants 0",
  ignore: !root,
  fn: () =>
    withSlurmLab(async ({ slurm, client, cluster }) => {
      const all = await client.requestTicket(NODES * CPUS_PER_NODE);
      assert.equal(all.granted, NODES * CPUS_PER_NODE);
      const res = await fetch(`http://${cluster.master.address}/v1/tickets`, {
        method: "POST",
        headers: { authorization: `Bearer ${cluster.master.token}` },
        body: JSON.stringify({ slots: 2, wait_ms: 1500 }),
      });
      const pending = await res.json();
      assert.equal(pending.granted, 0);
      assert.match(pending.source, /^\d+$/);
      assert.ok(await jobGone(slurm, pending.source), "the pending job was cancelled");
      await client.releaseTicket(all.id);
    }),
});

Deno.test({
  name: "slurm: a node drained mid-ticket fails its clones in sf_join",
  ignore: !root,
  fn: () =>
    withSlurmLab(async ({ slurm, runGuest }) => {
      let victim = "";
      const r = await runGuest(["4", "sleep", "6"], async (c) => {
        const running = await runningClones(c, 4);
        victim = running.members[0].host;
        await slurm.drain(slurm.nodes[Number(victim.slice("host".length)) - 1], "test-drain");
      });
      const failed = r.cluster.members.filter((m) => m.state === "failed");
      assert.ok(failed.length > 0);
      assert.ok(failed.every((m) => m.host === victim && /reclaimed.*DRAIN/.test(m.reason ?? "")));
      assert.ok(
        r.cluster.members.filter((m) => m.host !== victim).every((m) => m.state === "exited"),
      );
      assert.ok(r.parent.includes(`join failed=${failed.length}`), r.parent.join("\n"));
      assert.equal(r.exitCode, 10 + failed.length);
    }),
});

Deno.test({
  name: "slurm: the lab scenario (deno task lab:slurm) passes",
  ignore: !root,
  fn: async () => {
    const result = await runSlurmScenario();
    assert.deepEqual(result, {
      ok: true,
      requested: NODES * CPUS_PER_NODE + 4,
      granted: NODES * CPUS_PER_NODE,
      released: true,
      drained_failed: result.drained_failed,
    });
    assert.ok(result.drained_failed > 0);
  },
});
