import assert from "node:assert/strict";
import { WasmVm } from "./vm.ts";
import { FakeCluster } from "./testdata/fake_agent.ts";
import { preparedGuest } from "./testdata/guests.ts";

Deno.test("a WASI guest gets args, env, stdio, clocks and a sandboxed /out", async () => {
  const root = await Deno.makeTempDir({ prefix: "snowflock-wasi-" });
  try {
    const out = `${root}/out`;
    await Deno.mkdir(out);
    await Deno.mkdir(`${root}/outside`);
    await Deno.symlink(`${root}/outside`, `${out}/link`);
    const module = await preparedGuest("hello");
    const lines: string[] = [];
    const vm = await WasmVm.start({
      module,
      args: ["hello", "two words", "ünïcode"],
      env: ["GREETING=hi there"],
      preopens: [{ guestPath: "/out", hostPath: out }],
      hooks: new FakeCluster(module).hooks("p"),
      onOutput: (stream, line) => lines.push(`${stream}: ${line}`),
    });
    assert.deepEqual(await vm.exited, { kind: "exit", code: 3 });
    assert.deepEqual(lines, [
      "stdout: arg 0: hello",
      "stdout: arg 1: two words",
      "stdout: arg 2: ünïcode",
      "stdout: env GREETING=hi there",
      "stderr: to stderr",
      "stdout: time ok: 1",
      "stdout: nanosleep: 0",
      "stdout: read back: written by the guest",
      "stdout: size: 21",
      "stdout: mkdir: 0",
      "stdout: rename: 0",
      "stdout: unlink: 0",
      "stdout: entry: renamed.txt",
      "stdout: stat size: 21",
      "stdout: escape dotdot: Capabilities insufficient",
      "stdout: escape symlink: Capabilities insufficient",
      "stdout: escape absolute: Capabilities insufficient",
    ]);
    assert.equal(await Deno.readTextFile(`${out}/sub/renamed.txt`), "written by the guest\n");
    assert.deepEqual([...Deno.readDirSync(`${root}/outside`)], []);
    assert.deepEqual(
      [...Deno.readDirSync(root)].map((e) => e.name).sort(),
      ["out", "outside"],
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
