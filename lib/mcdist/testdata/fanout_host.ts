/**
 * Fan-out bench helper, run in one clone host's namespace:
 *   deno run -A lib/bench/fanout_host.ts '<HostSpec JSON>'
 * Opens the host's mcdist client, prints "ready", and on SIGUSR1 runs the host's clones over the
 * working set; prints "done <JSON>" and ends.
 *
 * @module
 */

import { openMcdistClient } from "../client.ts";
import { driveClones } from "./fanout_clones.ts";
import { isPageContent, workingSet } from "./fanout_fork.ts";
import { fromHex, type HostSpec } from "./fanout_spec.ts";

const spec = JSON.parse(Deno.args[0]) as HostSpec;
const forkId = fromHex(spec.forkId);
const client = await openMcdistClient({
  forkId,
  key: fromHex(spec.key),
  server: spec.server,
  pageSize: spec.pageSize,
  pageCount: spec.pageCount,
}, { config: spec.config });
const go = Promise.withResolvers<void>();
const onGo = () => go.resolve();
Deno.addSignalListener("SIGUSR1", onGo);
console.log("ready");
await go.promise;
Deno.removeSignalListener("SIGUSR1", onGo);
const result = await driveClones(client, {
  clones: spec.clones,
  workingSet: workingSet(spec.workingSetPages),
  outstanding: spec.outstanding,
  pageSize: spec.pageSize,
  check: (page, bytes) => isPageContent(forkId, page, bytes, spec.pageSize),
});
console.log(`done ${JSON.stringify({ ...result, stats: client.stats() })}`);
await client.close();
