import assert from "node:assert/strict";
import { tempDir } from "./temp_dir.ts";

Deno.test("tempDir() is removed with its contents when the block ends", async () => {
  let path = "";
  {
    await using dir = await tempDir("harness");
    path = dir.path;
    await Deno.mkdir(`${path}/sub`);
    await Deno.writeTextFile(`${path}/sub/file`, "x");
  }
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
});

Deno.test("tempDir() is removed when the block throws", async () => {
  let path = "";
  await assert.rejects(async () => {
    await using dir = await tempDir("harness");
    path = dir.path;
    throw new Error("boom");
  }, /boom/);
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
});
