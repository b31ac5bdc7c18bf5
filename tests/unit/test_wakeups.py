"""When a Rollout ticks (wakeups.next_tick) and the queue that orders the wake-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanary.spec import AnalysisSpec
from kanary.status import RolloutStatus
from kanary.status_write import COALESCE_SECONDS
from kanary.wakeups import (
    ALERT_SECONDS,
    IN_FLIGHT_SECONDS,
    RESYNC_SECONDS,
    TICK_SECONDS,
    WakeQueue,
    next_tick,
)

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def status(**fields: Any) -> RolloutStatus:
    return RolloutStatus.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"phase": "Progressing"}, IN_FLIGHT_SECONDS),  # waits for its pods: watch events
        ({"phase": "Paused", "pauseReason": "User"}, RESYNC_SECONDS),
        ({"phase": "Paused", "pauseReason": "Inconclusive"}, RESYNC_SECONDS),
        ({"phase": "Healthy"}, RESYNC_SECONDS),
        ({"phase": "RolledBack"}, RESYNC_SECONDS),
        ({"phase": "Invalid"}, RESYNC_SECONDS),
        ({}, TICK_SECONDS),  # never ticked: the first tick starts it
    ],
)
def test_work_in_flight_ticks_every_second_and_a_rollout_at_rest_sleeps(
    fields: dict[str, Any], expected: float
) -> None:
    assert next_tick(status(**fields), False, NOW) == expected


def analysis(**fields: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate({"interval": "20s", **fields})


LATENCY = [{"name": "latency-p99", "max": 0.3}]  # no error-rate: no sequential test
JUDGED = {"phase": "Paused", "pauseReason": "Step", "stage": "Stepping", "canaryWeight": 50}


def test_a_step_pause_until_promote_sleeps_until_the_next_check_of_its_analysis() -> None:
    paused = status(**JUDGED)
    assert next_tick(paused, False, NOW) == RESYNC_SECONDS  # no analysis
    checked = status(**JUDGED, analysis={"lastCheckAt": NOW - timedelta(seconds=5)})
    assert next_tick(checked, False, NOW, analysis(metrics=LATENCY)) == 15
    overdue = status(**JUDGED, analysis={"lastCheckAt": NOW - timedelta(seconds=25)})
    assert next_tick(overdue, False, NOW, analysis(metrics=LATENCY)) == TICK_SECONDS
    assert next_tick(paused, False, NOW, analysis(metrics=LATENCY)) == TICK_SECONDS  # never
    by_hand = status(phase="Paused", pauseReason="User", stage="Stepping", canaryWeight=50)
    assert next_tick(by_hand, False, NOW, analysis(metrics=LATENCY)) == RESYNC_SECONDS


def test_a_step_pause_with_the_sequential_error_rate_test_ticks_every_second() -> None:
    checked = status(**JUDGED, analysis={"lastCheckAt": NOW - timedelta(seconds=5)})
    errors = analysis(metrics=[{"name": "error-rate", "max": 0.01}])
    assert next_tick(checked, False, NOW, errors) == TICK_SECONDS
    off = analysis(metrics=[{"name": "error-rate", "max": 0.01}], sequential={"enabled": False})
    assert next_tick(checked, False, NOW, off) == 15


def test_a_canary_without_ready_pods_is_not_judged_so_its_pause_sleeps() -> None:
    unready = status(**JUDGED, canaryUnavailableSince=NOW - timedelta(seconds=60))
    assert next_tick(unready, False, NOW, analysis(metrics=LATENCY)) == RESYNC_SECONDS


def test_in_flight_it_looks_again_at_the_engines_next_time_based_turn() -> None:
    moving = status(phase="Progressing", stage="Stepping", canaryWeight=25)
    pause_ends = NOW + timedelta(seconds=2.5)
    assert next_tick(moving, False, NOW, recheck_at=pause_ends) == 2.5
    assert next_tick(moving, False, NOW, recheck_at=NOW + timedelta(hours=1)) == IN_FLIGHT_SECONDS
    assert next_tick(moving, False, NOW, recheck_at=NOW) == TICK_SECONDS  # never sooner


def test_in_flight_an_analysis_judging_the_canary_is_checked_on_its_interval() -> None:
    judged = status(
        phase="Progressing",
        stage="Stepping",
        canaryWeight=25,
        analysis={"lastCheckAt": NOW - timedelta(seconds=18)},
    )
    assert next_tick(judged, False, NOW, analysis(metrics=LATENCY)) == 2  # 20 s interval
    errors = analysis(metrics=[{"name": "error-rate", "max": 0.01}])
    assert next_tick(judged, False, NOW, errors) == TICK_SECONDS  # the sequential test


def test_an_observation_waiting_to_be_written_wakes_it_when_due() -> None:
    healthy = status(phase="Healthy")
    since = NOW - timedelta(seconds=2)
    assert next_tick(healthy, False, NOW, unwritten_since=since) == COALESCE_SECONDS - 2
    overdue = NOW - timedelta(seconds=30)
    assert next_tick(healthy, False, NOW, unwritten_since=overdue) == TICK_SECONDS


def test_a_tick_that_wrote_is_verified_a_second_later_even_at_rest() -> None:
    assert next_tick(status(phase="Healthy"), True, NOW) == TICK_SECONDS


def test_a_rollout_being_deleted_sleeps() -> None:
    assert next_tick(None, False, NOW) == RESYNC_SECONDS


def test_a_gate_to_ask_keeps_it_ticking() -> None:
    gate = {"type": "confirm-promotion", "revision": "abc", "since": NOW.isoformat()}
    assert next_tick(status(phase="Paused", pauseReason="User", gate=gate), False, NOW) == 1.0


def test_the_scale_down_deadline_wakes_it_when_due() -> None:
    due = (NOW + timedelta(seconds=42)).isoformat()
    assert next_tick(status(phase="Healthy", scaleDownAt=due), False, NOW) == 42.0
    past = (NOW - timedelta(seconds=5)).isoformat()
    assert next_tick(status(phase="Healthy", scaleDownAt=past), False, NOW) == TICK_SECONDS


def test_a_firing_alert_is_re_sent_but_a_resolved_one_is_not() -> None:
    alert = {"key": "rollback/abc", "event": "rollback", "severity": "critical", "revision": "abc"}
    firing = status(phase="RolledBack", alerts=[{**alert, "at": NOW.isoformat()}])
    assert next_tick(firing, False, NOW) == ALERT_SECONDS
    over = {**alert, "at": NOW.isoformat(), "resolvedAt": NOW.isoformat()}
    assert next_tick(status(phase="Healthy", alerts=[over]), False, NOW) == RESYNC_SECONDS


def test_queue_hands_out_due_keys_earliest_first() -> None:
    q: WakeQueue[str] = WakeQueue()
    q.wake("b", 2.0)
    q.wake("a", 1.0)
    q.wake("c", 5.0)
    assert q.next_due() == 1.0
    assert q.pop_due(2.5, 10) == ["a", "b"]
    assert q.next_due() == 5.0
    assert q.pop_due(4.0, 10) == []


def test_an_earlier_wake_up_moves_a_key_up_and_a_later_one_does_not_delay_it() -> None:
    q: WakeQueue[str] = WakeQueue()
    q.wake("a", 10.0)
    q.wake("a", 3.0)
    q.wake("a", 20.0)
    assert q.next_due() == 3.0
    assert q.pop_due(3.0, 10) == ["a"]
    assert q.pop_due(100.0, 10) == []  # the stale 10.0 and 20.0 entries are gone


def test_a_running_key_is_not_handed_out_twice_and_its_wake_up_is_kept_for_after() -> None:
    q: WakeQueue[str] = WakeQueue()
    q.wake("a", 0.0)
    assert q.pop_due(0.0, 10) == ["a"]
    q.wake("a", 0.5)  # a watch event while it ticks
    assert q.pop_due(1.0, 10) == []
    q.done("a")
    assert q.pop_due(1.0, 10) == ["a"]


def test_a_running_key_woken_again_is_not_due_until_its_tick_is_done() -> None:
    """Before: the wake-up stayed in the heap, so next_due() said "now" for the whole tick and
    the scheduler looked again at once, over and over (py-spy: a fifth of the operator's time
    with 250 Rollouts rolling)."""
    q: WakeQueue[str] = WakeQueue()
    q.wake("a", 0.0)
    assert q.pop_due(0.0, 10) == ["a"]
    q.wake("a", 0.5)
    q.wake("a", 0.7)  # the earliest is kept
    assert q.next_due() is None
    assert len(q) == 1
    q.done("a")
    assert q.next_due() == 0.5
    q.forget("a")
    assert q.next_due() is None


def test_the_limit_bounds_how_many_run_at_once() -> None:
    q: WakeQueue[int] = WakeQueue()
    for i in range(5):
        q.wake(i, float(i))
    assert q.pop_due(10.0, 2) == [0, 1]
    assert q.pop_due(10.0, 2) == [2, 3]
    assert len(q) == 1


def test_a_forgotten_key_is_never_handed_out() -> None:
    q: WakeQueue[str] = WakeQueue()
    q.wake("gone", 0.0)
    q.forget("gone")
    assert q.pop_due(1.0, 10) == []
    assert q.next_due() is None


def test_only_changes_kanary_did_not_write_itself_wake_a_rollout() -> None:
    from kanary.handlers import _matters

    def seen(generation: int = 1, **meta: Any) -> dict[str, Any]:
        return {"metadata": {"generation": generation, **meta}, "spec": {}, "status": {}}

    base = seen(annotations={"a": "1"}, labels={"l": "1"})
    status_only = {**seen(annotations={"a": "1"}, labels={"l": "1"}), "status": {"phase": "x"}}
    assert _matters(None, base)  # first seen
    assert not _matters(base, status_only)  # kanary's own status patch
    assert _matters(base, seen(2, annotations={"a": "1"}, labels={"l": "1"}))  # spec edited
    promote = seen(annotations={"a": "1", "kanary.dev/action": "promote"}, labels={"l": "1"})
    assert _matters(base, promote)  # a person's request
    assert _matters(base, seen(annotations={"a": "1"}, labels={"l": "2"}))
    deleting = seen(annotations={"a": "1"}, labels={"l": "1"}, deletionTimestamp="now")
    assert _matters(base, deleting)
