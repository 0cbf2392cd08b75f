import assert from "node:assert/strict";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function snowflock(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { SNOWFLOCK_MASTER: "", SNOWFLOCK_TOKEN: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("--version and --help on every command", async () => {
  const v = await snowflock("--version");
  assert.equal(v.code, 0);
  assert.match(v.out, /^\d+\.\d+\.\d+/);
  for (const cmd of ["master", "agent", "status", "demo"]) {
    const h = await snowflock(cmd, "--help");
    assert.equal(h.code, 0, cmd);
    assert.match(h.out, new RegExp(`Usage: snowflock ${cmd}`));
  }
});

Deno.test("bad flags and values give one line and a non-zero exit, never a stack trace", async () => {
  const cases: [string[], RegExp][] = [
    [["master", "--bogus"], /unknown option '--bogus'/],
    [["master", "--listen", "nowhere"], /Cannot parse address "nowhere"/],
    [["master", "--allocator", "magic"], /Allowed choices are builtin/],
    [["agent", "--join", "127.0.0.1:1", "--token", "t", "--slots", "-3"], /whole number/],
    [["agent", "--token", "t"], /missing --join/],
    [["agent", "--join", "127.0.0.1:1", "--token", "t", "--backend", "xen"], /backend xen/],
    [["status", "--token", "t", "--master", "127.0.0.1:1"], /Cannot reach master/],
    [["frobnicate"], /unknown command 'frobnicate'/],
  ];
  for (const [args, want] of cases) {
    const r = await snowflock(...args);
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.err, want, args.join(" "));
    assert.doesNotMatch(r.err, /\n\s+at /, `stack trace for ${args.join(" ")}`);
  }
});
