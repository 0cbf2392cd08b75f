/**
 * Runs a guest through the master's API and streams its output: the shared
 * core of `snowflock run` and `snowflock demo`.
 */
import { basename } from "node:path";
import type { MasterClient } from "../control/client.ts";
import type { VmView } from "../control/messages.ts";
import { writeOutFiles } from "../control/out_files.ts";
import { resolveGuest } from "../guest/python/mod.ts";

export interface RunJobOptions {
  client: MasterClient;
  /** A WASI module, or a Python job (.py). */
  wasmPath: string;
  args: string[];
  env?: string[];
  host?: string;
  /** Copy the parent's /out here when it exits. */
  outDir?: string;
  /** Progress of long preparation (building Python on first use). */
  onProgress?: (message: string) => void;
  /** Each line of output; clone lines come tagged with their id (0 = the parent). */
  onLine(clone: number, stream: "stdout" | "stderr", line: string): void;
}

export interface JobResult {
  vm: VmView;
  exitCode: number;
  reason?: string;
}

export async function runJob(o: RunJobOptions): Promise<JobResult> {
  // A Python job runs in Snowflock's CPython (built on first use); a .wasm runs as it is.
  const guest = await resolveGuest(o.wasmPath, o.args, {
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(guest.wasm);
  } catch (e) {
    throw new Error(`Cannot read ${guest.wasm}: ${(e as Error).message}`);
  }
  const module = await o.client.uploadModule(bytes);
  const vm = await o.client.run(
    module,
    [basename(guest.wasm), ...guest.args],
    [...(o.env ?? []), ...guest.env],
    o.host,
  );
  let exitCode = 1;
  let reason: string | undefined;
  for await (const e of o.client.followJob(vm.job)) {
    if (e.kind === "output") o.onLine(e.clone, e.stream, e.line);
    else if (e.kind === "state" && e.clone > 0 && e.state === "failed") {
      o.onLine(e.clone, "stderr", `clone failed: ${e.reason ?? "unknown"}`);
    } else if (e.kind === "end") {
      exitCode = e.exitCode;
      reason = e.reason;
    }
  }
  if (o.outDir) await writeOutFiles(o.outDir, (await o.client.vmOut(vm.id)).files);
  return { vm: await o.client.vm(vm.id), exitCode, ...(reason ? { reason } : {}) };
}

/** Prints a line as `run` shows it: the parent's as is, a clone's tagged with its id. */
export function printLine(clone: number, stream: "stdout" | "stderr", line: string): void {
  const text = clone === 0 ? line : `[clone ${clone}] ${line}`;
  if (stream === "stdout") console.log(text);
  else console.error(text);
}
