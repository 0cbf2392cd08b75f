import assert from "node:assert/strict";
import { UdpSocket } from "./udp.ts";

function collect(socket: UdpSocket, want: number) {
  const got: { bytes: Uint8Array; port: number; address: string }[] = [];
  const done = Promise.withResolvers<void>();
  socket.receive((bytes, from) => {
    got.push({ bytes: bytes.slice(), ...from }); // valid during the call only
    if (got.length === want) done.resolve();
  });
  return { got, done: done.promise };
}

Deno.test("datagrams arrive whole, in batches, with the sender's address", async () => {
  const rx = UdpSocket.bind("127.0.0.1", 0, { batch: 4 });
  const tx = UdpSocket.bind("127.0.0.1", 0);
  try {
    const { got, done } = collect(rx, 10);
    // More than one batch, sizes from empty to a jumbo frame's worth.
    const sizes = [0, 1, 100, 4096, 8972, 3, 65507, 7, 4200, 9];
    for (const [i, size] of sizes.entries()) {
      assert.ok(tx.send(new Uint8Array(size).fill(i + 1), { address: "127.0.0.1", port: rx.port }));
    }
    await done;
    assert.deepEqual(got.map((g) => g.bytes.byteLength), sizes);
    for (const [i, g] of got.entries()) {
      assert.ok(g.bytes.every((b) => b === i + 1), `datagram ${i} intact`);
      assert.equal(g.port, tx.port);
      assert.equal(g.address, "127.0.0.1");
    }
  } finally {
    await Promise.all([rx.close(), tx.close()]);
  }
});

Deno.test("close() wakes a receive that is waiting, and later sends report failure", async () => {
  const socket = UdpSocket.bind("127.0.0.1", 0);
  socket.receive(() => assert.fail("nothing was sent"));
  await new Promise((resolve) => setTimeout(resolve, 20)); // the receive is waiting now
  await socket.close();
  assert.equal(socket.send(new Uint8Array(1), { address: "127.0.0.1", port: 9 }), false);
  await socket.close(); // twice is fine
});

Deno.test("every member of a multicast group on loopback gets each datagram", async () => {
  const group = "239.255.77.201";
  const first = UdpSocket.bind("0.0.0.0", 0, { reuseAddr: true });
  const port = first.port;
  const second = UdpSocket.bind("0.0.0.0", port, { reuseAddr: true });
  const sender = UdpSocket.bind("127.0.0.1", 0);
  try {
    for (const member of [first, second]) member.joinGroup(group, "127.0.0.1");
    sender.setMulticastSending("127.0.0.1", 1);
    const a = collect(first, 3);
    const b = collect(second, 3);
    for (let i = 0; i < 3; i++) sender.send(new Uint8Array([i]), { address: group, port });
    await Promise.all([a.done, b.done]);
    for (const { got } of [a, b]) assert.deepEqual(got.map((g) => g.bytes[0]), [0, 1, 2]);
  } finally {
    await Promise.all([first.close(), second.close(), sender.close()]);
  }
});

Deno.test("bad addresses are refused with the operation named", () => {
  assert.throws(() => UdpSocket.bind("300.0.0.1", 0), /Cannot bind UDP 300\.0\.0\.1:0/);
  const socket = UdpSocket.bind("127.0.0.1", 0);
  try {
    assert.throws(() => socket.joinGroup("10.0.0.1", "127.0.0.1"), /Cannot join 10\.0\.0\.1/);
    assert.throws(
      () => socket.send(new Uint8Array(1), { address: "nowhere", port: 1 }),
      /Cannot send to nowhere:1/,
    );
  } finally {
    void socket.close();
  }
});

Deno.test("a handler that closes its socket gets nothing more of the batch", async () => {
  const rx = UdpSocket.bind("127.0.0.1", 0);
  const tx = UdpSocket.bind("127.0.0.1", 0);
  try {
    for (let i = 0; i < 5; i++) {
      tx.send(new Uint8Array([i]), { address: "127.0.0.1", port: rx.port });
    }
    await new Promise((resolve) => setTimeout(resolve, 20)); // all five queued: one batch
    const got: number[] = [];
    const closed = Promise.withResolvers<void>();
    rx.receive((bytes) => {
      got.push(bytes[0]);
      if (got.length === 2) rx.close().then(closed.resolve);
    });
    await closed.promise;
    assert.deepEqual(got, [0, 1]);
  } finally {
    await Promise.all([rx.close(), tx.close()]);
  }
});
