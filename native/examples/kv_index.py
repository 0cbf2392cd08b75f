# SPDX-License-Identifier: GPL-2.0-or-later
"""kv_index - Snowflock's Python showcase: the parent builds a large in-memory
index (128 MiB of Python objects by default) once, forks an impromptu cluster
whose workers each answer the queries against one share of it, and joins.

Usage: kv_index.py <clones> [mib [queries]]    (defaults: 128 MiB, 20000 queries per segment)

The index is SEGMENTS dicts of `key -> (number, weight, label)`, each built in
one go, so a segment lies in its own tenth of the heap. Worker w (the parent
is worker 0 and takes the segments left over) answers the queries of its segments: lookups of pseudo-random
keys plus a scan of the whole segment. A clone touches only its segments
(~10 % of the parent's memory), so memory-on-demand fetches only those pages;
the cyclic GC is frozen before the fork so that no collection walks the rest.

clones = 0 runs everything in the parent with no Snowflock call. The last
line, "result: <hits> <sum> <checksum>", is the same for any number of clones.
"""
import gc
import sys
import time

SEGMENTS = 10
BYTES_PER_ENTRY = 280  # measured: key str, dict slot, tuple, int, float, label str


def build(entries):
    index = []
    per = entries // SEGMENTS
    for s in range(SEGMENTS):
        segment = {}
        for i in range(s * per, (s + 1) * per):
            segment[f"k{i:09d}"] = (i * 7919 % 1000003, (i % 977) / 977.0, f"label-{i % 65521:05d}")
        index.append(segment)
    return index, per


def answer(index, per, segment, queries):
    """Lookups of pseudo-random keys of `segment`, then a scan of all of it."""
    data = index[segment]
    hits = total = checksum = 0
    x = 0x9E3779B9 ^ segment
    for _ in range(queries):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        key = f"k{segment * per + x % per:09d}"
        number, weight, label = data[key]
        hits += 1
        total += number
        checksum = (checksum * 31 + len(label) + int(weight * 1000)) & 0xFFFFFFFF
    for number, weight, label in data.values():
        if number % 11 == 0:
            total += number
            checksum = (checksum + int(weight * 1000)) & 0xFFFFFFFF
    return hits, total, checksum


def shares(workers):
    """Segments of each worker: contiguous, every segment exactly once; the
    parent (worker 0) takes what does not divide evenly, so every clone
    touches the same share (one tenth with 8 or 9 clones)."""
    base = SEGMENTS // workers
    first = SEGMENTS - base * (workers - 1)
    return [range(0, first)] + [range(first + (w - 1) * base, first + w * base)
                                for w in range(1, workers)]


def combine(parts):
    hits = sum(p[0] for p in parts)
    total = sum(p[1] for p in parts)
    checksum = 0
    for p in parts:
        checksum = (checksum ^ p[2]) & 0xFFFFFFFF
    return hits, total, checksum


def main():
    clones = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    queries = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    t0 = time.perf_counter()
    index, per = build(mib * 1024 * 1024 // BYTES_PER_ENTRY)
    gc.collect()
    gc.freeze()
    gc.disable()
    t1 = time.perf_counter()
    print(f"built {per * SEGMENTS} entries in {SEGMENTS} segments ({mib} MiB) in {t1 - t0:.2f} s")

    if clones == 0:
        parts = [answer(index, per, s, queries) for s in range(SEGMENTS)]
        t2 = time.perf_counter()
        print(f"answered {queries * SEGMENTS} queries alone in {t2 - t1:.2f} s")
    else:
        import snowflock
        ticket = snowflock.request_ticket(clones)
        workers = ticket.size + 1
        print(f"granted {ticket.size} clones; memory {snowflock.memory_bytes() >> 20} MiB")
        t_fork = time.perf_counter()
        me = snowflock.clone(ticket)
        mine = shares(workers)[me]
        local = [answer(index, per, s, queries) for s in mine]
        if me > 0:
            with open("/out/answer", "w") as f:
                f.write(" ".join(f"{s} {h} {t} {c}" for s, (h, t, c) in zip(mine, local)))
            print(f"worker {me}: segments {mine.start}..{mine.stop} in {time.perf_counter() - t_fork:.2f} s")
            snowflock.exit(0)
        joined = snowflock.join(ticket)
        failed = [c for c, code in joined if code != 0]
        if failed:
            print(f"clones failed: {failed}", file=sys.stderr)
            sys.exit(1)
        parts = list(local)
        for clone_id in range(1, workers):
            with open(f"/out/clone-{clone_id}/answer") as f:
                numbers = [int(v) for v in f.read().split()]
            parts += [tuple(numbers[i + 1:i + 4]) for i in range(0, len(numbers), 4)]
        t2 = time.perf_counter()
        print(f"answered {queries * SEGMENTS} queries with {ticket.size} clones in {t2 - t1:.2f} s "
              f"(fork to join)")
    hits, total, checksum = combine(parts)
    print(f"result: {hits} {total} {checksum:08x}")


main()
