import assert from "node:assert/strict";
import { addressOf, MADV_DONTNEED, madvise } from "../../../native/libc.ts";
import { isUserfaultfdAvailable } from "../../memory/availability.ts";
import { Memtap } from "../../memory/memtap.ts";
import { PAGE_PRESENT } from "../../memory/page_mark.ts";
import { VmError } from "./errors.ts";
import { SF_ECONTROL, SF_EFORK, SF_EINVAL } from "./guest_abi.ts";
import { createGuestMemory, type GuestHooks, WasmVm } from "./vm.ts";
import { holdWorkerPool, idleWorkers } from "./worker_pool.ts";
import { FakeCluster } from "./testdata/fake_agent.ts";
import { preparedGuest } from "./testdata/guests.ts";

Deno.test("sf_clone() forks: ids, inherited stack/heap/globals, isolated clones", async () => {
  const cluster = new FakeCluster(await preparedGuest("fork"));
  const vm = await cluster.start(["1"]);
  assert.deepEqual(await vm.exited, { kind: "exit", code: 0 });
  assert.deepEqual(cluster.linesOf("p"), [
    "parent: size=3 local=1234 counter=200 clone_id=0",
    "parent: joined=3 heap0=0 counter=200",
  ]);
  for (const id of [1, 2, 3]) {
    assert.deepEqual(cluster.linesOf(`p.${id}`), [
      `clone ${id}: local=1234 counter=200 heap=1 clone_id=${id}`,
    ]);
    assert.deepEqual(cluster.exits.get(`p.${id}`), { kind: "exit", code: 10 + id });
  }
  assert.equal(vm.forkPauses().length, 1);
});

Deno.test("sf_clone() in a clone forks a grandchild", async () => {
  const cluster = new FakeCluster(await preparedGuest("fork"));
  const vm = await cluster.start(["1", "nested"]);
  assert.deepEqual(await vm.exited, { kind: "exit", code: 0 });
  assert.deepEqual(cluster.linesOf("p.1.1"), ["grandchild 1: counter=301 heap0=-1 clone_id=1"]);
  assert.deepEqual(cluster.exits.get("p.1.1"), { kind: "exit", code: 51 });
  assert.deepEqual(cluster.linesOf("p.1").slice(1), ["clone 1: inner clone 0 joined 1"]);
  assert.deepEqual(cluster.exits.get("p.1"), { kind: "exit", code: 11 });
  assert.deepEqual(cluster.linesOf("p").at(-1), "parent: joined=3 heap0=0 counter=200");
});

Deno.test("sf_checkpoint_parent() then sf_create_clones() resumes clones later", async () => {
  const cluster = new FakeCluster(await preparedGuest("checkpoint"));
  const vm = await cluster.start([]);
  assert.deepEqual(await vm.exited, { kind: "exit", code: 0 });
  assert.deepEqual(cluster.linesOf("p"), [
    "parent: checkpoint=1 created=2",
    "parent: joined=2 value=99",
  ]);
  assert.deepEqual(cluster.linesOf("p.c1"), ["checkpoint clone 1: value=41"]);
  assert.deepEqual(cluster.exits.get("p.c2"), { kind: "exit", code: 22 });
});

Deno.test("a failing hook gives the guest a negative code", async () => {
  const fail = () => Promise.reject(new Error("control plane down"));
  const hooks: GuestHooks = {
    requestTicket: fail,
    ticketSize: fail,
    clone: fail,
    join: fail,
    kill: fail,
    checkpoint: fail,
    createClones: fail,
    hintOverwrite: fail,
  };
  const cluster = new FakeCluster(await preparedGuest("hooks"));
  const vm = await cluster.start([], hooks);
  assert.deepEqual(await vm.exited, { kind: "exit", code: 0 });
  assert.deepEqual(cluster.linesOf("p"), [
    `request_ticket: ${SF_ECONTROL}`,
    `clone: ${SF_EFORK}`,
    `join: ${SF_ECONTROL}`,
    `checkpoint: ${SF_EFORK}`,
    `hint outside memory: ${SF_EINVAL}`,
    "still running",
  ]);
});

