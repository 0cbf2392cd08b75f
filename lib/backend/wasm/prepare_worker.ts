/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * Runs module preparation in a Worker. Asyncify and optimization of a big
 * guest (CPython) take seconds of CPU; on an agent's main thread they would
 * stall its heartbeats and every VM it serves.
 */
import { type PreparedModule, prepareModuleCached } from "./prepare.ts";

interface Request {
  bytes: Uint8Array;
  cacheDir: string;
}

export type PrepareReply =
  | { type: "ready" }
  | { type: "done"; ok: true; module: PreparedModule }
  | { type: "done"; ok: false; name: string; message: string };

self.onmessage = async (e: MessageEvent<Request>) => {
  let reply: PrepareReply;
  try {
    const module = await prepareModuleCached(e.data.bytes, e.data.cacheDir);
    reply = { type: "done", ok: true, module };
  } catch (error) {
    const err = error as Error;
    reply = { type: "done", ok: false, name: err.name, message: err.message };
  }
  self.postMessage(reply);
};

// binaryen initialises with a top-level await: a message posted before this
// module finished evaluating would find no handler, so the host waits for this.
self.postMessage({ type: "ready" } satisfies PrepareReply);
