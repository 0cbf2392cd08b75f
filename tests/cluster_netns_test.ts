/**
 * A master in the root namespace and three agents on three namespace hosts:
 * join, tickets across hosts, master kill -9 + restart, agent death.
 */
import assert from "node:assert/strict";
import { MasterClient } from "../lib/control/client.ts";
import type { StatusView } from "../lib/control/messages.ts";
import { createHosts, netnsAvailable } from "../lib/netns/hosts.ts";
import { tempDir } from "./harness/temp_dir.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const snowflock = (...args: string[]) => [Deno.execPath(), "run", "-A", MAIN, ...args];
const available = netnsAvailable();

async function until(
  what: string,
  client: MasterClient,
  cond: (s: StatusView) => boolean,
  ms = 15_000,
): Promise<StatusView> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await client.status().catch(() => undefined);
    if (s && cond(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name: "3 namespace hosts join; state survives master kill -9; a dead agent is marked down",
  ignore: !available.ok,
  fn: async () => {
    await using net = await createHosts(3);
    await using data = await tempDir("sf-master");
    const listen = `${net.bridgeAddress}:7480`;
    const startMaster = () =>
      net.spawn(
        null,
        snowflock(
          "master",
          "--listen",
          listen,
          "--data-dir",
          data.path,
          "--token",
          "tok",
          "--heartbeat-timeout",
          "1500",
        ),
      );
    let master = startMaster();
    await master.waitForLine(/master listening/);
    const agents = net.hosts.map((h, i) =>
      net.spawn(h, snowflock("agent", "--join", listen, "--name", `node${i + 1}`, "--slots", "2"), {
        env: { SNOWFLOCK_TOKEN: "tok" },
      })
    );
    const client = new MasterClient(listen, "tok");
    let s = await until(
      "3 hosts up",
      client,
      (s) => s.hosts.filter((h) => h.state === "up").length === 3,
    );
    assert.deepEqual(
      s.hosts.map((h) => h.dataAddress.split(":")[0]).sort(),
      net.hosts.map((h) => h.address).sort(),
    );

    const ticket = await client.requestTicket(5);
    assert.equal(ticket.granted, 5);
    assert.deepEqual(ticket.placements.map((p) => p.slots), [2, 2, 1]);

    master.kill("SIGKILL");
    await master.status;
    master = startMaster();
    await master.waitForLine(/master listening/);
    s = await until(
      "hosts back after restart",
      client,
      (s) => s.hosts.filter((h) => h.state === "up").length === 3,
    );
    const kept = s.tickets.find((t) => t.id === ticket.id);
    assert.equal(kept?.state, "granted");
    assert.equal(kept?.granted, 5);

    agents[1].kill("SIGKILL");
    s = await until(
      "node2 down",
      client,
      (s) => s.hosts.find((h) => h.name === "node2")?.state === "down",
    );
    assert.equal(s.hosts.filter((h) => h.state === "up").length, 2);
  },
});
