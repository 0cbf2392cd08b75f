# SPDX-License-Identifier: GPL-2.0-or-later
# The Python part of the built-in `snowflock` module (see snowflock.c): it runs
# in the module's namespace when the module is first imported. The sf_* calls
# it wraps (_request_ticket, _clone, ...) are defined by snowflock.c.
"""Snowflock's impromptu-cluster API for Python: fork this running interpreter
(its heap, imported modules and objects) into clones on other hosts.

    import snowflock
    ticket = snowflock.request_ticket(8)     # ask for up to 8 clones
    me = snowflock.clone(ticket)             # 0 here, 1..ticket.size in the clones
    work(share=me, of=ticket.size + 1)       # the parent is worker 0
    if me > 0:
        save_result("/out/part")             # gathered into /out/clone-<id>/
        snowflock.exit(0)
    for clone_id, code in snowflock.join(ticket):
        ...

or, simplest, ``snowflock.pmap(fn, items, clones=8)``.

Every VM has a directory /out; what a clone writes there is in the parent's
/out/clone-<id>/ when join() returns. Clone output is shown tagged with the
clone's id. Errors are raised as snowflock.Error, whose .code is the negative
SF_E* code of native/sf.h.

clone() works anywhere in the job's own Python code (functions calling
functions, methods, loops); it raises Error(SF_ENOTSUP) when called from
inside a generator, from a callback that C code called (a key= of sorted(), a
function given to map()), or while a module is being imported.
"""

SF_EINVAL = -1
SF_ENOTICKET = -2
SF_ETICKETUSED = -3
SF_ENOSLOTS = -4
SF_ECLONE = -5
SF_ECONTROL = -6
SF_EFORK = -7
SF_ENOTSUP = -8
SF_ETIMEDOUT = -9
SF_ENOCKPT = -10

_MESSAGES = {
    SF_EINVAL: "bad argument",
    SF_ENOTICKET: "unknown ticket",
    SF_ETICKETUSED: "ticket already used",
    SF_ENOSLOTS: "the allocator granted no clones",
    SF_ECLONE: "not allowed in a clone",
    SF_ECONTROL: "control plane unreachable",
    SF_EFORK: "fork failed",
    SF_ENOTSUP: "not supported",
    SF_ETIMEDOUT: "timed out",
    SF_ENOCKPT: "unknown checkpoint",
}
_NAMES = {v: k for k, v in globals().items() if k.startswith("SF_E")}


class Error(Exception):
    """A Snowflock call failed. ``code`` is the negative SF_E* code (also a
    module constant, e.g. ``snowflock.SF_ECLONE``), ``call`` the sf_* call or a
    description of what was refused."""

    def __init__(self, code, call=""):
        self.code = code
        self.call = call
        self.message = _MESSAGES.get(code, "unknown error")
        super().__init__(code, self.message)

    def __str__(self):
        name = _NAMES.get(self.code, str(self.code))
        where = f" in {self.call}" if self.call.startswith("sf_") else f": {self.call}" if self.call else ""
        return f"{self.message} ({name} {self.code}){where}"


class Ticket:
    """A grant of ``size`` clone slots from the allocator (``size`` may be less
    than asked for, never 0). Use it once with clone(), then join() or kill()."""

    __slots__ = ("handle", "size", "_state")

    def __init__(self, handle, size):
        self.handle = handle
        self.size = size
        self._state = "granted"

    def __repr__(self):
        return f"<snowflock.Ticket handle={self.handle} size={self.size} {self._state}>"


# The ticket this VM was cloned from (in a clone), for its exit record.
_cloned_from = 0
_EXIT_RECORD = "/out/.snowflock-exit-{}"


def request_ticket(n):
    """Asks the allocator for up to ``n`` clones (n >= 1) and returns a Ticket
    whose ``size`` is the number granted. Raises Error(SF_ENOSLOTS) when
    nothing can be granted."""
    handle = _request_ticket(n)
    return Ticket(handle, _ticket_size(handle))


