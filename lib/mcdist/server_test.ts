// Server and clients in one process over loopback multicast, with a shim that loses, duplicates
// and reorders datagrams on their way in.
import assert from "node:assert/strict";
import { accessOf, isPageContent, syntheticFork, workingSet } from "./testdata/fanout_fork.ts";
import { driveClones } from "./testdata/fanout_clones.ts";
import type { ServedFork } from "../memory/transport.ts";
import { type McdistClient, McdistError, openMcdistClient } from "./client.ts";
import { groupFor, type McdistConfig, resolveConfig } from "./config.ts";
import { probeMulticast } from "./probe.ts";
import { type McdistServer, startMcdistServer } from "./server.ts";
import { type InboundShim, openGroupReceiver, openSocket, PacketStamp } from "./socket.ts";
import { decodePacket, type Heard, PacketKey, PacketType } from "./wire.ts";

const PAGE = 4096;

function config(): Partial<McdistConfig> {
  // MTU 1500, not loopback's own: a page then travels in three parts.
  return { interface: "127.0.0.1", port: 40_000 + Math.floor(Math.random() * 20_000), mtu: 1500 };
}

function fork(clones: number, pageCount = 512): ServedFork {
  return syntheticFork({
    forkId: crypto.getRandomValues(new Uint8Array(16)),
    key: crypto.getRandomValues(new Uint8Array(32)),
    pageSize: PAGE,
    pageCount,
    clones,
  });
}

/** Drops `loss`, duplicates `dup` and delays up to 3 ms (reordering) a share of datagrams. */
function lossyShim(loss: number, dup: number, reorder: number): InboundShim {
  return (packet, deliver) => {
    if (Math.random() < loss) return;
    const copies = Math.random() < dup ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      if (Math.random() < reorder) setTimeout(() => deliver(packet), Math.random() * 3);
      else deliver(packet);
    }
  };
}

interface Rig {
  server: McdistServer;
  clients: McdistClient[];
  fork: ServedFork;
  [Symbol.asyncDispose](): Promise<void>;
}

async function rig(
  clients: number,
  options: { clones?: number; shim?: InboundShim; multicast?: boolean; readahead?: false } = {},
): Promise<Rig> {
  const cfg = config();
  const served = fork(options.clones ?? clients);
  const server = await startMcdistServer({
    config: cfg,
    inbound: options.shim,
    readahead: options.readahead,
  });
  server.addFork(served);
  const opened = await Promise.all(
    Array.from({ length: clients }, () =>
      openMcdistClient(accessOf(served, server.address), {
        config: cfg,
        inbound: options.shim,
        multicast: options.multicast,
      })),
  );
  return {
    server,
    clients: opened,
    fork: served,
    async [Symbol.asyncDispose]() {
      await Promise.all(opened.map((c) => c.close()));
      await server.close();
    },
  };
}

function drive(r: Rig, client: McdistClient, pages = 256) {
  return driveClones(client, {
    clones: 2,
    workingSet: workingSet(pages),
    outstanding: 8,
    pageSize: PAGE,
    check: (page, bytes) => isPageContent(r.fork.forkId, page, bytes, PAGE),
  });
}

Deno.test("every client gets correct pages despite 20 % loss, duplication and reordering", async () => {
  await using r = await rig(3, { shim: lossyShim(0.2, 0.1, 0.2) });
  const results = await Promise.all(r.clients.map((c) => drive(r, c)));
  for (const result of results) assert.equal(result.bad, 0);
  const server = r.server.stats(r.fork.forkId);
  assert.ok(server.retransmits > 0, "lost pages were sent again");
  assert.ok(r.clients.every((c) => c.stats().retransmits > 0), "clients asked again");
  assert.ok(r.clients.some((c) => c.stats().rejected > 0), "duplicates were dropped as replays");
});

