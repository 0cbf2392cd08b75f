/**
 * {@link prepareModuleCached} with the work on its own Worker (see
 * prepare_worker.ts for why). A cache hit is read here: starting a Worker
 * that loads binaryen costs more than reading the cached module.
 */
import { GuestError } from "./errors.ts";
import { type PreparedModule, readPreparedCache } from "./prepare.ts";
import type { PrepareReply } from "./prepare_worker.ts";

const WORKER_URL = new URL("./prepare_worker.ts", import.meta.url);

export async function prepareModuleOffThread(
  bytes: Uint8Array,
  cacheDir: string,
): Promise<PreparedModule> {
  return await readPreparedCache(bytes, cacheDir) ?? await prepareOnWorker(bytes, cacheDir);
}

function prepareOnWorker(bytes: Uint8Array, cacheDir: string): Promise<PreparedModule> {
  const worker = new Worker(WORKER_URL, { type: "module" });
  return new Promise<PreparedModule>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<PrepareReply>) => {
      if (e.data?.type === "ready") {
        worker.postMessage({ bytes, cacheDir });
        return;
      }
      // binaryen's runtime (Emscripten) may post messages of its own from a worker: not ours.
      if (e.data?.type !== "done") return;
      worker.terminate();
      if (e.data.ok) resolve(e.data.module);
      // A GuestError (bad module, unknown imports) keeps its type: callers report it to users.
      else if (e.data.name === "GuestError") reject(new GuestError(e.data.message));
      else reject(new Error(e.data.message));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      reject(new Error(`Cannot prepare module: ${e.message}`));
    };
  });
}
