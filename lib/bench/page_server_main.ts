/**
 * A memory server with one synthetic fork, run as its own process (on another namespace host by
 * the fault-latency benchmark). Prints "serving <host:port>" and serves until killed.
 *
 * usage: page_server_main.ts <hostname> <fork id hex> <fork key hex> <pages>
 */
import { fromHex } from "../backend/wasm/fork_descriptor.ts";
import { PAGE_PRESENT } from "../memory/page_mark.ts";
import { UnicastPageServer } from "../memory/unicast/server.ts";

const [hostname, forkId, key, pagesText] = Deno.args;
const pages = Number(pagesText);
// Shared from the start, as a parent's snapshot is: the server's worker reads it in place.
const image = new SharedArrayBuffer(pages * 4096);
const bytes = new Uint8Array(image).fill(0x5a);
const server = UnicastPageServer.listen({ hostname });
server.addFork({
  forkId: fromHex(forkId),
  key: fromHex(key),
  pageSize: 4096,
  pageCount: pages,
  pageMap: new Uint8Array(pages).fill(PAGE_PRESENT),
  reader: {
    readPages: (first, count) => bytes.subarray(first * 4096, (first + count) * 4096),
    shared: { source: { kind: "image", bytes: image }, read: new SharedArrayBuffer(8) },
  },
  clones: 1,
});
console.log(`serving ${server.address}`);
