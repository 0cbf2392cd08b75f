import assert from "node:assert/strict";
import { createHosts, type HostNet, netnsAvailable, sweepStaleHosts, withHosts } from "./hosts.ts";
import { type HarnessProcess, processAlive, spawnProcess } from "./process.ts";

const available = netnsAvailable();
if (!available.ok) console.warn(`skipped: multi-host (netns) tests: ${available.reason}`);

function netnsTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !available.ok, fn });
}

/** A command that runs `code` (a module, so `import` works) under this Deno. */
function denoEval(code: string): string[] {
  return [Deno.execPath(), "eval", code];
}

async function netnsNames(): Promise<string> {
  return new TextDecoder().decode(
    (await new Deno.Command("ip", { args: ["netns"] }).output()).stdout,
  );
}

async function linkNames(): Promise<string> {
  const output = await new Deno.Command("ip", { args: ["-o", "link"] }).output();
  return new TextDecoder().decode(output.stdout);
}

const TCP_ECHO_SERVER = (address: string, port: number): string => `
  const listener = Deno.listen({ hostname: ${JSON.stringify(address)}, port: ${port} });
  console.log("listening");
  for await (const conn of listener) {
    const buf = new Uint8Array(256);
    const n = await conn.read(buf) ?? 0;
    await conn.write(new TextEncoder().encode("echo " + new TextDecoder().decode(buf.subarray(0, n))));
    conn.close();
  }`;

const TCP_CLIENT = (address: string, port: number, text: string): string => `
  const conn = await Deno.connect({ hostname: ${JSON.stringify(address)}, port: ${port} });
  await conn.write(new TextEncoder().encode(${JSON.stringify(text)}));
  const buf = new Uint8Array(256);
  const n = await conn.read(buf) ?? 0;
  console.log("reply " + new TextDecoder().decode(buf.subarray(0, n)));
  conn.close();`;

async function tcpRoundTrip(address: string, port: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: address, port });
  try {
    await conn.write(new TextEncoder().encode(text));
    const buf = new Uint8Array(256);
    const n = await conn.read(buf) ?? 0;
    return new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    conn.close();
  }
}

netnsTest("createHosts() connects hosts with each other and with the root namespace", async () => {
  await withHosts(3, async (net) => {
    const [h0, h1, h2] = net.hosts;
    assert.equal(new Set(net.hosts.map((host) => host.address)).size, 3);
    const addr = await net.exec(h0, ["ip", "-4", "-o", "addr", "show", "dev", h0.iface]);
    assert.match(addr.stdout, new RegExp(`inet ${h0.address.replaceAll(".", "\\.")}/`));
    const routes = await net.exec(h1, ["ip", "route", "show", "224.0.0.0/4"]);
    assert.match(routes.stdout, /224\.0\.0\.0\/4 dev eth0/);

    const server = net.spawn(h0, denoEval(TCP_ECHO_SERVER(h0.address, 7001)));
    await server.waitForLine(/^listening$/, 20_000);
    // Host to host.
    const client = net.spawn(h1, denoEval(TCP_CLIENT(h0.address, 7001, "from h1")));
    assert.equal(await client.waitForLine(/^reply /, 20_000), "reply echo from h1");
    assert.equal((await client.status).code, 0);
    // Root namespace (where a master runs) to host.
    assert.equal(await tcpRoundTrip(h0.address, 7001, "from root"), "echo from root");
    // Host to root namespace, through the bridge address.
    const listener = Deno.listen({ hostname: net.bridgeAddress, port: 7002 });
    try {
      const remote = net.spawn(h2, denoEval(TCP_CLIENT(net.bridgeAddress, 7002, "from h2")));
      const conn = await listener.accept();
      const buf = new Uint8Array(256);
      const n = await conn.read(buf) ?? 0;
      assert.equal(new TextDecoder().decode(buf.subarray(0, n)), "from h2");
      assert.equal((conn.remoteAddr as Deno.NetAddr).hostname, h2.address);
      await conn.write(new TextEncoder().encode("hi h2"));
      conn.close();
      assert.equal(await remote.waitForLine(/^reply /, 20_000), "reply hi h2");
    } finally {
      listener.close();
    }
  });
});

