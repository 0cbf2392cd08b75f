/** Test helper: run testdata/touch_worker.ts once and return its result. */

import type { TouchRequest, TouchResult } from "./touch_worker.ts";

/** A touch run in flight: its result, and a way to end it early. */
export interface Touch {
  result: Promise<TouchResult>;
  terminate(): void;
}

/** Touch `pages` of `buffer` from a new Worker. */
export function touchPages(request: TouchRequest): Touch {
  const worker = new Worker(new URL("./touch_worker.ts", import.meta.url), { type: "module" });
  const result = new Promise<TouchResult>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<TouchResult>) => {
      worker.terminate();
      resolve(event.data);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      reject(new Error(event.message));
    };
  });
  worker.postMessage(request);
  return { result, terminate: () => worker.terminate() };
}
