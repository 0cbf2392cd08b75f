/**
 * The Python showcase (native/examples/kv_index.py) on the namespace harness:
 * a master in the root namespace, four agents on four namespace hosts, a
 * 128 MiB index built by the parent, 8 clones answering a tenth each; the
 * forked result must equal the sequential one.
 */
import assert from "node:assert/strict";
import { MasterClient } from "../lib/control/client.ts";
import type { StatusView } from "../lib/control/messages.ts";
import { SHOWCASE } from "../lib/bench/python_fork.ts";
import { createHosts, netnsAvailable } from "../lib/netns/hosts.ts";
import { tempDir } from "./harness/temp_dir.ts";
import { dump, python, runPython } from "./python_harness.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const snowflock = (...args: string[]) => [Deno.execPath(), "run", "-A", MAIN, ...args];
const available = netnsAvailable();

async function until(client: MasterClient, cond: (s: StatusView) => boolean): Promise<StatusView> {
  const end = Date.now() + 30_000;
  for (;;) {
    const s = await client.status().catch(() => undefined);
    if (s && cond(s)) return s;
    if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(s?.hosts)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name: "python showcase: 128 MiB index, 8 clones on 4 namespace hosts = sequential",
  ignore: !available.ok,
  fn: async () => {
    await python();
    await using net = await createHosts(4, { prefix: "sfpy" });
    await using data = await tempDir("sf-py-master");
    const listen = `${net.bridgeAddress}:7491`;
    const master = net.spawn(
      null,
      snowflock("master", "--listen", listen, "--data-dir", data.path, "--token", "tok"),
    );
    await master.waitForLine(/master listening/);
    net.hosts.forEach((h, i) =>
      net.spawn(h, snowflock("agent", "--join", listen, "--name", `py${i + 1}`, "--slots", "2"), {
        env: { SNOWFLOCK_TOKEN: "tok" },
      })
    );
    const client = new MasterClient(listen, "tok");
    await until(client, (s) => s.hosts.filter((h) => h.state === "up").length === 4);

    const source = await Deno.readTextFile(SHOWCASE);
    const forked = await runPython(client, source, ["8", "128", "5000"], "kv_index.py");
    assert.equal(forked.exitCode, 0, dump(forked));
    const sequential = await runPython(client, source, ["0", "128", "5000"], "kv_index.py");
    assert.equal(sequential.exitCode, 0, dump(sequential));

    const result = (lines: string[]) => lines.findLast((l) => l.startsWith("result:"));
    assert.ok(result(sequential.stdout), dump(sequential));
    assert.equal(result(forked.stdout), result(sequential.stdout), dump(forked));
    assert.ok(forked.stdout.some((l) => l.startsWith("granted 8 clones; memory ")), dump(forked));
    assert.ok(forked.stdout.some((l) => /^built \d+ entries in 10 segments \(128 MiB\)/.test(l)));
    assert.equal(forked.clones.size, 8, dump(forked));
    for (const [id, lines] of forked.clones) {
      assert.ok(lines.some((l) => l.startsWith(`worker ${id}: segments `)), dump(forked));
    }
    const s = await client.status();
    const fork = s.clusters.find((c) => c.parentVm === forked.vm);
    assert.equal(fork?.state, "joined");
    assert.equal(new Set(fork?.members.map((m) => m.host)).size, 4, "spread over 4 hosts");
    assert.ok(fork?.members.every((m) => m.state === "exited" && m.exitCode === 0));
  },
});
