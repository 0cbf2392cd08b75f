/**
 * --allocator ego through libegosf, against the EGO STAND-IN (native/ego/standin/,
 * not Platform EGO): tickets granted from asynchronous RESOURCE_ADDs and
 * released, partial grants, a RESOURCE_RECLAIM failing clones in sf_join,
 * logon errors, and the allocation id in `snowflock status`.
 */
import assert from "node:assert/strict";
import { runJob } from "../lib/cli/run_job.ts";
import { formatStatus } from "../lib/cli/status.ts";
import { MasterClient } from "../lib/control/client.ts";
import { startEmbeddedCluster } from "../lib/control/embedded.ts";
import { createLogger } from "../lib/log.ts";
import { EgoAllocator } from "../lib/allocator/ego.ts";
import {
  buildStandinLibegosf,
  EGO_CONSUMER,
  EGO_PASSWORD,
  EGO_RESOURCE_GROUP,
  EGO_USER,
  standinReclaim,
  writeStandinConf,
} from "./ego_standin.ts";
import { testGuest } from "./guests.ts";
import { tempDir } from "./harness/temp_dir.ts";

const quiet = createLogger("test", { quiet: true, sink: () => {} });
/** EGO's names for the 3 agents host1..host3 (their --scheduler-node). */
const EGO_HOSTS = ["ego-a", "ego-b", "ego-c"];
const SLOTS = 2;

interface Lab {
  client: MasterClient;
  confDir: string;
  runGuest(
    args: string[],
    during?: () => Promise<void>,
  ): Promise<{ exitCode: number; parent: string[] }>;
}

async function withEgoLab(fn: (lab: Lab) => Promise<void>): Promise<void> {
  const library = await buildStandinLibegosf();
  await using data = await tempDir("sf-ego-lab");
  await using conf = await tempDir("sf-ego-conf");
  await writeStandinConf(conf.path, EGO_HOSTS.map((name) => ({ name, slots: SLOTS })));
  const cluster = await startEmbeddedCluster({
    hosts: EGO_HOSTS.length,
    slotsPerHost: SLOTS,
    dataDir: data.path,
    logger: quiet,
    allocator: "ego",
    allocatorSettings: {
      ego: {
        library,
        confDir: conf.path,
        user: EGO_USER,
        password: EGO_PASSWORD,
        consumer: EGO_CONSUMER,
        resourceGroup: EGO_RESOURCE_GROUP,
        settleMs: 300,
      },
    },
    schedulerNodes: EGO_HOSTS,
  });
  try {
    const client = new MasterClient(cluster.master.address, cluster.master.token);
    const wasm = await testGuest("semantics");
    await fn({
      client,
      confDir: conf.path,
      runGuest: async (args, during) => {
        const parent: string[] = [];
        const [r] = await Promise.all([
          runJob({ client, wasmPath: wasm, args, onLine: (c, _s, l) => c === 0 && parent.push(l) }),
          during?.(),
        ]);
        return { exitCode: r.exitCode, parent };
      },
    });
  } finally {
    await cluster.close();
  }
}

Deno.test("ego (stand-in): a guest's ticket is an EGO allocation, used and released", async () => {
  await withEgoLab(async ({ client, runGuest }) => {
    const r = await runGuest(["4"]);
    assert.equal(r.exitCode, 0, r.parent.join("\n"));
    const s = await client.status();
    const t = s.tickets[0];
    assert.equal(t.allocator, "ego");
    assert.equal(t.granted, 4);
    assert.match(t.source ?? "", /^alloc-\d+$/);
    assert.equal(t.state, "released");
    assert.ok(s.clusters[0].members.every((m) => m.state === "exited"));
    assert.match(formatStatus(s), new RegExp(`ego:${t.source}`));
  });
});

Deno.test("ego (stand-in): more than EGO has gives a partial grant; released slots return", async () => {
  await withEgoLab(async ({ client }) => {
    const big = await client.requestTicket(EGO_HOSTS.length * SLOTS + 3);
    assert.equal(big.granted, EGO_HOSTS.length * SLOTS);
    assert.deepEqual(big.placements.map((p) => p.host), ["host1", "host2", "host3"]);
    await client.releaseTicket(big.id);
    const again = await client.requestTicket(2);
    assert.equal(again.granted, 2, "the released slots went back to EGO");
    await client.releaseTicket(again.id);
  });
});

Deno.test("ego (stand-in): a RESOURCE_RECLAIM mid-ticket fails the clones there", async () => {
  await withEgoLab(async ({ client, confDir, runGuest }) => {
    let victim = "";
    const r = await runGuest(["4", "sleep", "6"], async () => {
      for (;;) {
        const c = (await client.status()).clusters[0];
        if (c?.members.filter((m) => m.state === "running").length === 4) {
          victim = c.members[0].host;
          break;
        }
        await new Promise((res) => setTimeout(res, 100));
      }
      await standinReclaim(confDir, EGO_HOSTS[Number(victim.slice("host".length)) - 1]);
    });
    const members = (await client.status()).clusters[0].members;
    const failed = members.filter((m) => m.state === "failed");
    assert.ok(failed.length > 0);
    assert.ok(failed.every((m) => m.host === victim && /EGO reclaimed/.test(m.reason ?? "")));
    assert.ok(r.parent.includes(`join failed=${failed.length}`), r.parent.join("\n"));
  });
});

Deno.test("ego (stand-in): a bad password fails the master's start with EGO's error", async () => {
  const library = await buildStandinLibegosf();
  await using conf = await tempDir("sf-ego-conf");
  await writeStandinConf(conf.path, [{ name: "x", slots: 1 }]);
  assert.throws(
    () =>
      new EgoAllocator({
        library,
        confDir: conf.path,
        user: EGO_USER,
        password: "nope",
        consumer: EGO_CONSUMER,
        resourceGroup: EGO_RESOURCE_GROUP,
      }, quiet),
    /Cannot start the EGO allocator: Cannot log on to EGO: Authentication failed/,
  );
});
