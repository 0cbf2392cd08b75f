/** Test helper: hold one spare fault worker and wait until it is up. */
import { holdFaultWorkers, idleFaultWorkers } from "../fault_worker_handle.ts";

/** Holds a pool of one fault worker, resolved once it idles; call the result to release it. */
export async function oneSpareFaultWorker(): Promise<() => void> {
  const release = holdFaultWorkers(1);
  const deadline = Date.now() + 10_000;
  while (idleFaultWorkers() < 1) {
    if (Date.now() > deadline) {
      release();
      throw new Error("no spare fault worker started within 10 s");
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return release;
}