const MULTICAST_RECEIVER = (address: string, group: string, port: number): string => `
  import dgram from "node:dgram";
  const seen = new Set();
  let ends = 0;
  const socket = dgram.createSocket({ type: "udp4", reuseAddr: true });
  socket.on("message", (msg, rinfo) => {
    const text = msg.toString();
    if (text.startsWith("seq ")) seen.add(text);
    else if (text === "end" && ends++ === 0) {
      setTimeout(() => { console.log("count " + seen.size); socket.close(); }, 300);
    } else if (text !== "end") console.log("got " + text + " from " + rinfo.address);
  });
  socket.bind(${port}, () => {
    socket.addMembership(${JSON.stringify(group)}, ${JSON.stringify(address)});
    console.log("ready");
  });`;

/**
 * Sends `messages` at about 2,000 a second: a receiver's default socket buffer
 * (~200 small datagrams) then survives ~100 ms without CPU. A bigger buffer is
 * no cure: Deno's node:dgram slows down with setRecvBufferSize(4 MiB) and drops
 * more (700 of 2,000 datagrams received, measured).
 */
const MULTICAST_SENDER = (address: string, group: string, port: number, messages: string[]) => `
  import dgram from "node:dgram";
  const socket = dgram.createSocket("udp4");
  const messages = ${JSON.stringify(messages)};
  socket.bind(0, ${JSON.stringify(address)}, async () => {
    socket.setMulticastInterface(${JSON.stringify(address)});
    for (let i = 0; i < messages.length; i++) {
      await new Promise((resolve, reject) =>
        socket.send(messages[i], ${port}, ${
  JSON.stringify(group)
}, (e) => e ? reject(e) : resolve()));
      if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    socket.close();
    console.log("sent");
  });`;

function waitReady(receivers: HarnessProcess[]): Promise<string[]> {
  return Promise.all(receivers.map((receiver) => receiver.waitForLine(/^ready$/, 20_000)));
}

netnsTest("multicast from one host reaches the other two", async () => {
  await withHosts(3, async (net) => {
    const [h0, h1, h2] = net.hosts;
    const group = "239.255.77.1";
    const receivers = [h1, h2].map((host) =>
      net.spawn(host, denoEval(MULTICAST_RECEIVER(host.address, group, 7100)))
    );
    await waitReady(receivers);
    const hellos = Array.from({ length: 5 }, () => "hello");
    const sender = net.spawn(h0, denoEval(MULTICAST_SENDER(h0.address, group, 7100, hellos)));
    for (const receiver of receivers) {
      assert.equal(await receiver.waitForLine(/^got /, 20_000), `got hello from ${h0.address}`);
    }
    assert.equal((await sender.status).code, 0);
  });
});

netnsTest("addLoss() drops about the given share of datagrams on one host only", async () => {
  await withHosts(3, async (net) => {
    const [h0, h1, h2] = net.hosts;
    const group = "239.255.77.2";
    const port = 7200;
    const total = 2_000;
    await net.addLoss(h1, { percent: 20, udpPort: port });
    const receivers = [h1, h2].map((host) =>
      net.spawn(host, denoEval(MULTICAST_RECEIVER(host.address, group, port)))
    );
    await waitReady(receivers);
    // Fifty end markers: the chance that 20 % loss drops all of them is nil.
    const messages = [
      ...Array.from({ length: total }, (_, i) => `seq ${i}`),
      ...Array.from({ length: 50 }, () => "end"),
    ];
    net.spawn(h0, denoEval(MULTICAST_SENDER(h0.address, group, port, messages)));
    const [lossy, clean] = await Promise.all(
      receivers.map(async (receiver) =>
        Number((await receiver.waitForLine(/^count /, 60_000)).split(" ")[1])
      ),
    );
    const lossShare = 1 - lossy / total;
    assert.ok(lossShare >= 0.05 && lossShare <= 0.4, `lossy host lost ${lossShare * 100} %`);
    assert.ok(clean >= total * 0.95, `host without loss got only ${clean} of ${total}`);

    await net.clearLoss(h1);
    assert.equal((await net.exec(h1, ["nft", "list", "tables"])).stdout.trim(), "");
    await net.clearLoss(h1); // Nothing to clear is fine.
  });
});

