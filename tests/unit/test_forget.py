"""A deleted Rollout leaves nothing behind in the operator's memory or its /metrics (issue 15:
memory returned after Rollouts are deleted, per-Rollout series removed with the Rollout)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest
from tests.unit.test_reconcile import NS, healthy, new_version

from kanary import metrics_export
from kanary.observation import AnalysisOutcome
from kanary.reconcile import EventSeries
from kanary.status import Condition, MetricResult, RolloutStatus


def test_forget_drops_what_the_runtime_kept_of_that_rollout_only() -> None:
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    rt = h.rt
    uid = str(h.body["metadata"].get("uid", ""))
    other_event = ("other-uid", "Normal", "Step", "x")
    other_gate = ("other-uid", "confirm-promotion", "abc")
    rt.recent_events[other_event] = EventSeries("other.1", 1, 1.0)
    rt.gate_asked[other_gate] = datetime.now(UTC)
    rt.applied_generation[(NS, "other-stable")] = 3
    assert any(k[0] == uid for k in rt.recent_events)
    assert any(k[1] in ("demo-stable", "demo-canary") for k in rt.applied_generation)
    rt.forget(NS, "demo", uid)
    assert list(rt.recent_events) == [other_event]
    assert list(rt.gate_asked) == [other_gate]
    assert list(rt.applied_generation) == [(NS, "other-stable")]


def _series_of(rollout: str) -> list[str]:
    text = generate_latest().decode()
    return [line for line in text.splitlines() if f'rollout="{rollout}"' in line]


def test_forget_removes_every_series_of_the_rollout_and_its_phase_count() -> None:
    old = RolloutStatus(phase="Progressing", current_step_index=0)
    rolled = RolloutStatus(
        phase="RolledBack",
        current_step_index=1,
        canary_weight=0,
        conditions=[
            Condition(
                type="RolledBack",
                status="True",
                reason="AnalysisFailed",
                message="x",
                last_transition_time=datetime.now(UTC),
            )
        ],
    )
    for name in ("gone", "kept"):
        metrics_export.record_status("ns-f", name, old, rolled)
        outcome = AnalysisOutcome(
            at=datetime.now(UTC),
            verdict="Fail",
            metrics=(MetricResult(name="error-rate", verdict="Fail", value=0.2),),
        )
        metrics_export.record_analysis("ns-f", name, outcome)
    assert len(_series_of("gone")) >= 4  # weight, steps, rollbacks{reason}, analysis{metric}
    metrics_export.forget("ns-f", "gone")
    assert _series_of("gone") == []
    assert len(_series_of("kept")) >= 4
    metrics_export.forget("ns-f", "kept")
    assert 'kanary_rollouts{phase="RolledBack"} 0.0' in generate_latest().decode()
