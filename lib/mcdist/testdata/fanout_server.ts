/**
 * Fan-out bench helper, run in the memory server's namespace:
 *   deno run -A lib/bench/fanout_server.ts '<ServerSpec JSON>'
 * Serves one synthetic fork over mcdist; prints "ready <address>", then "stats <JSON>" on each
 * SIGUSR2. Runs until killed.
 *
 * @module
 */

import { startMcdistServer } from "../server.ts";
import { syntheticFork } from "./fanout_fork.ts";
import { fromHex, type ServerSpec } from "./fanout_spec.ts";

const spec = JSON.parse(Deno.args[0]) as ServerSpec;
const fork = syntheticFork({
  forkId: fromHex(spec.forkId),
  key: fromHex(spec.key),
  pageSize: spec.pageSize,
  pageCount: spec.pageCount,
  clones: spec.clones,
});
const server = await startMcdistServer({
  config: spec.config,
  listen: `${spec.config.interface}:0`,
});
server.addFork(fork);
Deno.addSignalListener("SIGUSR2", () => {
  const stats = { ...server.stats(fork.forkId), ...server.counters(fork.forkId) };
  console.log(`stats ${JSON.stringify(stats)}`);
});
console.log(`ready ${server.address}`);
