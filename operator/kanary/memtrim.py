"""Give memory back to the OS once Rollouts are deleted.

`Runtime.forget` and `metrics_export.forget` drop what kanary kept of a deleted Rollout, and
Kopf drops its watch state, but the freed blocks stay with the allocator for reuse. The
operator's image runs with `PYTHONMALLOC=malloc` (Python's objects straight from glibc, not
from pymalloc's arenas, which are only freed when entirely empty) and `MALLOC_ARENA_MAX=2`;
then `malloc_trim(0)` (glibc) returns the free pages, also those in the middle of the heap,
and a full collection first frees what only cycles held. tests/bench/README.md has the
figures: the operator with 1000 Rollouts gave back 64 % of what they had added once all were
deleted (kept 29 MiB, was 90). With pymalloc the trim returns almost nothing, which is why
the image sets the allocator.

`QuietTrim` runs the trim once a burst of deletions has been quiet for QUIET_SECONDS, off the
event loop (it takes milliseconds, a few hundred with a large heap).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

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


class QuietTrim:
    """`deleted()` after each Rollout deletion; `release` runs in a worker thread once no
    deletion came for `quiet` seconds (one run per burst; a deletion during a run gets
    another run after its own quiet time)."""

    def __init__(self, quiet: float = QUIET_SECONDS, release: Callable[[], object] = trim):
        self._quiet = quiet
        self._release = release
        self._due: float | None = None  # loop time of the next run
        self._task: asyncio.Task[None] | None = None

    def deleted(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self._quiet
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="kanary-trim")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._due is not None:
            wait = self._due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._due = None
            await asyncio.to_thread(self._release)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
