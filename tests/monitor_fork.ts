/** The fork both monitor tests watch: the semantics guest forking 8 clones that run 3 s. */
import assert from "node:assert/strict";
import { runJob } from "../lib/cli/run_job.ts";
import type { MasterClient } from "../lib/control/client.ts";
import { testGuest } from "./guests.ts";

export async function runFork(client: MasterClient): Promise<void> {
  const wasmPath = await testGuest("semantics");
  // "sleep": the clones run 3 s, so even a starved watcher sees the fork running.
  const run = await runJob({ client, wasmPath, args: ["8", "sleep"], onLine: () => {} });
  if (run.exitCode === 0) return;
  const failed = (await client.status()).clusters.flatMap((c) =>
    c.members.filter((m) => m.state !== "exited").map((m) =>
      `clone ${m.clone}: ${m.state} ${m.reason ?? ""}`
    )
  );
  assert.fail(
    `Cannot run the fork: exit ${run.exitCode} ${run.reason ?? ""}\n${failed.join("\n")}`,
  );
}
