/**
 * The Python build: cached by content hash, what the modules import, the
 * names the asyncify settings rely on, the stdlib image, and job resolution.
 */
import assert from "node:assert/strict";
import binaryen from "binaryen";
import { join } from "node:path";
import { splitModuleSections } from "../lib/backend/wasm/module_sections.ts";
import { PYTHON_ASYNCIFY_OPTIMIZE_LIST } from "../lib/guest/python/asyncify.ts";
import { findPythonBuild } from "../lib/guest/python/build.ts";
import { pythonGuestModule, pythonSettings } from "../lib/guest/python/guest.ts";
import { isPythonJob, resolveGuest } from "../lib/guest/python/resolve.ts";
import { tempDir } from "./harness/temp_dir.ts";
import { python } from "./python_harness.ts";

function importsOf(bytes: Uint8Array): string[] {
  const module = new WebAssembly.Module(bytes.slice());
  return WebAssembly.Module.imports(module).map((i) => `${i.module}.${i.name}`);
}

Deno.test("python build: a second run is a cache hit that builds nothing", async () => {
  const build = await python();
  const t = performance.now();
  const again = await findPythonBuild();
  assert.ok(performance.now() - t < 10_000);
  assert.equal(again?.dir, build.dir);
  assert.match(String(build.manifest.debian_source), /^python3\.11 3\.11\.\d+-/);
});

Deno.test("python build: imports, and the functions the asyncify settings name", async () => {
  const build = await python();
  const snowflock = await Deno.readFile(build.pythonWasm);
  const plain = await Deno.readFile(build.plainWasm);
  const imports = importsOf(snowflock);
  assert.ok(imports.includes("snowflock.sf_clone"));
  assert.ok(imports.every((i) => /^(wasi_snapshot_preview1|snowflock)\./.test(i)), imports.join());
  assert.ok(importsOf(plain).every((i) => i.startsWith("wasi_snapshot_preview1.")));
  const module = binaryen.readBinary(snowflock);
  try {
    for (const name of PYTHON_ASYNCIFY_OPTIMIZE_LIST) {
      assert.ok(module.getFunction(name), `${name} is in python.wasm`);
    }
  } finally {
    module.dispose();
  }
});

Deno.test("python guest module: settings and the stdlib image travel inside it", async () => {
  const build = await python();
  const split = splitModuleSections(await Deno.readFile(await pythonGuestModule(build)));
  assert.deepEqual(split.settings, pythonSettings("snowflock", split.settings!.image!.sha256));
  const names = new TextDecoder("latin1").decode(split.image!);
  for (
    const f of ["os.py", "encodings/__init__.py", "__pycache__/os.cpython-311.pyc", "pickle.py"]
  ) {
    assert.ok(names.includes(f), f);
  }
  assert.ok(!names.includes("test/test_os.py"), "tests are left out");
});

Deno.test("resolveGuest: .wasm as is, .py and python shebangs as the interpreter", async () => {
  await python();
  await using dir = await tempDir("sf-py-resolve");
  const wasm = join(dir.path, "app.wasm");
  const job = join(dir.path, "job.py");
  const script = join(dir.path, "tool");
  await Deno.writeFile(wasm, new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  await Deno.writeTextFile(job, "print('hi')\n" + "x = 1\n".repeat(2000));
  await Deno.writeTextFile(script, "#!/usr/bin/env python3\nprint(1)\n");
  assert.deepEqual(await resolveGuest(wasm, ["a"]), {
    kind: "wasm",
    wasm,
    args: ["a"],
    env: [],
    preopens: [],
  });
  assert.equal(await isPythonJob(script), true);
  const r = await resolveGuest(job, ["--flag"], { build: false });
  assert.equal(r.kind, "python");
  assert.ok(r.wasm.endsWith("python3.11.wasm"));
  assert.deepEqual(r.args.slice(0, 4), [
    "-s",
    "-c",
    "import snowflock; snowflock._main()",
    "job.py",
  ]);
  const chunks = Number(r.args[4]);
  assert.ok(chunks >= 3, "12 KB of source in several arguments");
  assert.ok(r.args.every((a) => a.length <= 4096));
  assert.equal(r.args.slice(5, 5 + chunks).join(""), await Deno.readTextFile(job));
  assert.deepEqual(r.args.slice(5 + chunks), ["--flag"]);
  assert.ok(r.env.includes("PYTHONHOME=/usr/local"));
});