Deno.test("one multicast reply serves every client: 4 clients cost about one", async () => {
  // Without read-ahead, whose pages past the end of the working set would be counted too.
  await using r = await rig(4, { readahead: false });
  await Promise.all(r.clients.map((c) => drive(r, c)));
  const pages = workingSet(256).length;
  const stats = r.server.stats(r.fork.forkId);
  const onePass = pages * (PAGE + 3 * 64);
  assert.ok(stats.bytesSent < onePass * 1.2, `${stats.bytesSent} bytes for ${pages} pages`);
  assert.equal(stats.multicastBytes, stats.bytesSent);
  assert.ok(r.server.counters(r.fork.forkId).lockstepIgnored > 0, "siblings' duplicates ignored");
  for (const c of r.clients) assert.ok(c.stats().bytesReceived >= pages * PAGE);
});

Deno.test("forged and replayed requests are rejected, counted and not answered", async () => {
  await using r = await rig(1, { clones: 2 });
  const socket = openSocket("127.0.0.1", 0);
  try {
    const [address, port] = r.server.address.split(":");
    const stamp = new PacketStamp();
    const request = (key: PacketKey) =>
      stamp.encode({
        flags: 0,
        forkId: r.fork.forkId,
        body: {
          type: PacketType.REQUEST,
          rate: 0,
          outstanding: 1,
          heard: { sender: 0, group: 0, unicast: 0 },
          runs: [{ first: 0, count: 1 }],
        },
      }, key);
    const send = (bytes: Uint8Array) => socket.send(bytes, { address, port: Number(port) });
    const forged = new PacketKey(new Uint8Array(32).fill(1));
    const forkKey = new PacketKey(r.fork.key);
    send(request(forged));
    const genuine = request(forkKey);
    forged.free();
    forkKey.free();
    send(genuine);
    await until(() => r.server.stats(r.fork.forkId).packetsSent === 3);
    send(genuine);
    send(new Uint8Array([1, 2, 3]));
    await until(() => r.server.stats().rejected === 3);
    await delay(50); // time for a wrong second answer to go out
    const stats = r.server.stats(r.fork.forkId);
    assert.equal(stats.rejected, 2, "forged and replayed");
    assert.equal(r.server.stats().rejected, 3, "plus the malformed one, in the total");
    assert.equal(stats.packetsSent, 3, "one answer: a 4 KiB page in three parts at MTU 1500");
  } finally {
    await socket.close();
  }
});

/**
 * A server of a 2-clone fork whose lockstep window outlasts any test: a page asked for again is
 * sent again only on the asker's evidence that it was lost.
 */
async function patientServer() {
  const cfg = config();
  const served = fork(2);
  const server = await startMcdistServer({ config: cfg, readahead: false, lockstepMs: 60_000 });
  server.addFork(served);
  return { cfg, served, server };
}

Deno.test("a page lost on its way is sent again at the first ask of a host that heard later ones", async () => {
  const { cfg, served, server } = await patientServer();
  const pageOf = (packet: Uint8Array) =>
    packet[5] === PacketType.PAGES ? new DataView(packet.buffer).getUint32(40) : -1;
  let dropped = 0;
  const losesPage5Once: InboundShim = (packet, deliver) => {
    if (pageOf(packet) === 5 && dropped < 3) dropped++;
    else deliver(packet);
  };
  // Nor is a client's re-ask timeout: only the loss evidence can help.
  const open = (inbound?: InboundShim) =>
    openMcdistClient(accessOf(served, server.address), {
      config: cfg,
      inbound,
      minTimeoutMs: 60_000,
      maxTimeoutMs: 60_000,
    });
  const lossy = await open(losesPage5Once);
  const sibling = await open();
  try {
    const seen = new Set<number>();
    lossy.onPages((first, bytes) => {
      for (let i = 0; i < bytes.length / PAGE; i++) seen.add(first + i);
    });
    sibling.request([5]);
    await until(() => sibling.outstanding === 0);
    sibling.request([6]);
    await until(() => seen.has(6));
    assert.ok(!seen.has(5) && dropped === 3, "page 5 was lost on the lossy host only");
    lossy.request([5]);
    await until(() => seen.has(5));
    assert.equal(lossy.stats().retransmits, 0, "answered at the first ask");
    assert.equal(server.stats(served.forkId).retransmits, 1);
  } finally {
    await lossy.close();
    await sibling.close();
    await server.close();
  }
});

