import assert from "node:assert/strict";
import binaryen from "binaryen";
import { GuestError } from "./errors.ts";
import {
  ASYNCIFY_MEMORY_EXPORT,
  INTERRUPT_FLAG,
  INTERRUPT_IMPORT,
  MEMORY_IMPORT,
} from "./guest_abi.ts";
import { prepareModule, prepareModuleCached, readPreparedCache } from "./prepare.ts";
import { compileGuest } from "./testdata/guests.ts";

Deno.test("prepareModule() makes a forkable module with imported shared memory", async () => {
  const source = await compileGuest("fork");
  const started = performance.now();
  const module = prepareModule(source);
  console.log(
    `prepareModule(fork.c, printf): ${(performance.now() - started).toFixed(0)} ms, ` +
      `${source.length} -> ${module.bytes.length} bytes`,
  );
  const compiled = new WebAssembly.Module(module.bytes);
  const memory = WebAssembly.Module.imports(compiled).filter((i) => i.kind === "memory");
  // The guest's memory stays memory 0: the interrupt memory comes after it.
  assert.deepEqual(memory, [
    { ...MEMORY_IMPORT, kind: "memory" },
    { ...INTERRUPT_IMPORT, kind: "memory" },
  ]);
  const exports = WebAssembly.Module.exports(compiled).map((e) => e.name);
  for (const name of ["_start", "asyncify_start_unwind", ASYNCIFY_MEMORY_EXPORT]) {
    assert.ok(exports.includes(name), name);
  }
  assert.equal(module.stackPointer, "__sf_global_0");
  assert.deepEqual(module.globals, [
    { name: "__sf_global_0", internalName: "__stack_pointer", type: "i32" },
  ]);
  assert.ok(module.dataSegments.length > 0);
  assert.equal(module.maxPages, 65536);
  assert.match(module.hash, /^[0-9a-f]{64}$/);
  // The module no longer carries its data: a clone's instance cannot overwrite memory.
  const bytes = new TextDecoder("latin1").decode(module.bytes);
  assert.ok(!bytes.includes("parent: joined=%d"));
  assert.ok(new TextDecoder("latin1").decode(module.dataSegments[0].bytes).length > 0);
});

Deno.test("prepareModule() checks the interrupt word at loop heads and recursive calls", () => {
  const guest = countingGuest();
  assert.deepEqual(guest.run("loop", 0), { calls: 10, trapped: false });
  assert.deepEqual(guest.run("loop", 3), { calls: 3, trapped: true });
  assert.deepEqual(guest.run("recurse", 3), { calls: 3, trapped: true });
  assert.deepEqual(guest.run("ping", 0), { calls: 5, trapped: false });
  assert.deepEqual(guest.run("ping", 3), { calls: 3, trapped: true });
  assert.deepEqual(guest.run("loop", 0, true), { calls: 0, trapped: true });
  // Declared as exactly one page, so V8 needs no bounds check (interrupt_page.ts).
  assert.throws(() => guest.run("loop", 0, false, 2), /maximum/);
});

Deno.test("prepareModule() rejects input that is not WebAssembly", () => {
  assert.throws(
    () => prepareModule(new TextEncoder().encode("#!/bin/sh\necho hi\n")),
    new GuestError("Cannot load guest: not a WebAssembly module"),
  );
  assert.throws(
    () => prepareModule(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0xff, 0xff])),
    new GuestError("Cannot load guest: not a valid WebAssembly module"),
  );
});

Deno.test("prepareModule() names every unsupported import", async () => {
  const source = await compileGuest("unknown_import");
  assert.throws(() => prepareModule(source), (error: unknown) => {
    assert.ok(error instanceof GuestError);
    assert.match(error.message, /^Cannot load guest: unsupported imports: /);
    assert.match(error.message, /env\.mystery/);
    assert.match(error.message, /snowflock\.sf_bogus/);
    assert.doesNotMatch(error.message, /sf_clone_id/);
    return true;
  });
});