def clone(ticket):
    """Forks this interpreter into the ticket's clones, like fork(): returns 0
    in the parent and 1..ticket.size in the clones, which continue from here
    with a copy of everything. stdout and stderr are flushed first (the clones
    would print the parent's buffered output again). Raises Error with
    SF_ETICKETUSED for a ticket already used, SF_ENOTSUP where the stack
    cannot be forked (see the module documentation)."""
    global _cloned_from
    _flush()
    me = _clone(_handle(ticket))
    if me > 0:
        _cloned_from = _handle(ticket)
    elif isinstance(ticket, Ticket):
        ticket._state = "cloned"
    return me


def join(ticket):
    """Waits until every clone of the ticket has exited or failed, gathers
    their /out into /out/clone-<id>/, releases the ticket and returns
    ``[(clone_id, exit_code), ...]`` in id order. exit_code is None for a clone
    that ended without one (it trapped or was killed). Raises Error(SF_ECLONE)
    in a clone for a ticket of its parent, Error(SF_EINVAL) for a ticket that
    never cloned."""
    handle = _handle(ticket)
    failed = _join(handle)
    size = ticket.size if isinstance(ticket, Ticket) else _size_from_out()
    if isinstance(ticket, Ticket):
        ticket._state = "joined"
    codes = {i: _read_exit_record(i, handle) for i in range(1, size + 1)}
    unknown = [i for i, c in codes.items() if c is None]
    # sf_join counts the clones that did not exit with 0: those without a
    # record failed if the count says so.
    known_failed = sum(1 for c in codes.values() if c not in (None, 0))
    unknown_failed = failed - known_failed
    for i in unknown:
        codes[i] = None if unknown_failed > 0 else 0
        if unknown_failed > 0:
            unknown_failed -= 1
    return sorted(codes.items())


def kill(ticket):
    """Ends all the clones of the ticket at once and releases it."""
    _kill(_handle(ticket))
    if isinstance(ticket, Ticket):
        ticket._state = "killed"


def exit(code=0):
    """Ends this VM at once with ``code`` (a clone's way to finish; its /out is
    gathered by the parent's join). stdout/stderr are flushed; ``finally``
    blocks and atexit handlers do not run."""
    _flush()
    _write_exit_record(code)
    _exit(code)


def clone_id():
    """0 in the parent, this clone's id (1..m) in a clone."""
    return _clone_id()


def hint_overwrite(buffer):
    """Tells Snowflock that this VM is about to overwrite all of ``buffer`` (a
    writable bytes-like object, e.g. a bytearray or a memoryview; BufferError
    for a read-only one): clones made later need not fetch its pages from the
    parent."""
    _hint_overwrite(buffer)


def checkpoint():
    """Makes an immutable checkpoint of this interpreter, to start clones from
    later with create_clones(). Returns the checkpoint id here and 0 in clones
    started from it."""
    _flush()
    return _checkpoint_parent()


def create_clones(checkpoint_id, ticket):
    """Starts the ticket's clones from a checkpoint: they continue from the
    checkpoint() call, which returns 0 there. Join them as after clone()."""
    _create_clones(checkpoint_id, _handle(ticket))
    if isinstance(ticket, Ticket):
        ticket._state = "cloned"


