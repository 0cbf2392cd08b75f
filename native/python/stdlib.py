# SPDX-License-Identifier: GPL-2.0-or-later
"""Packages CPython's stdlib as Snowflock's stdlib image: a deterministic
ustar archive of the stdlib directory (Lib/ without tests, GUI and packaging
tools, plus the build's _sysconfigdata and an empty lib-dynload, the landmark
of exec_prefix), to be seen by the guest at GUEST_ROOT (CPython's compiled-in
prefix /usr/local + lib/python3.11), every module precompiled to an
unchecked-hash .pyc (the image is read-only in the guest; no stat of the
source is needed to trust the bytecode) with its guest path as the file name
in tracebacks.

Run by scripts/build-python.sh with the build machine's python3.11, whose
bytecode is the guest's (same 3.11 magic number; checked below).
"""
import argparse
import importlib.util
import io
import os
import py_compile
import sys
import tarfile
import tempfile

GUEST_ROOT = "/usr/local/lib/python3.11"
# Not needed by jobs, and large: tests, Tk, IDLE, pip bootstrap, 2to3.
SKIP_DIRS = {
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip",
    "lib2to3", "__pycache__", "site-packages", "venv", "pydoc_data",
}
SKIP_FILES = {"turtle.py", "_pydecimal.py"}
MAGIC_311 = 3495


def files(lib):
    for dirpath, dirnames, filenames in os.walk(lib):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name in SKIP_FILES or name.endswith((".pyc", ".exe", ".whl")):
                continue
            yield os.path.join(dirpath, name)


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_module(tar, source_path, rel, scratch):
    with open(source_path, "rb") as f:
        add(tar, rel, f.read())
    if not rel.endswith(".py"):
        return
    directory, base = os.path.split(rel)
    cached = os.path.join(directory, "__pycache__", f"{base[:-3]}.cpython-311.pyc")
    out = os.path.join(scratch, "m.pyc")
    try:
        py_compile.compile(source_path, cfile=out, dfile=f"{GUEST_ROOT}/{rel}", doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        return  # e.g. a deliberately broken test fixture: leave it source-only
    with open(out, "rb") as f:
        add(tar, cached, f.read())


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lib", required=True, help="CPython's Lib/")
    p.add_argument("--sysconfig", required=True, help="the build's _sysconfigdata_*.py")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    magic = int.from_bytes(importlib.util.MAGIC_NUMBER[:2], "little")
    if sys.version_info[:2] != (3, 11) or magic != MAGIC_311:
        sys.exit(f"stdlib.py: needs python3.11 (bytecode magic {MAGIC_311}), not {sys.version}")
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(a.out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for path in files(a.lib):
            add_module(tar, path, os.path.relpath(path, a.lib), scratch)
        add_module(tar, a.sysconfig, os.path.basename(a.sysconfig), scratch)
        dynload = tarfile.TarInfo("lib-dynload")
        dynload.type = tarfile.DIRTYPE
        dynload.mode = 0o555
        tar.addfile(dynload)


if __name__ == "__main__":
    main()
