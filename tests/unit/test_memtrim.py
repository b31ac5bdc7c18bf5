"""memtrim: freed heap pages go back to the OS (glibc's malloc_trim), once deletions settle."""

from __future__ import annotations

import pytest

from kanary import memtrim


@pytest.mark.skipif(memtrim._LIBC is None, reason="no glibc here")
def test_freed_heap_pages_are_released() -> None:
    blocks = [bytes(4096) + bytes([i % 256]) for i in range(20000)]  # 80 MiB through malloc
    del blocks
    assert memtrim.trim() is True  # glibc says it returned memory to the OS
