/**
 * `bench parent-pause`: how long a parent with a big memory stays paused at sf_clone
 * (copy-on-write capture: write-protect, no copy).
 */
import { benchGuest, runOnCluster } from "./cluster_run.ts";

export interface ParentPauseOptions {
  /** Guest memory in MiB. Default 1024. */
  memoryMib?: number;
}

export interface ParentPauseReport {
  memory_mib: number;
  /** The parent's pause at sf_clone, from the master's fork timeline. */
  pause_ms: number;
  /** Pages the parent wrote later that were saved for the clone first. */
  pages_saved: number;
}

export async function benchParentPause(o: ParentPauseOptions = {}): Promise<ParentPauseReport> {
  const mib = o.memoryMib ?? 1024;
  const r = await runOnCluster({
    wasm: await benchGuest("working_set"),
    args: ["1", String(mib), "16"],
    hosts: 1,
  });
  if (r.exitCode !== 0) throw new Error(`Cannot measure parent pause: guest exited ${r.exitCode}`);
  const fork = r.forks[0];
  return {
    memory_mib: mib,
    pause_ms: Math.round((fork?.timeline.pauseMs ?? NaN) * 100) / 100,
    pages_saved: fork?.memory?.pagesSaved ?? 0,
  };
}
