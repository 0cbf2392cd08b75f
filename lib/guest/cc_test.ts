import assert from "node:assert/strict";
import { join } from "node:path";
import {
  buildExample,
  CompileError,
  compileGuest,
  ensureToolchain,
  exampleSource,
  listExamples,
} from "./cc.ts";

const SF_CALLS = [
  "sf_request_ticket",
  "sf_ticket_size",
  "sf_clone",
  "sf_join",
  "sf_exit",
  "sf_kill",
  "sf_checkpoint_parent",
  "sf_create_clones",
  "sf_hint_overwrite",
  "sf_clone_id",
];

/** Every call, so the header's declarations and import names are all exercised. */
const ALL_CALLS_C = `#include <stdio.h>
#include "sf.h"
int main(void) {
  static char buf[65536];
  int32_t t = sf_request_ticket(2);
  if (t < 0) { puts(sf_strerror(t)); return 1; }
  int32_t c = sf_checkpoint_parent();
  if (c == 0) sf_exit(sf_clone_id());
  sf_hint_overwrite(buf, sizeof(buf));
  int32_t r = sf_create_clones(c, t) + sf_ticket_size(t) + sf_clone(t) + sf_kill(t);
  return sf_join(t) + r;
}
`;

async function compileC(dir: string, code: string, clangArgs: string[] = []): Promise<string> {
  const source = join(dir, "guest.c");
  const output = join(dir, "guest.wasm");
  await Deno.writeTextFile(source, code);
  await compileGuest({ sources: [source], output, clangArgs });
  return output;
}

async function importsOf(wasm: string): Promise<WebAssembly.ModuleImportDescriptor[]> {
  return WebAssembly.Module.imports(new WebAssembly.Module(await Deno.readFile(wasm)));
}

function snowflockImports(imports: WebAssembly.ModuleImportDescriptor[]): string[] {
  return imports.filter((i) => i.module === "snowflock").map((i) => i.name).sort();
}

Deno.test("ensureToolchain() finds the installed Debian toolchain", async () => {
  const progress: string[] = [];
  await ensureToolchain({ onProgress: (msg) => progress.push(msg) });
  assert.deepEqual(progress, []);
});

Deno.test("ensureToolchain() names the exact apt-get command when it cannot install", async () => {
  const emptyPath = await Deno.makeTempDir();
  try {
    const script = `import { ensureToolchain } from ${
      JSON.stringify(import.meta.resolve("./cc.ts"))
    };
      await ensureToolchain().catch((e) => { console.log(e.name + ": " + e.message); });`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      env: { PATH: emptyPath },
      stderr: "inherit",
    }).output();
    const message = new TextDecoder().decode(out.stdout);
    assert.match(message, /^ToolchainError: Cannot compile guests: missing /);
    assert.match(message, /apt-get install clang lld libclang-rt-14-dev-wasm32\)?\n$/);
  } finally {
    await Deno.remove(emptyPath);
  }
});

Deno.test("sf.h compiles with -Wall -Wextra -Werror and imports every call by name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const wasm = await compileC(dir, ALL_CALLS_C, ["-std=c11", "-Wall", "-Wextra", "-Werror"]);
    const imports = await importsOf(wasm);
    assert.deepEqual(snowflockImports(imports), [...SF_CALLS].sort());
    for (const i of imports) assert.equal(i.kind, "function", `${i.module}.${i.name}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compileGuest() throws CompileError carrying clang's diagnostics", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      compileC(dir, "int main(void) { return undeclared_thing; }\n"),
      (error) => {
        assert.ok(error instanceof CompileError);
        assert.equal(error.exitCode, 1);
        assert.match(error.diagnostics, /guest\.c:1:\d+: error: use of undeclared identifier/);
        assert.match(
          error.message,
          /^Cannot compile .*guest\.c: clang exited with code 1 \(.*error:/,
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listExamples() and exampleSource() find the bundled guests", async () => {
  const names = listExamples();
  for (const name of ["mandelbrot", "pricer", "search"]) {
    assert.ok(names.includes(name), name);
    assert.ok((await Deno.stat(exampleSource(name))).isFile);
  }
  assert.throws(() => exampleSource("nope"), RangeError);
});

Deno.test("every example imports only WASI preview1 and the fork calls", async () => {
  const cache = await Deno.makeTempDir();
  try {
    for (const name of listExamples()) {
      const imports = await importsOf(await buildExample(name, cache));
      for (const i of imports) {
        assert.ok(
          i.module === "wasi_snapshot_preview1" ||
            (i.module === "snowflock" && SF_CALLS.includes(i.name)),
          `${name} imports ${i.module}.${i.name}`,
        );
      }
      const used = snowflockImports(imports);
      for (const call of ["sf_request_ticket", "sf_ticket_size", "sf_clone", "sf_join"]) {
        assert.ok(used.includes(call), `${name} does not import ${call}`);
      }
      assert.ok(used.includes("sf_exit"), `${name} does not import sf_exit`);
    }
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("buildExample() compiles once and reuses the cached module", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const progress: string[] = [];
    const first = await buildExample("pricer", cache, { onProgress: (m) => progress.push(m) });
    const stamp = (await Deno.stat(first)).mtime;
    const again = await buildExample("pricer", cache, { onProgress: (m) => progress.push(m) });
    assert.equal(again, first);
    assert.deepEqual((await Deno.stat(again)).mtime, stamp);
    assert.deepEqual(progress, ["compiling pricer"]);
    assert.deepEqual([...Deno.readDirSync(cache)].map((e) => e.name), [first.split("/").pop()]);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