Deno.test("prepareModuleCached() hits the cache for the same bytes", async () => {
  const cacheDir = await Deno.makeTempDir({ prefix: "snowflock-prepare-cache-" });
  try {
    const source = await compileGuest("trap");
    assert.equal(await readPreparedCache(source, cacheDir), null);
    const first = await prepareModuleCached(source, cacheDir);
    const cached = await readPreparedCache(source, cacheDir);
    assert.deepEqual(cached, first);
    const started = performance.now();
    const second = await prepareModuleCached(source, cacheDir);
    console.log(`prepareModuleCached() hit: ${(performance.now() - started).toFixed(1)} ms`);
    assert.deepEqual(second, first);
    // Other options are another entry.
    assert.equal(await readPreparedCache(source, cacheDir, { maxPages: 1024 }), null);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

/**
 * A prepared guest whose `loop` calls sf_clone_id() 10 times in a loop, whose
 * `recurse` does so in 10 nested calls without a loop, and whose `ping` does
 * so 5 times in 10 calls alternating with `pong`. `run()` sets the interrupt
 * word at the `setAt`-th call (never if 0), or before the start; its
 * interrupt memory may grow to `pages`.
 */
function countingGuest(): {
  run(entry: "loop" | "recurse" | "ping", setAt: number, setBefore?: boolean, pages?: number): {
    calls: number;
    trapped: boolean;
  };
} {
  const m = new binaryen.Module();
  const { i32, none } = binaryen;
  try {
    m.setMemory(1, 1);
    m.addFunctionImport("sf_clone_id", "snowflock", "sf_clone_id", none, i32);
    const tick = () => m.drop(m.call("sf_clone_id", [], i32));
    const n = () => m.local.get(0, i32);
    const callWithLess = (fn: string) => m.call(fn, [m.i32.sub(n(), m.i32.const(1))], none);
    m.addFunction(
      "loop",
      none,
      none,
      [i32],
      m.loop(
        "again",
        m.block(null, [
          tick(),
          m.local.set(0, m.i32.add(n(), m.i32.const(1))),
          m.br("again", m.i32.lt_u(n(), m.i32.const(10))),
        ]),
      ),
    );
    m.addFunction(
      "recurse",
      i32,
      none,
      [],
      m.if(n(), m.block(null, [tick(), callWithLess("recurse")])),
    );
    m.addFunction("ping", i32, none, [], m.if(n(), m.block(null, [tick(), callWithLess("pong")])));
    m.addFunction("pong", i32, none, [], m.if(n(), callWithLess("ping")));
    m.addFunction("_start", none, none, [], m.nop());
    for (const name of ["_start", "loop", "recurse", "ping"]) m.addFunctionExport(name, name);
    const prepared = new WebAssembly.Module(prepareModule(m.emitBinary()).bytes);
    return {
      run(entry, setAt, setBefore = false, pages = 1) {
        const interrupt = new WebAssembly.Memory({ initial: 1, maximum: pages, shared: true });
        const flag = new Int32Array(interrupt.buffer, INTERRUPT_FLAG, 1);
        let calls = 0;
        const instance = new WebAssembly.Instance(prepared, {
          [MEMORY_IMPORT.module]: {
            [MEMORY_IMPORT.name]: new WebAssembly.Memory({
              initial: 1,
              maximum: 1,
              shared: true,
            }),
          },
          [INTERRUPT_IMPORT.module]: {
            [INTERRUPT_IMPORT.name]: interrupt,
            sf_clone_id: () => {
              if (++calls === setAt) flag[0] = 1;
              return 0;
            },
          },
        });
        if (setBefore) flag[0] = 1;
        const fn = instance.exports[entry] as (n?: number) => void;
        try {
          fn(10);
          return { calls, trapped: false };
        } catch (error) {
          assert.ok(error instanceof WebAssembly.RuntimeError, String(error));
          assert.match(error.message, /unreachable/);
          return { calls, trapped: true };
        }
      },
    };
  } finally {
    m.dispose();
  }
}
