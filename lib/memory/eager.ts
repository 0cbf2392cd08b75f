/**
 * Eager memory: every PRESENT page of a fork fetched through the page transport before a clone
 * runs (`--memory eager`, and the fallback where userfaultfd is unavailable).
 *
 * @module
 */

import { PAGE_PRESENT } from "./page_mark.ts";
import type { PageClient } from "./transport.ts";

/** Pages asked at once: keeps the server's replies flowing without one huge request. */
const WINDOW = 8192;

/**
 * Fetch every PRESENT page of `pageMap` into `into` (page i at byte i × pageSize; other pages
 * are left as they are, i.e. zero in a fresh memory). Rejects when the client fails.
 */
export async function fetchAllPages(
  client: PageClient,
  pageMap: Uint8Array,
  into: Uint8Array,
  pageSize = 4096,
): Promise<number> {
  const wanted: number[] = [];
  for (let p = 0; p < pageMap.length; p++) if (pageMap[p] === PAGE_PRESENT) wanted.push(p);
  if (wanted.length === 0) return 0;
  const missing = new Uint8Array(pageMap.length);
  for (const p of wanted) missing[p] = 1;
  let left = wanted.length;
  let next = 0;
  const done = Promise.withResolvers<void>();
  const ask = () => {
    const end = Math.min(wanted.length, next + WINDOW);
    if (end > next) client.request(wanted.slice(next, end));
    next = end;
  };
  client.onPages((first, bytes) => {
    const count = bytes.byteLength / pageSize;
    for (let i = 0; i < count; i++) {
      const page = first + i;
      if (missing[page] !== 1) continue;
      missing[page] = 0;
      into.set(bytes.subarray(i * pageSize, (i + 1) * pageSize), page * pageSize);
      left--;
    }
    if (left === 0) done.resolve();
    else if (next - (wanted.length - left) < WINDOW / 2) ask();
  });
  ask();
  ask();
  const failed = client.failed.then((e) => Promise.reject(e));
  await Promise.race([done.promise, failed]);
  return wanted.length;
}
