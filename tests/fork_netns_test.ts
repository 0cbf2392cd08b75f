/**
 * Cross-host forks between agents in three network namespaces (a master in
 * the root namespace): clones inherit the parent's state on other hosts, and a
 * clone host killed mid-run is reported failed to sf_join instead of hanging it.
 */
import assert from "node:assert/strict";
import { runJob } from "../lib/cli/run_job.ts";
import { MasterClient } from "../lib/control/client.ts";
import { benchGuest } from "../lib/bench/cluster_run.ts";
import { testGuest } from "./guests.ts";
import { createHosts, type HostNet, netnsAvailable } from "../lib/netns/hosts.ts";
import type { HarnessProcess } from "../lib/netns/process.ts";
import { tempDir } from "./harness/temp_dir.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const snowflock = (...args: string[]) => [Deno.execPath(), "run", "-A", MAIN, ...args];
const available = netnsAvailable();

async function cluster(net: HostNet, dataDir: string): Promise<{
  client: MasterClient;
  agents: HarnessProcess[];
}> {
  const listen = `${net.bridgeAddress}:7490`;
  const master = net.spawn(
    null,
    snowflock(
      "master",
      "--listen",
      listen,
      "--data-dir",
      dataDir,
      "--token",
      "tok",
      "--heartbeat-timeout",
      "1500",
    ),
  );
  await master.waitForLine(/master listening/);
  const agents = net.hosts.map((h, i) =>
    net.spawn(h, snowflock("agent", "--join", listen, "--name", `node${i + 1}`, "--slots", "2"), {
      env: { SNOWFLOCK_TOKEN: "tok" },
    })
  );
  const client = new MasterClient(listen, "tok");
  const end = Date.now() + 20_000;
  while ((await client.status()).hosts.filter((h) => h.state === "up").length < 3) {
    if (Date.now() > end) throw new Error("agents did not join");
    await new Promise((r) => setTimeout(r, 100));
  }
  return { client, agents };
}

Deno.test({
  name: "fork across namespace hosts; a killed clone host fails the join, never hangs it",
  ignore: !available.ok,
  fn: async () => {
    await using net = await createHosts(3);
    await using data = await tempDir("sf-fork-netns");
    const { client, agents } = await cluster(net, data.path);
    const wasm = await testGuest("semantics");
    const lines = new Map<number, string[]>();
    const collect = (clone: number, _s: string, line: string) =>
      lines.set(clone, [...(lines.get(clone) ?? []), line]);

    const ok = await runJob({
      client,
      wasmPath: wasm,
      args: ["5"],
      host: "node1",
      onLine: collect,
    });
    assert.equal(ok.exitCode, 0, (lines.get(0) ?? []).join("\n"));
    for (let id = 1; id <= 5; id++) {
      assert.ok(lines.get(id)?.includes(`clone ${id} of 5 inherited ok id=${id}`));
    }
    let s = await client.status();
    assert.deepEqual(
      [...new Set(s.clusters[0].members.map((m) => m.host))].sort(),
      ["node1", "node2", "node3"],
    );
    // Clones on other hosts reading the same working set get it by mcdist's multicast; those on
    // the parent's host by local unicast.
    assert.ok(
      s.hosts.every((h) => h.memoryTransport?.mode === "multicast"),
      JSON.stringify(s.hosts),
    );
    const workingSet = () =>
      runJob({
        client,
        wasmPath: workingSetWasm,
        args: ["6", "32", "2000"],
        host: "node1",
        onLine: () => {},
      });
    // The first run prepares the module on every host, which staggers their starts.
    const workingSetWasm = await benchGuest("working_set");
    assert.equal((await workingSet()).exitCode, 0);
    const ws = await workingSet();
    assert.equal(ws.exitCode, 0);
    s = await client.status();
    const shared = s.clusters.find((c) => c.parentVm === ws.vm.id)!;
    for (const m of shared.members) {
      const multicast = m.memory?.multicastBytes ?? 0;
      if (m.host === "node1") assert.equal(multicast, 0, `clone ${m.clone} on the parent's host`);
      else assert.ok(multicast > 0, `clone ${m.clone} on ${m.host}: ${JSON.stringify(m.memory)}`);
    }

    lines.clear();
    const slow = runJob({
      client,
      wasmPath: wasm,
      args: ["6", "sleep"],
      host: "node1",
      onLine: collect,
    });
    const end = Date.now() + 20_000;
    for (;;) {
      s = await client.status();
      const c = s.clusters.find((c) => c.members.length === 6);
      if (c && c.members.filter((m) => m.state === "running").length === 6) break;
      if (Date.now() > end) throw new Error("clones did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
    agents[2].kill("SIGKILL");
    const r = await slow;
    assert.ok(lines.get(0)?.includes("join failed=2"), (lines.get(0) ?? []).join("\n"));
    assert.equal(r.exitCode, 12);
    s = await client.status();
    const failed = s.clusters.find((c) => c.members.length === 6)!.members
      .filter((m) => m.state === "failed");
    assert.deepEqual(failed.map((m) => m.host), ["node3", "node3"]);
  },
});