/**
 * Pages 0..24 of a 2-clone fork (page 15 is a zero page) sent to the group once, in order; the
 * stamp of the datagram that carried page 20's last part; and two raw hosts that ask for page 20
 * again telling any `heard`.
 */
async function pageSentOnce(lockstepMs: number) {
  const cfg = config();
  const served = fork(2);
  const server = await startMcdistServer({ config: cfg, readahead: false, lockstepMs });
  server.addFork(served);
  // A sibling that asks once: on a busy machine its re-ask would be a second send of page 20.
  const sibling = await openMcdistClient(accessOf(served, server.address), {
    config: cfg,
    minTimeoutMs: 60_000,
    maxTimeoutMs: 60_000,
  });
  const resolved = resolveConfig(cfg);
  const group = openGroupReceiver(
    groupFor(resolved, served.forkId),
    resolved.port,
    resolved.interface,
  );
  const hosts = [openSocket("127.0.0.1", 0), openSocket("127.0.0.1", 0)];
  const key = new PacketKey(served.key);
  const close = async () => {
    for (const socket of [group, ...hosts]) await socket.close();
    key.free();
    await sibling.close();
    await server.close();
  };
  try {
    let carried: { sender: number; seq: number } | undefined;
    group.receive((bytes) => {
      const result = decodePacket(bytes, () => ({ key, pageSize: PAGE }));
      const body = result.ok ? result.packet.body : undefined;
      if (result.ok && body?.type === PacketType.PAGES && body.first === 20) {
        carried = { sender: result.packet.sender, seq: result.packet.seq };
      }
    });
    sibling.request(Array.from({ length: 25 }, (_, page) => page).filter((page) => page !== 15));
    await until(() => sibling.outstanding === 0 && carried !== undefined);
    const [address, port] = server.address.split(":");
    const ask = (host: number, heard: Heard) =>
      hosts[host].send(
        new PacketStamp().encode({
          flags: 0,
          forkId: served.forkId,
          body: {
            type: PacketType.REQUEST,
            rate: 0,
            outstanding: 1,
            heard,
            runs: [{ first: 20, count: 1 }],
          },
        }, key),
        { address, port: Number(port) },
      );
    const retransmits = () => server.stats(served.forkId).retransmits;
    const ignored = () => server.counters(served.forkId).lockstepIgnored;
    return { ...carried!, ask, retransmits, ignored, [Symbol.asyncDispose]: close };
  } catch (error) {
    await close();
    throw error;
  }
}

Deno.test("only a later packet on the page's own route proves it lost", async () => {
  await using page = await pageSentOnce(60_000);
  const { sender, seq } = page;
  page.ask(0, { sender, group: seq - 1, unicast: seq + 10 }); // the group's datagram may be queued
  await until(() => page.ignored() === 1);
  assert.equal(page.retransmits(), 0, "still on its way: not sent again");
  page.ask(1, { sender, group: seq + 1, unicast: 0 }); // a later group datagram came first: lost
  await until(() => page.retransmits() === 1);
});

Deno.test("a page a lagging host has not read yet is not sent again, however late", async () => {
  await using page = await pageSentOnce(1);
  const { sender, seq } = page;
  await delay(20); // past the lockstep window: once that alone made it lost
  page.ask(0, { sender, group: 0, unicast: 0 }); // behind the datagrams before the page too
  await until(() => page.ignored() === 1);
  assert.equal(page.retransmits(), 0, "in the host's socket buffer, not lost");
  // A host that heard the datagrams just before the page may have lost the last of a burst.
  page.ask(1, { sender, group: seq - 1, unicast: 0 });
  await until(() => page.retransmits() === 1);
});

