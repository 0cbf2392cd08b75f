import assert from "node:assert/strict";
import { DEFAULT_MTU, interfaceMtu, MAX_AUTO_MTU, resolveConfig } from "./config.ts";
import { openSocket, RECEIVE_BUFFER_BYTES } from "./socket.ts";

Deno.test("the MTU defaults to the interface's, at most jumbo frames, else 1500", () => {
  const lo = interfaceMtu("127.0.0.1");
  assert.equal(lo, Number(Deno.readTextFileSync("/sys/class/net/lo/mtu").trim()));
  assert.equal(resolveConfig({ interface: "127.0.0.1" }).mtu, Math.min(MAX_AUTO_MTU, lo!));
  assert.equal(interfaceMtu("192.0.2.77"), undefined, "no interface has this address");
  assert.equal(resolveConfig({ interface: "192.0.2.77" }).mtu, DEFAULT_MTU);
  assert.equal(resolveConfig({ interface: "127.0.0.1", mtu: 1400 }).mtu, 1400);
  assert.throws(() => resolveConfig({ mtu: 100 }), /Cannot use MTU 100: want 576\.\.65535/);
});

Deno.test("mcdist sockets get a big kernel receive buffer", async () => {
  const socket = openSocket("127.0.0.1", 0);
  try {
    const port = socket.port;
    const out = await new Deno.Command("ss", { args: ["-uamnH", `sport = :${port}`] }).output();
    const rb = Number(/rb(\d+)/.exec(new TextDecoder().decode(out.stdout))?.[1]);
    const cap = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
    // The kernel doubles what it is given (bookkeeping); without CAP_NET_ADMIN capped at rmem_max.
    const root = Deno.uid() === 0;
    assert.equal(rb, 2 * (root ? RECEIVE_BUFFER_BYTES : Math.min(RECEIVE_BUFFER_BYTES, cap)));
  } finally {
    await socket.close();
  }
});
