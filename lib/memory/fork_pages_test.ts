// Two clones of one fork on one host, the second started after the first fetched its pages: it
// gets them from the host, the memory server is not asked again.
import assert from "node:assert/strict";
import { ForkPages } from "./fork_pages.ts";
import { Memtap } from "./memtap.ts";
import { PAGE_PRESENT } from "./page_mark.ts";
import { emptyStats, type PageClient } from "./transport.ts";
import { pageChecksum } from "./testdata/checksum.ts";
import { touchPages } from "./testdata/touch.ts";

const PS = 4096;
const PAGES = 64;

/** A page client in this process: records requests and answers them from `contents`. */
class RecordingClient implements PageClient {
  readonly failed = new Promise<Error>(() => {});
  requests: number[] = [];
  #listeners: ((first: number, bytes: Uint8Array) => void)[] = [];
  constructor(readonly contents: Uint8Array) {}
  request(pages: number[]): void {
    this.requests.push(...pages);
    setTimeout(() => {
      for (const page of pages) this.deliver(page);
    }, 0);
  }
  deliver(page: number): void {
    const bytes = this.contents.slice(page * PS, (page + 1) * PS);
    for (const listener of this.#listeners) listener(page, bytes);
  }
  onPages(listener: (first: number, bytes: Uint8Array) => void): void {
    this.#listeners.push(listener);
  }
  stats() {
    return emptyStats();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function clone(pages: ForkPages): Promise<{ memtap: Memtap; memory: WebAssembly.Memory }> {
  const memory = new WebAssembly.Memory({ initial: PAGES / 16, maximum: PAGES / 16, shared: true });
  const memtap = await Memtap.open({
    memory,
    pageSize: PS,
    pageMap: new Uint8Array(PAGES).fill(PAGE_PRESENT),
    source: pages.source,
  });
  pages.attach(memtap);
  return { memtap, memory };
}

async function checksums(memory: WebAssembly.Memory, pages: number[]): Promise<number[]> {
  const touch = touchPages({
    buffer: memory.buffer as SharedArrayBuffer,
    pages,
    pageSize: PS,
    mode: "checksum",
  });
  return (await touch.result).sums;
}

Deno.test("a clone that starts late gets its siblings' pages from the host", async () => {
  const contents = new Uint8Array(PAGES * PS);
  for (let p = 0; p < PAGES; p++) crypto.getRandomValues(contents.subarray(p * PS, (p + 1) * PS));
  const expected = (pages: number[]) =>
    pages.map((p) => pageChecksum(new Int32Array(contents.buffer, p * PS, PS / 4)));
  const client = new RecordingClient(contents);
  const pages = new ForkPages(client, PAGES);
  const first = await clone(pages);
  const second: { memtap?: Memtap } = {};
  try {
    const early = [3, 9, 10, 40];
    assert.deepEqual(await checksums(first.memory, early), expected(early));
    client.deliver(50); // a sibling's fault elsewhere, or a push
    assert.equal(pages.pagesHeld, 5);
    const late = await clone(pages);
    second.memtap = late.memtap;
    const asked = client.requests.length;
    const touched = [...early, 50, 60];
    assert.deepEqual(await checksums(late.memory, touched), expected(touched));
    assert.deepEqual(client.requests.slice(asked), [60], "only the page no clone had");
    assert.equal(late.memtap.stats().pagesFetched, touched.length);
  } finally {
    pages.detach(first.memtap);
    await first.memtap.close();
    if (second.memtap) {
      pages.detach(second.memtap);
      await second.memtap.close();
    }
  }
});