Deno.test("idle clients receive pushed pages they never asked for", async () => {
  await using r = await rig(2);
  const seen = new Set<number>();
  r.clients[1].onPages((first, bytes) => {
    for (let i = 0; i < bytes.length / PAGE; i++) seen.add(first + i);
  });
  await drive(r, r.clients[0], 16);
  r.server.pushPages(r.fork.forkId, [100, 101, 102, 200]);
  await until(() => seen.has(200));
  assert.ok([100, 101, 102].every((p) => seen.has(p)));
  assert.equal(r.server.counters(r.fork.forkId).pushedPages, 4);
  assert.equal(
    r.server.pagesPushed(r.fork.forkId),
    4 + r.server.counters(r.fork.forkId).readaheadPages,
  );
});

Deno.test("the server remembers the order in which pages were first asked for", async () => {
  await using r = await rig(2, { readahead: false });
  for (const page of [70, 3, 90, 3, 70, 12]) {
    r.clients[0].request([page]);
    await until(() => r.clients[0].outstanding === 0);
  }
  assert.deepEqual(r.server.demandOrder(r.fork.forkId), [70, 3, 90, 12]);
  assert.deepEqual(r.server.demandOrder(new Uint8Array(16)), [], "an unknown fork");
});

/**
 * Client 0 runs two iterations of an unrolled loop over every 4th page, loads issued last to
 * first: a scan, whose first read-ahead window is 72 .. 100. Returns the pages `watcher` got.
 */
async function scanToFirstWindow(r: Rig, watcher: McdistClient): Promise<Set<number>> {
  const seen = new Set<number>();
  watcher.onPages((first, bytes) => {
    for (let i = 0; i < bytes.length / PAGE; i++) seen.add(first + i);
  });
  for (const page of [52, 48, 44, 40, 68, 64, 60, 56]) {
    r.clients[0].request([page]);
    await until(() => seen.has(page));
  }
  await until(() => seen.has(100));
  return seen;
}

Deno.test("a scan is read ahead: the clones get the next pages before they ask", async () => {
  await using r = await rig(2);
  const seen = await scanToFirstWindow(r, r.clients[1]);
  assert.ok([72, 76, 80, 84].every((p) => seen.has(p)));
  const counters = r.server.counters(r.fork.forkId);
  assert.ok(counters.readaheadPages >= 4, `${counters.readaheadPages} pages read ahead`);
  assert.equal(counters.pushedPages, 0);
  assert.ok(!seen.has(73) && !seen.has(36), "only the scan's own pages");
});

Deno.test("a lost page asked for again does not stop the read-ahead of the scan", async () => {
  await using r = await rig(2);
  const seen = await scanToFirstWindow(r, r.clients[1]);
  r.clients[0].request([40]); // delivered before: lost, as far as the server can tell
  await until(() => r.clients[0].outstanding === 0);
  r.clients[0].request([104]); // just past the window: the clones kept scanning
  await until(() => seen.has(104));
  await until(() => seen.has(164)); // the next window, twice as long: 104 .. 164
});

Deno.test("a host that runs past a window first continues a sibling host's scan", async () => {
  await using r = await rig(3);
  const seen = await scanToFirstWindow(r, r.clients[2]);
  r.clients[1].request([104]); // its own requests show no scan yet
  await until(() => seen.has(104));
  await until(() => seen.has(164)); // the scan's next window, twice as long: 104 .. 164
});

/**
 * Pages a host whose clones start after the first host's walked a strided scan asks for, walking
 * it too. With `endgame`, the first host is done by then: the late one is served alone, by
 * unicast, and may never have heard the group.
 */
