/** Test support: compiles the C guests of this directory with clang, once per run. */
import { compileGuest as compileC } from "../../../guest/cc.ts";
import { type PreparedModule, prepareModule } from "../prepare.ts";

const built = new Map<string, Promise<Uint8Array>>();
const prepared = new Map<string, Promise<PreparedModule>>();

/** The wasm32-wasi binary of testdata/`name`.c. */
export function compileGuest(name: string): Promise<Uint8Array> {
  let bytes = built.get(name);
  if (!bytes) {
    bytes = compile(name);
    built.set(name, bytes);
  }
  return bytes;
}

/** The prepared module of testdata/`name`.c. */
export function preparedGuest(name: string): Promise<PreparedModule> {
  let module = prepared.get(name);
  if (!module) {
    module = compileGuest(name).then((bytes) => prepareModule(bytes));
    prepared.set(name, module);
  }
  return module;
}

async function compile(name: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "snowflock-guest-" });
  const output = `${dir}/${name}.wasm`;
  try {
    await compileC({
      sources: [new URL(`./${name}.c`, import.meta.url).pathname],
      output,
      clangArgs: [],
    });
    return await Deno.readFile(output);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
