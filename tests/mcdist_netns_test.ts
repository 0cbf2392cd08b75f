/**
 * mcdist across namespace hosts: a memory server on one host, clones on four others, pages by
 * real multicast over a bridge, with datagram loss injected by nftables on every host.
 */
import assert from "node:assert/strict";
import { syntheticFanout } from "../lib/mcdist/testdata/fanout.ts";
import { OVERHEAD_BYTES } from "../lib/mcdist/wire.ts";
import { netnsAvailable } from "../lib/netns/hosts.ts";

const available = netnsAvailable();
const PAGES = 256;
/** A working set of 240 pages (every 16th is a zero page), 4 KiB each in 3 datagrams. */
const ONE_PASS_BYTES = 240 * (4096 + 3 * (OVERHEAD_BYTES + 8));

if (!available.ok) console.error(`skipped mcdist namespace tests: ${available.reason}`);

Deno.test({
  name: "8 clients on 4 namespace hosts all get correct pages; one reply serves all",
  ignore: !available.ok,
  fn: async () => {
    const report = await syntheticFanout({ sizes: [8], pages: PAGES, clientPerClone: true });
    const [result] = report.results;
    // benchFanout throws when any page arrived corrupted or a clone did not finish.
    assert.equal(result.clones, 8);
    // Unicast would cost 8 passes. Re-asks from receivers that overran their socket buffer
    // (8 receiving processes on a 2-core machine, more when it is loaded) cost resends; the
    // bound leaves room for them and still rules out answering each client on its own.
    assert.ok(
      result.server_bytes <= 4.5 * ONE_PASS_BYTES,
      `${result.server_bytes} bytes for 8 clients; one pass is ${ONE_PASS_BYTES}`,
    );
    assert.ok(result.lockstep_ignored > 0, "siblings' duplicate requests were ignored");
  },
});

for (const loss of [5, 20]) {
  Deno.test({
    name: `clones on 4 namespace hosts finish with correct pages at ${loss} % kernel loss`,
    ignore: !available.ok,
    fn: async () => {
      const report = await syntheticFanout({ sizes: [4], pages: PAGES, loss });
      const [result] = report.results;
      assert.equal(report.loss_percent, loss);
      assert.ok(result.reasks > 0, "lost datagrams were asked for again");
      assert.ok((report.retransmissions ?? 0) > 0, "and sent again");
    },
  });
}
