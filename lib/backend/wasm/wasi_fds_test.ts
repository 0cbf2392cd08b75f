import assert from "node:assert/strict";
import { VmError } from "./errors.ts";
import { ERRNO } from "./wasi_abi.ts";
import { FdTable, openResolved, resolvePath } from "./wasi_fds.ts";

async function withDirs(test: (root: string) => Promise<void> | void): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "snowflock-fds-" });
  try {
    await test(await Deno.realPath(root));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("resolvePath() keeps every path inside its directory", () =>
  withDirs(async (root) => {
    await Deno.mkdir(`${root}/out/a`, { recursive: true });
    await Deno.mkdir(`${root}/secret`);
    await Deno.symlink(`${root}/secret`, `${root}/out/up`);
    await Deno.symlink(`${root}/secret/new`, `${root}/out/dangling`);
    const table = FdTable.fresh([{ guestPath: "/out", hostPath: `${root}/out` }]);
    const out = table.get(3)!;
    assert.deepEqual(resolvePath(out, "a/../b.txt"), {
      host: `${root}/out/b.txt`,
      guest: "/out/b.txt",
    });
    assert.deepEqual(resolvePath(out, "."), { host: `${root}/out`, guest: "/out" });
    for (const path of ["..", "a/../../secret", "/etc/passwd", "up/x", "dangling"]) {
      assert.equal(resolvePath(out, path), ERRNO.NOTCAPABLE, path);
    }
  }));

Deno.test("FdTable.restore() re-opens files by guest path at their offset", () =>
  withDirs(async (root) => {
    await Deno.mkdir(`${root}/parent`);
    await Deno.mkdir(`${root}/clone`);
    await Deno.writeTextFile(`${root}/clone/log.txt`, "0123456789");
    const parent = FdTable.fresh([{ guestPath: "/out", hostPath: `${root}/parent` }]);
    const resolved = resolvePath(parent.get(3)!, "log.txt");
    assert.ok(typeof resolved !== "number");
    const fd = parent.add(openResolved(resolved, {
      directory: false,
      create: true,
      exclusive: false,
      truncate: false,
      readable: true,
      writable: true,
      flags: 0,
    }));
    parent.get(fd)!.file!.writeSync(new TextEncoder().encode("abcd"));
    const state = parent.capture();
    parent.closeAll();
    assert.deepEqual(state.find((s) => s.fd === fd), {
      fd,
      kind: "file",
      guestPath: "/out/log.txt",
      position: 4,
      flags: 0,
      readable: true,
      writable: true,
    });

    const clone = FdTable.restore(state, [{ guestPath: "/out", hostPath: `${root}/clone` }]);
    clone.get(fd)!.file!.writeSync(new TextEncoder().encode("XY"));
    clone.closeAll();
    assert.equal(await Deno.readTextFile(`${root}/clone/log.txt`), "0123XY6789");
    assert.throws(() => FdTable.restore(state, []), VmError);
  }));
