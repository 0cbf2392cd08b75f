/**
 * Every avoidance heuristic on the benchmark guest that gives each one pages to avoid
 * (lib/bench/guests/avoidance.c), through real agents: with all on the clones fetch fewer pages
 * than with none, each heuristic avoids some, SNOWFLOCK_AVOID=none turns them all off (a clone's
 * own sf_hint_overwrite included), and the parent finds every clone's checksum right.
 */
import assert from "node:assert/strict";
import { benchGuest, runOnCluster } from "../lib/bench/cluster_run.ts";
import type { MemberView } from "../lib/control/messages.ts";
import { HEURISTICS } from "../lib/memory/heuristics.ts";

const CLONES = 2;

async function runAvoidance(avoid: string): Promise<MemberView[]> {
  const r = await runOnCluster({
    wasm: await benchGuest("avoidance"),
    args: [String(CLONES), "1"],
    hosts: 2,
    env: { SNOWFLOCK_AVOID: avoid },
  });
  assert.equal(r.exitCode, 0, JSON.stringify([...r.lines]));
  assert.ok(
    r.lines.get(0)?.includes(`checked ${CLONES} clones, 0 bad`),
    `avoid ${avoid}: ${r.lines.get(0)?.join("\n")}`,
  );
  const members = r.forks.flatMap((c) => c.members);
  assert.equal(members.length, CLONES);
  for (const m of members) assert.equal(m.memory?.mode, "lazy", JSON.stringify(m));
  return members;
}

Deno.test("memory: the avoidance guest's clones fetch fewer pages with every heuristic on than with none", async () => {
  const on = await runAvoidance("all");
  const off = await runAvoidance("none");
  for (const [i, m] of on.entries()) {
    const memory = m.memory!;
    for (const h of HEURISTICS) assert.ok(memory.pagesAvoided[h] > 0, JSON.stringify(memory));
    const without = off[i].memory!;
    for (const h of HEURISTICS) assert.equal(without.pagesAvoided[h], 0, JSON.stringify(without));
    assert.ok(
      without.pagesFetched > memory.pagesFetched,
      `fetched ${without.pagesFetched} with no heuristic, ${memory.pagesFetched} with all`,
    );
  }
});
