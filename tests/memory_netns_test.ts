/**
 * Memory-on-demand across namespace hosts: a master in the root namespace, agents on two
 * namespace hosts; the parent runs on node1, so clones on node2 fetch its pages over the
 * unicast transport between hosts (lazy), and with `--memory eager` too.
 */
import assert from "node:assert/strict";
import { MasterClient } from "../lib/control/client.ts";
import { createHosts, netnsAvailable } from "../lib/netns/hosts.ts";
import { tempDir } from "./harness/temp_dir.ts";
import { testGuest } from "./guests.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const snowflock = (...args: string[]) => [Deno.execPath(), "run", "-A", MAIN, ...args];
const available = netnsAvailable();

for (const memory of ["lazy", "eager"] as const) {
  Deno.test({
    name: `memory (${memory}): clones on another namespace host read the parent's clone-time pages`,
    ignore: !available.ok,
    fn: async () => {
      await using net = await createHosts(2);
      await using data = await tempDir("sf-memory-netns");
      const listen = `${net.bridgeAddress}:7490`;
      const master = net.spawn(
        null,
        snowflock("master", "--listen", listen, "--data-dir", data.path, "--token", "tok"),
      );
      await master.waitForLine(/master listening/);
      net.hosts.map((h, i) =>
        net.spawn(
          h,
          snowflock(
            "agent",
            "--join",
            listen,
            "--name",
            `node${i + 1}`,
            "--slots",
            "2",
            "--memory",
            memory,
          ),
          { env: { SNOWFLOCK_TOKEN: "tok" } },
        )
      );
      const client = new MasterClient(listen, "tok");
      for (let i = 0; i < 150; i++) {
        const s = await client.status().catch(() => undefined);
        if (s?.hosts.filter((h) => h.state === "up").length === 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const wasm = await testGuest("memory_check");
      const run = await net.exec(null, [
        ...snowflock("run", "--master", listen, "--token", "tok", "--host", "node1", wasm),
        "--",
        "3",
        "800",
        "100",
        "50",
        String(1 + Math.floor(Math.random() * 1e6)),
      ]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      for (let id = 1; id <= 3; id++) {
        assert.ok(run.stdout.includes(`[clone ${id}] clone ${id} checked ok bad=0`), run.stdout);
      }
      const c = (await client.status()).clusters[0];
      const remote = c.members.filter((m) => m.host !== c.parentHost);
      assert.ok(remote.length > 0, "some clone ran on the other host");
      for (const m of remote) {
        assert.equal(m.memory?.mode, memory);
        assert.ok((m.memory?.bytesReceived ?? 0) > 0);
      }
    },
  });
}
