"""Give memory back to the OS once Rollouts are deleted.

`Runtime.forget` and `metrics_export.forget` drop what kanary kept of a deleted Rollout, and
Kopf drops its watch state, but CPython hands freed blocks to glibc's allocator, which keeps
them for reuse: after 1000 Rollouts were deleted the process stayed 90 MiB above idle.
`malloc_trim(0)` (glibc) returns the free pages at the top of every arena; a full collection
first frees what only cycles held. Run after a burst of deletions has settled, off the event
loop (it takes milliseconds to a few hundred with a large heap).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("kanary")

QUIET_SECONDS = 10.0  # after the last deletion of a burst


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return libc


_LIBC = _libc()


def trim() -> bool:
    """Collect cycles and return free heap pages to the OS; False where there is no glibc."""
    gc.collect()
    if _LIBC is None:
        return False
    released = bool(_LIBC.malloc_trim(0))
    log.debug("malloc_trim: %s", "memory released" if released else "nothing to release")
    return released