async function lateHostAsks(endgame: boolean): Promise<{ asked: number; of: number }> {
  await using r = await rig(1, { clones: 2 });
  const scan = Array.from({ length: 64 }, (_, i) => 4 * i);
  /** Walks the scan as one faulting clone; returns the pages it had to ask for. */
  const walk = async (client: McdistClient): Promise<number> => {
    const seen = new Set<number>();
    client.onPages((first, bytes) => {
      for (let i = 0; i < bytes.length / PAGE; i++) seen.add(first + i);
    });
    let asked = 0;
    for (const page of scan) {
      if (seen.has(page)) continue;
      asked++;
      client.request([page]);
      await until(() => seen.has(page));
    }
    return asked;
  };
  await walk(r.clients[0]); // the first host's clones: the scan goes out to the group
  if (endgame) {
    await r.clients[0].close();
    await delay(350); // past the end game's window of active requesters
  }
  const late = await openMcdistClient(accessOf(r.fork, r.server.address), {
    config: r.server.config,
  });
  try {
    return { asked: await walk(late), of: scan.length };
  } finally {
    await late.close();
  }
}

Deno.test("a host whose clones start late catches up by read-ahead, not a round trip a page", async () => {
  const { asked, of } = await lateHostAsks(false);
  assert.ok(asked <= of / 2, `the late host asked for ${asked} of ${of}`);
});

Deno.test("a host whose clones start after the others ended catches up by unicast read-ahead", async () => {
  const { asked, of } = await lateHostAsks(true);
  assert.ok(asked <= of / 2, `the late host asked for ${asked} of ${of}`);
});

Deno.test("without read-ahead only asked-for pages are sent", async () => {
  const cfg = config();
  const served = fork(1);
  const server = await startMcdistServer({ config: cfg, readahead: false });
  server.addFork(served);
  const client = await openMcdistClient(accessOf(served, server.address), { config: cfg });
  try {
    const seen = new Set<number>();
    client.onPages((first, bytes) => {
      for (let i = 0; i < bytes.length / PAGE; i++) seen.add(first + i);
    });
    for (const page of [0, 1, 2, 3]) {
      client.request([page]);
      await until(() => seen.has(page));
    }
    await delay(50);
    assert.deepEqual([...seen].sort((a, b) => a - b), [0, 1, 2, 3]);
    assert.equal(server.counters(served.forkId).readaheadPages, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("the end game answers the last client by unicast", async () => {
  await using r = await rig(2);
  await drive(r, r.clients[0], 32);
  await r.clients[0].close();
  await delay(20);
  const before = r.server.counters(r.fork.forkId).unicastPages;
  assert.equal(before, 0);
  const result = await drive(r, r.clients[1], 128);
  assert.equal(result.bad, 0);
  assert.ok(r.server.counters(r.fork.forkId).unicastPages > 0);
});

Deno.test("a client without multicast gets its pages by unicast", async () => {
  await using r = await rig(2, { multicast: false });
  const results = await Promise.all(r.clients.map((c) => drive(r, c, 64)));
  assert.ok(results.every((res) => res.bad === 0));
  assert.equal(r.server.stats(r.fork.forkId).multicastBytes, 0);
});

Deno.test("a client reports failure when the server stops answering", async () => {
  const cfg = config();
  const served = fork(2);
  const server = await startMcdistServer({ config: cfg });
  const client = await openMcdistClient(accessOf(served, server.address), {
    config: cfg,
    failAfterMs: 200,
  });
  await server.close(); // the fork was never added: nothing will answer
  client.request([0]);
  const error = await client.failed;
  assert.ok(error instanceof McdistError);
  assert.match(error.message, /^Cannot fetch pages: server .* sent nothing for \d+ ms/);
  await client.close();
});

Deno.test("probeMulticast() finds multicast on loopback and reports why not elsewhere", async () => {
  const ok = await probeMulticast({ interface: "127.0.0.1", port: config().port });
  assert.equal(ok.mode, "multicast", ok.reason);
  const bad = await probeMulticast({ interface: "192.0.2.123", port: config().port });
  assert.equal(bad.mode, "unicast");
  assert.match(bad.reason ?? "", /Cannot join multicast group/);
});

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("Cannot wait: condition not met in time");
    await delay(5);
  }
}
