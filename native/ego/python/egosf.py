# SPDX-License-Identifier: GPL-2.0-or-later
"""Python bindings for libegosf (native/ego/egosf.h) with ctypes, as SnowFlock
shipped: open an EGO session, request slots, poll for grants and reclaims,
release, close. Only ints and strings cross; EGO's structures stay in C.

    with EgoSession("/path/libegosf.so", confdir, user, password) as ego:
        alloc = ego.request("/SnowFlock", "ComputeHosts", 4)
        event = ego.poll(1000)   # Event("add", alloc, "host1", 2) or None
        ego.release(alloc)
"""
import ctypes
from typing import NamedTuple, Optional

ABI_VERSION = 1
_EVENT_BYTES = 512
_ID_BYTES = 256


class EgoSfError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Event(NamedTuple):
    kind: str  # "add" or "reclaim"
    alloc_id: str
    host: str
    slots: int


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.egosf_abi_version.restype = ctypes.c_int
    lib.egosf_open.argtypes = [ctypes.c_char_p] * 4
    lib.egosf_open.restype = ctypes.c_void_p
    lib.egosf_request.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.egosf_poll.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.egosf_release_host.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.egosf_release.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.egosf_close.argtypes = [ctypes.c_void_p]
    lib.egosf_last_error.restype = ctypes.c_char_p
    for name in ("egosf_request", "egosf_poll", "egosf_release_host", "egosf_release",
                 "egosf_close"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


class EgoSession:
    """One EGO client session (logged on and registered) through libegosf."""

    def __init__(self, library: str, confdir: str, user: str, password: str,
                 client: str = "snowflock"):
        self._lib = _load(library)
        abi = self._lib.egosf_abi_version()
        if abi != ABI_VERSION:
            raise EgoSfError(f"Cannot use {library}: ABI {abi}, expected {ABI_VERSION}", -1)
        self._s = self._lib.egosf_open(confdir.encode(), user.encode(), password.encode(),
                                       client.encode())
        if not self._s:
            raise EgoSfError(self._last_error(), -1)
        self._event = ctypes.create_string_buffer(_EVENT_BYTES)

    def _last_error(self) -> str:
        return (self._lib.egosf_last_error() or b"unknown libegosf failure").decode()

    def _check(self, rc: int) -> int:
        if rc < 0:
            raise EgoSfError(self._last_error(), rc)
        return rc

    def _session(self) -> int:
        if not self._s:
            raise EgoSfError("Cannot use EGO session: closed", -1)
        return self._s

    def request(self, consumer: str, resource_group: str, max_slots: int) -> str:
        """Asks for 1..max_slots slots; returns the allocation id."""
        out = ctypes.create_string_buffer(_ID_BYTES)
        self._check(self._lib.egosf_request(self._session(), consumer.encode(),
                                            resource_group.encode(), 1, max_slots, out,
                                            _ID_BYTES))
        return out.value.decode()

    def poll(self, timeout_ms: int = 0) -> Optional[Event]:
        """The next add/reclaim event, waiting up to timeout_ms; None when there is none."""
        if self._check(self._lib.egosf_poll(self._session(), timeout_ms, self._event,
                                            _EVENT_BYTES)) == 0:
            return None
        kind, alloc_id, host, slots = self._event.value.decode().split(" ")
        return Event(kind, alloc_id, host, int(slots))

    def release_host(self, alloc_id: str, host: str) -> None:
        self._check(self._lib.egosf_release_host(self._session(), alloc_id.encode(),
                                                 host.encode()))

    def release(self, alloc_id: str) -> None:
        self._check(self._lib.egosf_release(self._session(), alloc_id.encode()))

    def close(self) -> None:
        if self._s:
            s, self._s = self._s, None
            self._check(self._lib.egosf_close(s))

    def __enter__(self) -> "EgoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
