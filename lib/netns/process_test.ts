import assert from "node:assert/strict";
import { groupAlive, HarnessProcessError, processAlive, spawnProcess } from "./process.ts";

Deno.test("spawnProcess() collects lines of both streams and calls onLine", async () => {
  const seen: string[] = [];
  const child = spawnProcess(["sh", "-c", "echo one; echo two >&2; printf three"], {
    env: { HARNESS_TEST: "x" },
    onLine: (line, stream) => seen.push(`${stream}:${line}`),
  });
  assert.equal((await child.status).code, 0);
  await child.stop();
  assert.deepEqual(child.stdout, ["one", "three"]);
  assert.deepEqual(child.stderr, ["two"]);
  assert.deepEqual(seen.sort(), ["stderr:two", "stdout:one", "stdout:three"]);
});

Deno.test("waitForLine() finds past and future lines, per stream", async () => {
  const child = spawnProcess(
    ["sh", "-c", "echo early; sleep 0.2; echo late >&2; echo $HARNESS_X"],
    {
      env: { HARNESS_X: "from env" },
    },
  );
  assert.equal(await child.waitForLine(/^late$/, 5_000), "late");
  assert.equal(await child.waitForLine(/^early$/, 5_000), "early");
  assert.equal(await child.waitForLine(/env/, 5_000, { stream: "stdout" }), "from env");
  await child.stop();
});

Deno.test("waitForLine() rejects on timeout and when the output ends", async () => {
  const slow = spawnProcess(["sleep", "30"]);
  await assert.rejects(slow.waitForLine(/never/, 100), /no match within 100 ms/);
  await slow.stop();
  const quick = spawnProcess(["sh", "-c", "echo bye"]);
  await assert.rejects(quick.waitForLine(/never/, 5_000), HarnessProcessError);
  await assert.rejects(
    quick.waitForLine(/never/, 5_000),
    /closed its output; last output:\n {2}bye/,
  );
  await quick.stop();
});

Deno.test("stop() ends the whole tree, with SIGKILL if SIGTERM is ignored", async () => {
  const child = spawnProcess([
    "sh",
    "-c",
    "trap '' TERM; sh -c 'trap \"\" TERM; sleep 300' & echo ready; wait; wait",
  ]);
  await child.waitForLine(/^ready$/, 5_000);
  assert.ok(groupAlive(child.pid));
  const status = await child.stop(200);
  assert.equal(status.signal, "SIGKILL");
  assert.ok(!groupAlive(child.pid));
  assert.ok(!processAlive(child.pid));
  assert.equal(await child.stop(), status);
});

Deno.test("spawnProcess() names the command it cannot start", () => {
  assert.throws(() => spawnProcess(["/nonexistent/binary"]), /Cannot spawn \/nonexistent\/binary/);
  assert.throws(() => spawnProcess([]), TypeError);
});
