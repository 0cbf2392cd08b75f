/**
 * The free-chunk heuristic on a guest that frees memory (tests/guests/free_chunks.c), through
 * real agents: pages wholly inside the parent's free dlmalloc chunks never cross the network,
 * and clones that malloc that space again still compute correct results.
 */
import assert from "node:assert/strict";
import { runOnCluster } from "../lib/bench/cluster_run.ts";
import type { MemberView } from "../lib/control/messages.ts";
import { testGuest } from "./guests.ts";

const CLONES = 2;
const BLOCKS = 16;
const KIB = 256;
const BLOCK_PAGES = (KIB * 1024) / 4096;
/**
 * The guest frees blocks 1, 3, …, 15: 7 stay free chunks between blocks in use, 15 merges into
 * the top chunk (free too), and a clone's malloc of it again comes from the top. Each freed
 * block holds at least BLOCK_PAGES - 2 whole pages past the chunk header.
 */
const FREED = BLOCKS / 2;
const FREED_PAGES = FREED * (BLOCK_PAGES - 2);
/** The blocks still in use, which clones read and so must fetch. */
const KEPT_PAGES = (BLOCKS / 2) * BLOCK_PAGES;

async function runFreeChunks(avoid: string): Promise<MemberView[]> {
  const r = await runOnCluster({
    wasm: await testGuest("free_chunks"),
    args: [String(CLONES), String(BLOCKS), String(KIB)],
    hosts: 2,
    env: { SNOWFLOCK_AVOID: avoid },
  });
  assert.equal(r.exitCode, 0, JSON.stringify([...r.lines]));
  for (let id = 1; id <= CLONES; id++) {
    assert.ok(
      r.lines.get(id)?.includes(`clone ${id} checked ok bad=0`),
      `clone ${id} (avoid ${avoid}): ${r.lines.get(id)?.join("\n")}`,
    );
  }
  const members = r.forks.flatMap((c) => c.members);
  assert.equal(members.length, CLONES);
  for (const m of members) assert.equal(m.memory?.mode, "lazy", JSON.stringify(m));
  return members;
}

Deno.test("memory: pages inside the parent's free malloc chunks are never fetched, and clones reuse them", async () => {
  const on = await runFreeChunks("all");
  const off = await runFreeChunks("zero,untouched,hinted");
  for (const [i, m] of on.entries()) {
    const memory = m.memory!;
    // Each clone mallocs and writes every freed block again, so it touches every free page.
    assert.ok(memory.pagesAvoided.free >= FREED_PAGES, JSON.stringify(memory));
    assert.ok(memory.pagesAvoided.free <= FREED * BLOCK_PAGES, JSON.stringify(memory));
    assert.ok(memory.pagesFetched < KEPT_PAGES + 128, JSON.stringify(memory));
    // Without the heuristic the same clone fetches the old contents of the freed blocks.
    const without = off[i].memory!;
    assert.equal(without.pagesAvoided.free, 0, JSON.stringify(without));
    assert.ok(
      without.pagesFetched >= memory.pagesFetched + FREED_PAGES,
      `fetched ${without.pagesFetched} without the heuristic, ${memory.pagesFetched} with it`,
    );
  }
});
