"""When each Rollout ticks: watch events and its own deadlines, not a timer per Rollout.

A Rollout ticks a second after any tick that wrote (set, then verify). Otherwise a watch event
wakes it (its own object, its Deployments, Services, canary pods or route), or time does: in
flight, the engine's next time-based turn (a pause's end, a deadline, a grace), its analysis'
next check (every second while the sequential error-rate test runs), a gate to ask (every
second), and at most IN_FLIGHT_SECONDS in case a watch event was missed. At rest (Healthy,
RolledBack, Invalid, paused by a person, an inconclusive analysis, or a step's pause until
promote with no analysis judging meanwhile) it sleeps but for its scale-down deadline, a firing
alert's re-send and the slow resync. Converged ticks make no writes, so an extra wake-up costs
a little CPU, never a write.

Pure: ``next_tick`` decides from the status the tick wrote; ``WakeQueue`` orders the wake-ups on a
clock it is given. handlers.py runs them.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

from kanary.analysis import sequential
from kanary.engine.tick import canary_judged
from kanary.spec import AnalysisSpec
from kanary.status import RolloutStatus
from kanary.status_write import COALESCE_SECONDS

TICK_SECONDS = 1.0
ALERT_SECONDS = 30.0  # a firing alert is re-sent to Alertmanager every 60 s (notify.dispatch)
RESYNC_SECONDS = 300.0  # a Rollout at rest is looked at this often even without a watch event
IN_FLIGHT_SECONDS = 5.0  # a Rollout in flight, waiting for its pods, without a watch event

K = TypeVar("K", bound=Hashable)

_AT_REST = ("Healthy", "RolledBack", "Invalid")


def next_tick(
    status: RolloutStatus | None,
    wrote: bool,
    now: datetime,
    analysis: AnalysisSpec | None = None,
    recheck_at: datetime | None = None,
    unwritten_since: datetime | None = None,
) -> float:
    """Seconds until this Rollout's next tick, from the status the tick left (None: it was
    being deleted). A tick that wrote anything is verified by the next one, a second later.

    In flight, the Rollout waits for the cluster (its pods, Deployments, route: each wakes it
    by a watch event) and for time: ``recheck_at``, the engine's next time-based turn (a
    pause's end, a deadline, a grace), and ``analysis``, whose next check is due an interval
    after the last while it judges the canary (every tick while the sequential error-rate
    test runs). IN_FLIGHT_SECONDS bounds the wait, should a watch event be missed. At rest it
    sleeps, but for its scale-down deadline and a firing alert's re-send. ``unwritten_since``:
    an observation waits to be written (reconcile._waits) until COALESCE_SECONDS after it."""
    if wrote:
        return TICK_SECONDS
    if status is None:
        return RESYNC_SECONDS
    paused = status.phase == "Paused" and status.pause_reason in ("User", "Inconclusive", "Step")
    if status.gate is not None or status.phase is None:
        return TICK_SECONDS  # a gate is asked every tick; a Rollout never ticked starts
    resting = status.phase in _AT_REST or (paused and status.pause_reason != "Step")
    wait = RESYNC_SECONDS if resting or paused else IN_FLIGHT_SECONDS
    if recheck_at is not None:
        wait = min(wait, (recheck_at - now).total_seconds())
    if analysis is not None and not resting and canary_judged(status):
        last = status.analysis.last_check_at
        if sequential.applies(analysis) or last is None:
            return TICK_SECONDS
        wait = min(wait, (last - now).total_seconds() + analysis.interval_seconds())
    if status.scale_down_at is not None:
        wait = min(wait, (status.scale_down_at - now).total_seconds())
    if any(a.resolved_at is None for a in status.alerts):
        wait = min(wait, ALERT_SECONDS)
    if unwritten_since is not None:
        wait = min(wait, COALESCE_SECONDS - (now - unwritten_since).total_seconds())
    return max(TICK_SECONDS, wait)


class WakeQueue(Generic[K]):
    """Keys due at a time; waking a key earlier than it is due moves it up, never later. A key
    being reconciled is neither handed out twice nor due: a wake-up meanwhile is kept for when
    its tick is done (were it due, the scheduler would find work it cannot start and look
    again at once until the tick ends)."""

    def __init__(self) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self.running: set[K] = set()
        self._after: dict[K, float] = {}  # woken while running: queued when done

    def __len__(self) -> int:
        return len(self._due) + len(self._after)

    def wake(self, key: K, at: float) -> bool:
        """Whether the key is now due at `at`, earlier than before (False: no change, or the
        key is running and the wake-up is kept for after its tick)."""
        if key in self.running:  # not due before its tick is done, whatever `at` says
            after = self._after.get(key)
            if after is None or at < after:
                self._after[key] = at
            return False
        current = self._due.get(key)
        if current is not None and current <= at:
            return False
        self._due[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        return True

    def forget(self, key: K) -> None:
        self._due.pop(key, None)
        self._after.pop(key, None)

    def next_due(self) -> float | None:
        while self._heap:
            at, _, key = self._heap[0]
            if self._due.get(key) == at:
                return at
            heapq.heappop(self._heap)  # stale: moved up or forgotten
        return None

    def pop_due(self, now: float, limit: int) -> list[K]:
        """Up to ``limit`` keys due by ``now``, earliest first; marked running."""
        taken: list[K] = []
        while self._heap and len(taken) < limit:
            at, _, key = self._heap[0]
            if at > now:
                break
            heapq.heappop(self._heap)
            if self._due.get(key) != at:
                continue
            del self._due[key]
            self.running.add(key)
            taken.append(key)
        return taken

    def done(self, key: K) -> None:
        """The key's tick is over: a wake-up it got meanwhile is due now."""
        self.running.discard(key)
        after = self._after.pop(key, None)
        if after is not None:
            self.wake(key, after)