netnsTest("destroy() removes hosts and process trees, even when the test body throws", async () => {
  let kept: HostNet | undefined;
  const pids: number[] = [];
  await assert.rejects(
    withHosts(2, async (net) => {
      kept = net;
      const trees = [
        net.spawn(0, ["sh", "-c", "sleep 300 & echo child $!; wait"]),
        net.spawn(null, ["sh", "-c", "sleep 300 & echo child $!; wait"]),
        // Leaves its process group: only the sweep of the namespace's pids reaches it.
        net.spawn(1, ["sh", "-c", "setsid sleep 300 & echo child $!; wait"]),
      ];
      for (const tree of trees) {
        const line = await tree.waitForLine(/^child \d+$/, 10_000);
        pids.push(tree.pid, Number(line.split(" ")[1]));
      }
      assert.ok(pids.every(processAlive));
      throw new Error("test body failed");
    }),
    /test body failed/,
  );
  assert.ok(kept !== undefined);
  const names = [kept.bridge, ...kept.hosts.map((host) => host.netns)];
  const [netns, links] = [await netnsNames(), await linkNames()];
  for (const name of names) {
    assert.ok(!netns.includes(name), `namespace ${name} is left`);
    assert.ok(!links.includes(name), `link ${name} is left`);
  }
  assert.ok(!links.includes(kept.bridge.slice(0, -1)), "a veth is left");
  assert.deepEqual(pids.filter(processAlive), []);
  await kept.destroy(); // Idempotent.
  assert.throws(() => kept?.spawn(0, ["true"]), /destroyed/);
});

netnsTest("createHosts() honours a given subnet and `await using` destroys", async () => {
  let bridge = "";
  {
    await using net = await createHosts(2, { subnet: "10.232.77.16/28" });
    bridge = net.bridge;
    assert.equal(net.bridgeAddress, "10.232.77.17");
    assert.deepEqual(net.hosts.map((host) => host.address), ["10.232.77.18", "10.232.77.19"]);
    assert.equal(net.prefixLength, 28);
  }
  assert.ok(!(await linkNames()).includes(bridge));
});

netnsTest("createHosts() rejects bad arguments before touching the system", async () => {
  await assert.rejects(createHosts(0), RangeError);
  await assert.rejects(createHosts(2, { prefix: "Bad-Prefix" }), RangeError);
  await assert.rejects(createHosts(2, { prefix: "waytoolongprefix" }), /longer than 15/);
  await assert.rejects(createHosts(2, { subnet: "10.232.77.5/24" }), /host bits set/);
  await assert.rejects(createHosts(20, { subnet: "10.232.77.0/28" }), /no room/);
});

netnsTest(
  "sweepStaleHosts() removes what a dead process left, not what a live one owns",
  async () => {
    // A prefix of this process alone: a concurrent test process sweeping "dead"
    // entries must not take this test's fakes (nor this sweep take its fakes).
    const prefix = `w${Deno.pid.toString(36)}`;
    const exited = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
    await exited.status;
    const dead = `${prefix}-${exited.pid.toString(36)}-zzz`;
    const alive = `${prefix}-${Deno.pid.toString(36)}-zzz`;
    const ip = async (...args: string[]): Promise<void> => {
      const output = await new Deno.Command("ip", { args }).output();
      assert.ok(output.success, new TextDecoder().decode(output.stderr));
    };
    let orphan: HarnessProcess | undefined;
    try {
      await ip("netns", "add", `${dead}h0`);
      await ip("netns", "add", `${alive}h0`);
      await ip("link", "add", `${dead}b`, "type", "bridge");
      await ip(
        "link",
        "add",
        `${dead}v0`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        `${dead}h0`,
      );
      orphan = spawnProcess(["ip", "netns", "exec", `${dead}h0`, "sleep", "300"]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.ok(processAlive(orphan.pid));

      const removed = await sweepStaleHosts(prefix);
      assert.deepEqual(removed.sort(), [`${dead}b`, `${dead}h0`, `${dead}v0`]);
      assert.equal((await orphan.status).signal, "SIGKILL");
      const [netns, links] = [await netnsNames(), await linkNames()];
      assert.ok(!netns.includes(dead) && !links.includes(dead));
      assert.ok(netns.includes(`${alive}h0`));
    } finally {
      await orphan?.stop();
      for (const name of [`${dead}h0`, `${alive}h0`]) {
        await new Deno.Command("ip", { args: ["netns", "del", name], stderr: "null" }).output();
      }
      for (const name of [`${dead}v0`, `${dead}b`]) {
        await new Deno.Command("ip", { args: ["link", "del", name], stderr: "null" }).output();
      }
    }
  },
);
