"""The scheduler (handlers._schedule) looks at the queue when a Rollout is due, when a tick
ends and when a wake-up comes due earlier than its next look; not on every watch event, and
not over and over while a woken Rollout's tick is still running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kanary import handlers
from kanary.wakeups import WakeQueue

Key = tuple[str, str]


class _CountingQueue(WakeQueue[Key]):
    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def pop_due(self, now: float, limit: int) -> list[Key]:
        self.looks += 1
        return super().pop_due(now, limit)


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> _CountingQueue:
    q = _CountingQueue()
    monkeypatch.setattr(handlers, "_queue", q)
    monkeypatch.setattr(handlers, "_rollouts", {})
    monkeypatch.setattr(handlers, "_last_tick", {})
    monkeypatch.setattr(handlers, "_elector", None)  # leading
    monkeypatch.setattr(handlers, "EVENT_GAP_SECONDS", 0.0)
    return q


def _run(queue: _CountingQueue, scenario: Any, monkeypatch: pytest.MonkeyPatch) -> list[Key]:
    ticked: list[Key] = []
    release = asyncio.Event()

    async def slow_tick(key: Key) -> float:  # a tick waiting on the API server
        ticked.append(key)
        await release.wait()
        return 60.0

    monkeypatch.setattr(handlers, "_reconcile_one", slow_tick)

    async def main() -> None:
        monkeypatch.setattr(handlers, "_signal", asyncio.Event())
        task = asyncio.create_task(handlers._schedule())
        try:
            await scenario(release)
        finally:
            task.cancel()
            release.set()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return ticked


def test_events_for_a_rollout_whose_tick_runs_do_not_spin_the_scheduler(
    queue: _CountingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the running Rollout's new wake-up made the queue due "now" until its tick ended,
    and each look found nothing it could start (thousands of looks in 0.3 s)."""
    key = ("ns", "r")
    handlers._rollouts[key] = {}

    async def scenario(release: asyncio.Event) -> None:
        handlers._wake(key)
        await asyncio.sleep(0.05)  # its tick starts and waits
        for _ in range(20):  # watch events about its pods meanwhile
            handlers._wake(key)
            await asyncio.sleep(0.015)
        looks_while_running = queue.looks
        assert looks_while_running <= 3, looks_while_running
        release.set()
        await asyncio.sleep(0.05)  # the tick ends; the wake-up kept for after it is due now

    assert _run(queue, scenario, monkeypatch) == [key, key]


def test_a_wake_up_due_later_than_the_next_look_does_not_wake_the_scheduler(
    queue: _CountingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    soon, later = ("ns", "soon"), ("ns", "later")
    handlers._rollouts.update({soon: {}, later: {}})

    async def scenario(release: asyncio.Event) -> None:
        await asyncio.sleep(0.02)
        handlers._wake(soon, 0.2)
        await asyncio.sleep(0.02)
        before = queue.looks
        for _ in range(10):
            handlers._wake(later, 5.0)
            await asyncio.sleep(0.005)
        assert queue.looks == before
        await asyncio.sleep(0.3)  # `soon` comes due and ticks without any event

    assert _run(queue, scenario, monkeypatch) == [soon]


def test_wake_ups_while_every_worker_is_busy_wait_for_a_tick_to_end(
    queue: _CountingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: each wake-up that came due earlier made the scheduler look, though no worker
    was free to start it (one look per watch event while 16 ticks ran)."""
    monkeypatch.setattr(handlers, "WORKERS", 1)
    busy = ("ns", "busy")
    others = [("ns", f"r{i}") for i in range(10)]
    for key in (busy, *others):
        handlers._rollouts[key] = {}

    async def scenario(release: asyncio.Event) -> None:
        handlers._wake(busy)
        await asyncio.sleep(0.05)  # its tick takes the one worker and waits
        before = queue.looks
        for key in others:
            handlers._wake(key)
            await asyncio.sleep(0.005)
        assert queue.looks == before
        release.set()
        await asyncio.sleep(0.05)  # the tick ends: the others tick

    assert _run(queue, scenario, monkeypatch) == [busy, *others]
