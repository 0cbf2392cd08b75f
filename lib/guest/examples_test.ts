// Runs the example guests without the VM engine: sequentially under node:wasi,
// and "forked" by replaying the program once per role. The guests are
// deterministic, so clone k is exactly a run whose sf_clone returns k.
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { WASI } from "node:wasi";
import { buildExample } from "./cc.ts";

type Stubs = Record<string, (...args: number[]) => number>;

/** sf_exit, thrown through the guest to end its run like proc_exit does. */
class CloneExit extends Error {
  constructor(readonly code: number) {
    super(`clone exited with ${code}`);
    this.name = "CloneExit";
  }
}

interface GuestRun {
  code: number;
  stdout: string;
  calls: string[];
}

function runGuest(
  module: WebAssembly.Module,
  args: string[],
  outDir: string,
  stubs: Stubs,
): GuestRun {
  const stdoutPath = Deno.makeTempFileSync();
  const fd = openSync(stdoutPath, "w");
  const calls: string[] = [];
  const snowflock: Stubs = {};
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.module !== "snowflock") continue;
    snowflock[i.name] = (...a) => {
      calls.push(i.name);
      const stub = stubs[i.name];
      if (stub === undefined) throw new Error(`unexpected call to ${i.name}`);
      return stub(...a);
    };
  }
  const wasi = new WASI({
    version: "preview1",
    args: ["guest", ...args],
    preopens: { "/out": outDir },
    returnOnExit: true,
    stdout: fd,
  });
  try {
    const instance = new WebAssembly.Instance(module, {
      wasi_snapshot_preview1: wasi.wasiImport,
      snowflock,
    });
    let code: number;
    try {
      code = wasi.start(instance);
    } catch (error) {
      if (!(error instanceof CloneExit)) throw error;
      code = error.code;
    }
    return { code, stdout: readFileSync(stdoutPath, "utf8"), calls };
  } finally {
    closeSync(fd);
    Deno.removeSync(stdoutPath);
  }
}

function resultLine(stdout: string): string {
  const line = stdout.split("\n").find((l) => l.startsWith("result: "));
  assert.ok(line, `no result line in:\n${stdout}`);
  return line;
}

function runSequential(module: WebAssembly.Module, args: string[], outDir: string): GuestRun {
  const run = runGuest(module, ["0", ...args], outDir, {});
  assert.equal(run.code, 0, run.stdout);
  assert.deepEqual(run.calls, []);
  return run;
}

/** Replays the clones 1..granted, then the parent, as a fork of `asked` would run them. */
function runForked(
  module: WebAssembly.Module,
  args: string[],
  outDir: string,
  fork: { asked: number; granted: number },
): { parent: GuestRun; clones: GuestRun[] } {
  const ticket = 7;
  const common = (id: number): Stubs => ({
    sf_request_ticket: (n) => (assert.equal(n, fork.asked), ticket),
    sf_ticket_size: (t) => (assert.equal(t, ticket), fork.granted),
    sf_clone: (t) => (assert.equal(t, ticket), id),
    sf_clone_id: () => id,
    sf_hint_overwrite: (ptr, len) => (assert.ok(id > 0 && ptr >= 0 && len > 0), 0),
  });
  const clones: GuestRun[] = [];
  for (let id = 1; id <= fork.granted; id++) {
    const dir = join(outDir, `clone-${id}`);
    Deno.mkdirSync(dir);
    const run = runGuest(module, [String(fork.asked), ...args], dir, {
      ...common(id),
      sf_exit: (code) => {
        throw new CloneExit(code);
      },
      sf_join: () => -5, // SF_ECLONE
    });
    assert.equal(run.code, 0, run.stdout);
    assert.equal(run.calls.at(-1), "sf_exit");
    clones.push(run);
  }
  const parent = runGuest(module, [String(fork.asked), ...args], outDir, {
    ...common(0),
    sf_join: (t) => (assert.equal(t, ticket), 0),
  });
  assert.equal(parent.code, 0, parent.stdout);
  assert.ok(parent.calls.includes("sf_join"));
  return { parent, clones };
}

/**
 * Checks the sequential result line against `golden` and against forks of
 * several sizes; the parent's `outputs` in /out must be identical too.
 */
async function checkExample(
  name: string,
  args: string[],
  expect: { golden: string; outputs?: string[] },
): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    const module = new WebAssembly.Module(await Deno.readFile(await buildExample(name, dir)));
    const sequentialOut = await Deno.makeTempDir({ dir });
    const sequential = runSequential(module, args, sequentialOut);
    assert.equal(resultLine(sequential.stdout), expect.golden);
    for (const fork of [{ asked: 1, granted: 1 }, { asked: 4, granted: 3 }]) {
      const out = await Deno.makeTempDir({ dir });
      const { parent, clones } = runForked(module, args, out, fork);
      assert.equal(resultLine(parent.stdout), expect.golden, `${fork.granted} clones`);
      for (const file of expect.outputs ?? []) {
        assert.deepEqual(
          await Deno.readFile(join(out, file)),
          await Deno.readFile(join(sequentialOut, file)),
          file,
        );
      }
      assert.match(parent.stdout, new RegExp(`granted ${fork.granted} of ${fork.asked} clones`));
      clones.forEach((clone, i) =>
        assert.match(clone.stdout, new RegExp(`^worker ${i + 1}: `, "m"))
      );
      assert.doesNotMatch(clones.map((c) => c.stdout).join(""), /^result: /m);
    }
    return sequential.stdout;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("mandelbrot renders the same image alone and forked", async () => {
  const stdout = await checkExample("mandelbrot", ["160", "120", "200"], {
    golden: "result: 8ccec467d19fd3c9",
    outputs: ["mandelbrot.pgm"],
  });
  assert.match(stdout, /^wrote \/out\/mandelbrot\.pgm /m);
});

Deno.test("pricer prices the same call alone and forked, near Black-Scholes", async () => {
  const stdout = await checkExample("pricer", ["200000"], { golden: "result: 8.024064" });
  const analytic = Number(/analytic Black-Scholes: ([\d.]+)/.exec(stdout)?.[1]);
  assert.ok(Math.abs(analytic - 8.021352) < 1e-6, stdout);
});

Deno.test("search finds the same matches alone and forked", async () => {
  await checkExample("search", ["GATTACA", "2"], {
    golden: "result: 119 288f5694b9587ec4",
  });
});