Deno.test("a trapping guest ends with a trap, not a host crash", async () => {
  const cluster = new FakeCluster(await preparedGuest("trap"));
  const vm = await cluster.start([]);
  const exit = await vm.exited;
  assert.equal(exit.kind, "trap");
  assert.match(exit.kind === "trap" ? exit.message : "", /unreachable/);
  assert.deepEqual(cluster.linesOf("p"), ["before trap"]);
});

Deno.test("a worker whose guest ended runs the next guest; a killed one's thread ends", async () => {
  const threadsBefore = vmThreads();
  const release = holdWorkerPool(1);
  try {
    await waitFor(() => idleWorkers() === 1, "a spare VM worker");
    const before = vmThreads();
    const cluster = new FakeCluster(await preparedGuest("trap"));
    for (let i = 0; i < 3; i++) {
      const vm = await cluster.start([]);
      assert.equal((await vm.exited).kind, "trap");
      assert.equal(idleWorkers(), 1, "back in the pool");
      assert.ok(vm.threadDone, "its thread is done with the memory");
    }
    assert.equal(cluster.linesOf("p").length, 3, "each run printed");
    assert.deepEqual([...vmThreads().keys()], [...before.keys()], "the same thread ran them all");
    const pooled = [...before.keys()].filter((tid) => !threadsBefore.has(tid));
    assert.equal(pooled.length, 1);
    const spinner = new FakeCluster(await preparedGuest("spin"));
    const spinning = await spinner.start(["spin"]);
    await waitFor(() => spinner.linesOf("p").length === 1, "the guest spinning");
    spinning.kill();
    await spinning.exited;
    assert.ok(!spinning.threadDone, "a killed guest's thread may still run");
    await waitFor(() => !vmThreads().has(pooled[0]), "the killed guest's thread to end");
  } finally {
    release();
  }
});

Deno.test("a VM's thread runs at the nice value asked for", async () => {
  const before = vmThreads();
  const cluster = new FakeCluster(await preparedGuest("spin"));
  const vm = await cluster.start(["spin"], undefined, 7);
  try {
    await waitFor(() => cluster.linesOf("p").length === 1, "the guest spinning");
    const [tid] = [...vmThreads().keys()].filter((t) => !before.has(t));
    // proc(5): nice is field 19 of the thread's stat.
    const stat = Deno.readTextFileSync(`/proc/self/task/${tid}/stat`);
    assert.equal(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]), 7);
  } finally {
    vm.kill();
    await vm.exited;
  }
});

Deno.test("kill() stops the thread of a spinning, blocked or sleeping guest", async () => {
  const before = vmThreads();
  const cluster = new FakeCluster(await preparedGuest("spin"));
  const blocked = { ...cluster.hooks("p"), join: () => new Promise<number>(() => {}) };
  const vms = [
    await cluster.start(["spin"]),
    await cluster.start(["join"], blocked),
    await cluster.start(["sleep"]),
  ];
  await waitFor(() => cluster.linesOf("p").length === vms.length, "every guest in place");
  const threads = [...vmThreads().keys()].filter((tid) => !before.has(tid));
  assert.equal(threads.length, vms.length, "one worker thread per VM");
  for (const vm of vms) vm.kill();
  for (const vm of vms) assert.deepEqual(await vm.exited, { kind: "exit", code: 137 });
  // Deno's Worker.terminate() neither interrupts Wasm code nor wakes Atomics.wait:
  // a thread that stays here would burn its core or hang until the process ends.
  await waitFor(
    () => threads.every((tid) => !vmThreads().has(tid)),
    "worker threads to end",
    () => `(${threads.map((tid) => `${tid}: ${vmThreads().get(tid) ?? "gone"} s CPU`).join(", ")})`,
  );
});