def pmap(fn, items, clones=8):
    """``list(map(fn, items))`` computed by an impromptu cluster: forks up to
    ``clones`` clones, splits the items into contiguous shares (the parent
    computes the first), gathers the results through /out with pickle and
    joins. ``fn`` and the items need not be picklable (the clones inherit
    them); the results must be. An exception raised by ``fn`` in a clone is
    raised here (its clone's traceback was printed on that clone's stderr).
    Falls back to a plain map when no clone can be granted."""
    items = list(items)
    if clones < 0:
        raise ValueError("clones must be >= 0")
    wanted = min(clones, len(items) - 1)
    if wanted <= 0:
        return [fn(x) for x in items]
    try:
        ticket = request_ticket(wanted)
    except Error as e:
        if e.code != SF_ENOSLOTS:
            raise
        return [fn(x) for x in items]
    workers = ticket.size + 1
    bounds = [len(items) * i // workers for i in range(workers + 1)]
    me = clone(ticket)
    share = items[bounds[me]:bounds[me + 1]]
    if me > 0:
        _pmap_clone(fn, share, ticket.handle)
    try:
        results = [fn(x) for x in share]
    except BaseException:
        kill(ticket)
        raise
    join(ticket)
    for i in range(1, workers):
        results.extend(_pmap_gather(i, ticket.handle))
    return results


_PMAP_FILE = ".snowflock-pmap-{}.pickle"


def _pmap_clone(fn, share, handle):
    import pickle
    try:
        payload = (True, [fn(x) for x in share])
        code = 0
    except BaseException as e:
        import traceback
        traceback.print_exc()
        payload = (False, _picklable_error(e))
        code = 1
    try:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        import traceback
        traceback.print_exc()
        data = pickle.dumps((False, _picklable_error(e)))
        code = 1
    with open("/out/" + _PMAP_FILE.format(handle), "wb") as f:
        f.write(data)
    exit(code)


def _picklable_error(e):
    import pickle
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


def _pmap_gather(clone_id, handle):
    import os
    import pickle
    path = f"/out/clone-{clone_id}/" + _PMAP_FILE.format(handle)
    try:
        with open(path, "rb") as f:
            ok, value = pickle.load(f)
        os.unlink(path)
    except FileNotFoundError:
        raise Error(SF_EFORK, f"pmap: clone {clone_id} ended without a result") from None
    if not ok:
        value.add_note(f"(raised by pmap's fn in clone {clone_id})")
        raise value
    return value


def _handle(ticket):
    return ticket.handle if isinstance(ticket, Ticket) else int(ticket)


def _size_from_out():
    import os
    try:
        names = os.listdir("/out")
    except OSError:
        return 0
    ids = [int(n[6:]) for n in names if n.startswith("clone-") and n[6:].isdigit()]
    return max(ids, default=0)


def _flush():
    import sys
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _write_exit_record(code):
    if _cloned_from and _clone_id() > 0:
        try:
            with open(_EXIT_RECORD.format(_cloned_from), "w") as f:
                f.write(str(code))
        except OSError:
            pass


def _read_exit_record(clone_id, handle):
    # The agent's record (if it writes one) wins: it also knows traps and kills.
    import json
    import os
    base = f"/out/clone-{clone_id}/"
    try:
        with open(base + ".snowflock/exit.json") as f:
            record = json.load(f)
        if record.get("ticket") in (None, handle):
            return record.get("exit_code")
    except (OSError, ValueError):
        pass
    path = base + _EXIT_RECORD.format(handle)[len("/out/"):]
    try:
        with open(path) as f:
            code = int(f.read())
        os.unlink(path)
        return code
    except (OSError, ValueError):
        return None


def _exit_status(e):
    """The process exit status SystemExit ``e`` stands for (as Python's own)."""
    import sys
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _main():
    """Runs a job given as ``-c 'import snowflock; snowflock._main()' NAME N
    CHUNK1 .. CHUNKN ARGS...`` (its source in N pieces): the source travels by
    value (a clone on another host has no copy of the file), tracebacks show
    its lines, and it runs where clone() can fork (see snowflock.c)."""
    import linecache
    import sys
    import __main__
    path, n = sys.argv[1], int(sys.argv[2])
    source = "".join(sys.argv[3:3 + n])
    sys.argv = [path] + sys.argv[3 + n:]
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)
    g = __main__.__dict__
    g["__file__"] = path
    g.pop("snowflock", None)
    status = 0
    try:
        code = compile(source, path, "exec")
        # Called from Python, the job's code runs in this same eval-loop C
        # frame, where clone() can suspend and fork.
        import types
        types.FunctionType(code, g)()
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        import traceback
        _flush()
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        status = 1
    _flush()
    _write_exit_record(status)
    raise SystemExit(status)
