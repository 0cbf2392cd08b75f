/**
 * `import snowflock` in Snowflock's CPython on an embedded cluster (master +
 * 4 agents on loopback): the calls and their errors, pmap against map, and a
 * clone that raises.
 */
import assert from "node:assert/strict";
import { dump, runPython, withCluster } from "./python_harness.ts";

const CALLS = `
import snowflock, sys

def check(what, fn, code):
    try:
        fn()
    except snowflock.Error as e:
        assert e.code == code, (what, e.code, code)
        print(f"{what}: {e.code} {e}")
    else:
        print(f"{what}: FAIL no error")

print("doc", "pmap" in snowflock.__doc__, bool(snowflock.clone.__doc__), bool(snowflock.join.__doc__))
check("request_ticket(0)", lambda: snowflock.request_ticket(0), snowflock.SF_EINVAL)
check("join never cloned", lambda: snowflock.join(snowflock.request_ticket(1)), snowflock.SF_EINVAL)
try:
    snowflock.hint_overwrite(b"read-only bytes")
except BufferError:
    print("hint_overwrite(bytes): BufferError")
snowflock.hint_overwrite(bytearray(100000))
print("hint_overwrite(bytearray): ok")

def gen(t):
    yield snowflock.clone(t)
t0 = snowflock.request_ticket(1)
check("clone in a generator", lambda: next(gen(t0)), snowflock.SF_ENOTSUP)
check("clone in a sorted() key", lambda: sorted([1, 2], key=lambda x: snowflock.clone(t0)), snowflock.SF_ENOTSUP)
import functools
check("clone through partial", functools.partial(snowflock._clone, t0.handle), snowflock.SF_ENOTSUP)
import errno
try:
    open("/usr/local/lib/python3.11/written.txt", "w")
except OSError as e:
    print("stdlib read-only", e.errno == errno.EROFS)

t = snowflock.request_ticket(3)
print("size", t.size, repr(t).startswith("<snowflock.Ticket"))
inherited = {"answer": 42}
me = snowflock.clone(t)
if me > 0:
    print(f"clone {me} id={snowflock.clone_id()} inherited={inherited['answer']}")
    check("join in a clone", lambda: snowflock.join(t), snowflock.SF_ECLONE)
    with open("/out/hello", "w") as f:
        f.write(f"from {me}")
    snowflock.exit(me * 10)
print("parent id", snowflock.clone_id(), "me", me)
check("clone with a used ticket", lambda: snowflock.clone(t), snowflock.SF_ETICKETUSED)
joined = snowflock.join(t)
print("joined", joined)
print("gathered", [open(f"/out/clone-{i}/hello").read() for i in (1, 2, 3)])
`;

Deno.test("python: snowflock calls, ids, inheritance, exit codes in join, errors", async () => {
  await withCluster(async (client) => {
    const r = await runPython(client, CALLS);
    assert.equal(r.exitCode, 0, dump(r));
    const out = r.stdout;
    assert.ok(out.includes("doc True True True"), dump(r));
    assert.ok(
      out.includes("request_ticket(0): -1 bad argument (SF_EINVAL -1) in sf_request_ticket"),
      dump(r),
    );
    assert.ok(out.some((l) => l.startsWith("join never cloned: -1 ")), dump(r));
    assert.ok(out.includes("hint_overwrite(bytes): BufferError"), dump(r));
    assert.ok(out.includes("hint_overwrite(bytearray): ok"), dump(r));
    assert.ok(out.some((l) => l.startsWith("clone in a generator: -8 not supported")), dump(r));
    assert.ok(out.some((l) => l.startsWith("clone in a sorted() key: -8 not supported")), dump(r));
    assert.ok(out.some((l) => l.startsWith("clone through partial: -8 not supported")), dump(r));
    assert.ok(out.includes("stdlib read-only True"), dump(r));
    assert.ok(out.includes("size 3 True"), dump(r));
    assert.ok(out.includes("parent id 0 me 0"), dump(r));
    assert.ok(
      out.some((l) => l.startsWith("clone with a used ticket: -3 ticket already used")),
      dump(r),
    );
    assert.ok(out.includes("joined [(1, 10), (2, 20), (3, 30)]"), dump(r));
    assert.ok(out.includes("gathered ['from 1', 'from 2', 'from 3']"), dump(r));
    assert.equal(r.clones.size, 3, dump(r));
    for (const id of [1, 2, 3]) {
      const lines = r.clones.get(id) ?? [];
      assert.ok(lines.includes(`clone ${id} id=${id} inherited=42`), dump(r));
      assert.ok(
        lines.some((l) => l.startsWith("join in a clone: -5 not allowed in a clone")),
        dump(r),
      );
    }
  });
});