Deno.test("kill() ends a guest blocked in a page fault once its memtap closes", async () => {
  const uffd = isUserfaultfdAvailable();
  if (!uffd.ok) {
    console.warn(`skipped: needs userfaultfd (${uffd.reason})`);
    return;
  }
  const before = vmThreads();
  const cluster = new FakeCluster(await preparedGuest("spin"));
  const vm = await cluster.start(["spin"]);
  await waitFor(() => cluster.linesOf("p").length === 1, "the guest to spin");
  const [thread] = [...vmThreads().keys()].filter((tid) => !before.has(tid));
  // A source that never answers: the spinning guest blocks on its next memory access.
  const memtap = await Memtap.open({
    memory: vm.memory,
    pageMap: new Uint8Array(vm.memory.buffer.byteLength / 4096).fill(PAGE_PRESENT),
    source: { request: () => {} },
  });
  // Memtap.open() empties the memory before it registers it, so the running guest may have
  // touched its page again in between: empty it again, registered.
  madvise(addressOf(vm.memory.buffer), vm.memory.buffer.byteLength, MADV_DONTNEED);
  await waitFor(() => memtap.stats().faults > 0, "the guest to fault");
  vm.kill();
  assert.deepEqual(await vm.exited, { kind: "exit", code: 137 });
  // As the agent does on exit: the guest wakes, reads zeros and meets its next check.
  await memtap.close();
  await waitFor(
    () => !vmThreads().has(thread),
    "the worker thread to end",
    () => `(${thread}: ${vmThreads().get(thread)} s CPU)`,
  );
});

Deno.test("resume() refuses a fork point of another module", async () => {
  const module = await preparedGuest("trap");
  const cluster = new FakeCluster(module);
  await assert.rejects(
    WasmVm.resume({
      module,
      memory: createGuestMemory(module),
      forkPoint: {
        kind: "clone",
        moduleHash: "0".repeat(64),
        globals: [],
        asyncifyData: new Uint8Array(),
        wasi: { args: [], env: [], fds: [] },
        memoryPages: module.initialPages,
        heapTop: 0,
        stackPointer: null,
      },
      returnValue: 1,
      preopens: [],
      hooks: cluster.hooks("p"),
      onOutput: () => {},
    }),
    VmError,
  );
});

Deno.test("start() fails clearly when a preopen is missing", async () => {
  const module = await preparedGuest("trap");
  const cluster = new FakeCluster(module, [{ guestPath: "/out", hostPath: "/nonexistent/out" }]);
  await assert.rejects(cluster.start([]), /^VmError: Cannot start VM: Cannot preopen \/out/);
});

Deno.test("measure: parent pause and time to a running clone (4 MiB heap)", async () => {
  const cluster = new FakeCluster(await preparedGuest("fork"));
  const vm = await cluster.start(["4"]);
  assert.deepEqual(await vm.exited, { kind: "exit", code: 0 });
  const ms = (n: number) => `${n.toFixed(1)} ms`;
  console.log(`memory: ${vm.memory.buffer.byteLength / 1048576} MiB`);
  // deno test type-checks every Worker it starts (seconds); deno run does not.
  console.log("(under deno test, clone start includes the Worker's type check)");
  console.log(`parent pause (unwind, eager copy, rewind): ${vm.forkPauses().map(ms).join(", ")}`);
  for (const t of cluster.cloneTimes) {
    console.log(`clone running ${ms(t.sincePause)} after the pause (resume() ${ms(t.resume)})`);
  }
});

/** The VM worker threads of this process (Deno names them worker-<n>): tid -> CPU seconds. */
function vmThreads(): Map<string, number> {
  const threads = new Map<string, number>();
  for (const task of Deno.readDirSync("/proc/self/task")) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/self/task/${task.name}/stat`);
    } catch {
      continue; // the thread ended while we listed
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (!/^worker-\d+$/.test(name)) continue;
    // proc(5): utime and stime are fields 14 and 15, in clock ticks (USER_HZ = 100).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    threads.set(task.name, (Number(fields[11]) + Number(fields[12])) / 100);
  }
  return threads;
}

async function waitFor(
  done: () => boolean,
  what: string,
  detail: () => string = () => "",
): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!done()) {
    if (performance.now() > deadline) assert.fail(`Timed out waiting for ${what} ${detail()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
