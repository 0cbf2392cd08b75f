/**
 * A real cluster for benchmarks: a master in the root namespace and one agent
 * process per namespace host, as `snowflock master` / `snowflock agent` run on
 * real machines. Host 0 runs parents (no clone slots); the others take clones.
 */
import type { HostNet } from "../netns/hosts.ts";
import { MasterClient } from "../control/client.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

export interface NetnsCluster extends AsyncDisposable {
  client: MasterClient;
  /** Agent names by host index: "node0", "node1", … */
  names: string[];
}

export async function startNetnsCluster(
  net: HostNet,
  o: { cloneSlots: number; port?: number; agentArgs?: string[] },
): Promise<NetnsCluster> {
  const listen = `${net.bridgeAddress}:${o.port ?? 7495}`;
  const dataDir = await Deno.makeTempDir({ prefix: "snowflock-bench-master-" });
  const run = (...args: string[]) => [Deno.execPath(), "run", "-A", MAIN, ...args];
  const master = net.spawn(
    null,
    run("master", "--listen", listen, "--data-dir", dataDir, "--token", "bench"),
  );
  // The master stops (its agents stop with the hosts), then its data directory goes.
  const stop = async () => {
    await master.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };
  await master.waitForLine(/master listening/, 30_000).catch(async (error) => {
    await stop();
    throw error;
  });
  const names = net.hosts.map((_, i) => `node${i}`);
  net.hosts.forEach((h, i) => {
    const slots = String(i === 0 ? 0 : o.cloneSlots);
    net.spawn(
      h,
      run("agent", "--join", listen, "--name", names[i], "--slots", slots, ...(o.agentArgs ?? [])),
      {
        env: { SNOWFLOCK_TOKEN: "bench" },
      },
    );
  });
  const client = new MasterClient(listen, "bench");
  const end = Date.now() + 30_000;
  while (
    (await client.status().catch(() => undefined))?.hosts.filter((h) => h.state === "up").length !==
      names.length
  ) {
    if (Date.now() > end) {
      await stop();
      throw new Error("Cannot start the benchmark cluster: agents did not join");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { client, names, [Symbol.asyncDispose]: stop };
}