const PMAP = `
import snowflock, json

big = list(range(200000))            # inherited by the clones, never pickled
def square(x): return x * x
def words(s): return sorted(set(s.lower().split()))
def window(i): return (i, sum(big[i * 1000:(i + 1) * 1000]))
def fails_never(x): return {"x": x, "neg": -x, "s": str(x) * 3}
text = ["The quick brown fox", "jumps over the lazy dog", "THE END the end"] * 7

cases = [
    ("square", square, list(range(50)), 4),
    ("words", words, text, 8),
    ("window", window, range(40), 3),
    ("dicts", fails_never, range(13), 8),
    ("lambda", lambda s: s[::-1], ["abc", "héllo wörld", "🐍x"], 2),
    ("empty", square, [], 4),
    ("one", square, [7], 4),
    ("more clones than items", square, [1, 2, 3], 8),
    ("no clones", square, range(5), 0),
]
for name, fn, items, clones in cases:
    got = snowflock.pmap(fn, items, clones=clones)
    want = list(map(fn, items))
    print(name, "equal" if got == want else f"DIFFERENT {got!r} != {want!r}")
`;

Deno.test("python: pmap(fn, items) == list(map(fn, items)) for several functions", async () => {
  await withCluster(async (client) => {
    const r = await runPython(client, PMAP);
    assert.equal(r.exitCode, 0, dump(r));
    for (
      const name of [
        "square",
        "words",
        "window",
        "dicts",
        "lambda",
        "empty",
        "one",
        "more clones than items",
        "no clones",
      ]
    ) {
      assert.ok(r.stdout.includes(`${name} equal`), `${name}\n${dump(r)}`);
    }
    const forks = (await client.status()).clusters.filter((c) => c.parentVm === r.vm);
    assert.equal(forks.length, 6, "pmap forked for the 6 cases with clones and 2+ items");
  });
});

const RAISES = `
import snowflock

def risky(n):
    if n == 2:
        raise ValueError(f"boom in clone {n}")
    return n

t = snowflock.request_ticket(3)
me = snowflock.clone(t)
if me > 0:
    risky(me)
    snowflock.exit(0)
print("joined", snowflock.join(t))

def bad(x):
    if x == 11:
        raise KeyError("eleven")
    return x
try:
    snowflock.pmap(bad, range(12), clones=3)
except KeyError as e:
    print("pmap raised", repr(e), getattr(e, "__notes__", None))
`;

Deno.test("python: a clone that raises prints its traceback tagged with its id and fails in join", async () => {
  await withCluster(async (client) => {
    const r = await runPython(client, RAISES);
    assert.equal(r.exitCode, 0, dump(r));
    assert.ok(r.stdout.includes("joined [(1, 0), (2, 1), (3, 0)]"), dump(r));
    const err = r.cloneStderr.get(2) ?? [];
    assert.ok(err.includes("Traceback (most recent call last):"), dump(r));
    assert.ok(err.some((l) => l.includes('File "job.py", line 12, in <module>')), dump(r));
    assert.ok(err.some((l) => l.trim() === "risky(me)"), "the traceback shows the source line");
    assert.ok(err.includes("ValueError: boom in clone 2"), dump(r));
    assert.equal(r.cloneStderr.get(1), undefined, dump(r));
    assert.ok(
      r.stdout.some((l) =>
        l.startsWith("pmap raised KeyError('eleven')") &&
        l.includes("raised by pmap's fn in clone 3")
      ),
      dump(r),
    );
  });
});
