/** libegosf's Python (ctypes) module and its test, against the EGO STAND-IN. */
import assert from "node:assert/strict";
import { buildStandinLibegosf, EGO_PASSWORD, EGO_USER, writeStandinConf } from "./ego_standin.ts";
import { tempDir } from "./harness/temp_dir.ts";

const PYTHON_DIR = new URL("../native/ego/python/", import.meta.url).pathname;

Deno.test("libegosf from Python: native/ego/python/egosf_test.py passes", async () => {
  const library = await buildStandinLibegosf();
  await using conf = await tempDir("sf-egosf-py");
  await writeStandinConf(conf.path, [{ name: "h1", slots: 2 }, { name: "h2", slots: 1 }]);
  const out = await new Deno.Command("python3", {
    args: ["-B", "-m", "unittest", "-v", "egosf_test"],
    cwd: PYTHON_DIR,
    env: {
      EGOSF_LIB: library,
      EGOSF_CONFDIR: conf.path,
      EGOSF_USER: EGO_USER,
      EGOSF_PASSWORD: EGO_PASSWORD,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, text);
  assert.match(text, /Ran 2 tests[\s\S]*OK/);
});
