"""memtrim: freed heap pages go back to the OS (glibc's malloc_trim), once deletions settle."""

from __future__ import annotations

import asyncio

import pytest

from kanary import memtrim


@pytest.mark.skipif(memtrim._LIBC is None, reason="no glibc here")
def test_freed_heap_pages_are_released() -> None:
    blocks = [bytes(4096) + bytes([i % 256]) for i in range(20000)]  # 80 MiB through malloc
    del blocks
    assert memtrim.trim() is True  # glibc says it returned memory to the OS


def test_a_burst_of_deletions_is_trimmed_once_after_it_went_quiet() -> None:
    runs: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        quiet = memtrim.QuietTrim(quiet=0.2, release=lambda: runs.append(loop.time()))
        start = loop.time()
        for _ in range(4):  # four deletions 0.1 s apart: one burst
            quiet.deleted()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.4)
        assert len(runs) == 1
        assert runs[0] - start >= 0.3 + 0.2 - 0.05  # after the last deletion's quiet time
        quiet.deleted()  # a later deletion: another run
        await asyncio.sleep(0.4)
        assert len(runs) == 2
        quiet.cancel()

    asyncio.run(scenario())
