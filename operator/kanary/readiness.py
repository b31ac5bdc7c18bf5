"""Canary pod readiness figures: how long pods took from creation to Ready, and who is late.

The I/O layer records, per canary pod, when it was created and when it was first seen Ready; this
turns those into the numbers status shows and the engine judges against maxPodReadySeconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime

from kanary.observation import PodTiming, ReadinessFigures


def seconds_to_ready(pod: PodTiming) -> float | None:
    """Creation to first Ready; never negative (clock skew between watch and apiserver)."""
    if pod.ready_at is None:
        return None
    return max((pod.ready_at - pod.created).total_seconds(), 0.0)


def readiness_figures(pods: Iterable[PodTiming], now: datetime) -> ReadinessFigures:
    ready: list[tuple[float, str]] = []
    unready: list[tuple[float, str]] = []
    for pod in pods:
        took = seconds_to_ready(pod)
        if took is None:
            unready.append((max((now - pod.created).total_seconds(), 0.0), pod.name))
        else:
            ready.append((took, pod.name))
    slowest = _largest(ready)
    oldest_unready = _largest(unready)
    return ReadinessFigures(
        count=len(ready),
        p50_seconds=statistics.median(t for t, _ in ready) if ready else None,
        max_seconds=slowest[0] if slowest else None,
        slowest_pod=slowest[1] if slowest else None,
        oldest_unready_seconds=oldest_unready[0] if oldest_unready else None,
        oldest_unready_pod=oldest_unready[1] if oldest_unready else None,
    )


def _largest(timed: list[tuple[float, str]]) -> tuple[float, str] | None:
    """The longest time; on a tie the first pod name in sort order, so results are stable."""
    if not timed:
        return None
    return min(timed, key=lambda item: (-item[0], item[1]))
