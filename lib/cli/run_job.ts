/**
 * Runs a guest through the master's API and streams its output: the shared
 * core of `snowflock run` and `snowflock demo`.
 */
import { basename } from "node:path";
import type { MasterClient } from "../control/client.ts";
import type { VmView } from "../control/messages.ts";
import { writeOutFiles } from "../control/out_files.ts";

export interface RunJobOptions {
  client: MasterClient;
  wasmPath: string;
  args: string[];
  env?: string[];
  host?: string;
  /** Copy the parent's /out here when it exits. */
  outDir?: string;
  /** Each line of output; clone lines come tagged with their id (0 = the parent). */
  onLine(clone: number, stream: "stdout" | "stderr", line: string): void;
}

export interface JobResult {
  vm: VmView;
  exitCode: number;
  reason?: string;
}

export async function runJob(o: RunJobOptions): Promise<JobResult> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(o.wasmPath);
  } catch (e) {
    throw new Error(`Cannot read ${o.wasmPath}: ${(e as Error).message}`);
  }
  const module = await o.client.uploadModule(bytes);
  const vm = await o.client.run(module, [basename(o.wasmPath), ...o.args], o.env ?? [], o.host);
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
