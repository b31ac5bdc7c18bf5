"""Readiness figures from pod timings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kanary.observation import PodTiming
from kanary.readiness import readiness_figures, seconds_to_ready

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(name: str, created_ago: float, ready_after: float | None) -> PodTiming:
    created = NOW - timedelta(seconds=created_ago)
    ready = None if ready_after is None else created + timedelta(seconds=ready_after)
    return PodTiming(name=name, created=created, ready_at=ready)


def test_no_pods_gives_empty_figures() -> None:
    figures = readiness_figures([], NOW)
    assert figures.count == 0
    assert figures.p50_seconds is None
    assert figures.max_seconds is None
    assert figures.slowest_pod is None
    assert figures.oldest_unready_seconds is None


def test_counts_median_max_and_slowest_pod() -> None:
    figures = readiness_figures([pod("a", 60, 2.0), pod("b", 60, 8.25), pod("c", 60, 3.0)], NOW)
    assert figures.count == 3
    assert figures.p50_seconds == 3.0
    assert figures.max_seconds == 8.25
    assert figures.slowest_pod == "b"
    assert figures.oldest_unready_pod is None


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    figures = readiness_figures([pod("a", 60, 1.0), pod("b", 60, 3.0)], NOW)
    assert figures.p50_seconds == 2.0


def test_sub_second_precision_is_kept() -> None:
    figures = readiness_figures([pod("a", 10, 0.35)], NOW)
    assert figures.max_seconds is not None
    assert abs(figures.max_seconds - 0.35) < 1e-6


def test_unready_pods_report_the_oldest_age_now() -> None:
    figures = readiness_figures(
        [pod("ready", 30, 1.0), pod("young", 2.5, None), pod("old", 9.0, None)], NOW
    )
    assert figures.count == 1
    assert figures.oldest_unready_seconds == 9.0
    assert figures.oldest_unready_pod == "old"


def test_ties_pick_the_first_name_so_results_are_stable() -> None:
    forward = readiness_figures([pod("b", 60, 4.0), pod("a", 60, 4.0)], NOW)
    backward = readiness_figures([pod("a", 60, 4.0), pod("b", 60, 4.0)], NOW)
    assert forward.slowest_pod == backward.slowest_pod == "a"


def test_clock_skew_never_gives_negative_seconds() -> None:
    skewed = PodTiming(name="a", created=NOW, ready_at=NOW - timedelta(seconds=1))
    assert seconds_to_ready(skewed) == 0.0
    future = PodTiming(name="b", created=NOW + timedelta(seconds=2), ready_at=None)
    assert readiness_figures([future], NOW).oldest_unready_seconds == 0.0
