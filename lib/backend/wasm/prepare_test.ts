import assert from "node:assert/strict";
import { GuestError } from "./errors.ts";
import { ASYNCIFY_MEMORY_EXPORT, MEMORY_IMPORT } from "./guest_abi.ts";
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
  assert.deepEqual(memory, [{ ...MEMORY_IMPORT, kind: "memory" }]);
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
