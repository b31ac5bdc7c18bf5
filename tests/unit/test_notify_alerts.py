"""Which alerts a transition raises, with what words, and when they are over (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.conftest import make_spec

from kanary.notify import text
from kanary.notify.alerts import KEPT, AlertContext, raise_alerts
from kanary.spec import RolloutSpec
from kanary.status import (
    AlertRecord,
    AnalysisStatus,
    Condition,
    HistoryEntry,
    MetricResult,
    RolloutStatus,
)

T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CTX = AlertContext(namespace="demo", name="gin", providers=("demo/hook",))


def spec(**notifications: object) -> RolloutSpec:
    return make_spec(notifications={"providers": ["hook"], **notifications})


def stepping(**changes: object) -> RolloutStatus:
    base = RolloutStatus(
        phase="Progressing",
        stage="Stepping",
        current_step_index=2,
        canary_weight=25,
        canary_revision="abc123",
        stable_revision="old999",
    )
    return base.model_copy(update=changes)


FAILED = AnalysisStatus(
    verdict="Fail",
    consecutive_failures=2,
    metrics=[
        MetricResult(name="latency-p99", verdict="Pass", value=0.08, max=0.3),
        MetricResult(
            name="error-rate", verdict="Fail", value=0.155, max=0.01, requests=60.2, window="30s"
        ),
    ],
    summary="error-rate 15.5% > 1.0% over 30s, 60 canary requests",
)


def rolled_back(before: RolloutStatus) -> RolloutStatus:
    reason = "error-rate 15.5% > 1.0% over 30s, 60 canary requests: 2 consecutive failed checks"
    return before.model_copy(
        update={
            "phase": "RolledBack",
            "stage": "Aborted",
            "canary_weight": 0,
            "analysis": FAILED,
            "history": [
                HistoryEntry(revision="abc123", outcome="RolledBack", finished=T, reason=reason)
            ],
            "conditions": [
                Condition(
                    type="RolledBack",
                    status="True",
                    reason="AnalysisFailed",
                    message=f"step 3/7: {reason}",
                    last_transition_time=T,
                )
            ],
        }
    )


def test_a_failed_analysis_rollback_carries_the_evidence() -> None:
    before = stepping()
    after, _ = raise_alerts(spec(), before, rolled_back(before), CTX, T)
    (record,) = after.alerts
    assert (record.key, record.event, record.severity, record.reason) == (
        "RolledBack/abc123",
        "RolledBack",
        "critical",
        "AnalysisFailed",
    )
    v = record.variables
    assert (v["metric"], v["value"], v["threshold"], v["window"], v["requests"]) == (
        "error-rate",
        "15.5%",
        "<= 1.0%",
        "30s",
        "60",
    )
    assert (v["step"], v["weight"], v["revision"]) == ("step 3/7", "25", "abc123")
    assert record.text == (
        "demo/gin: abc123 rolled back at step 3/7 (weight 25%): error-rate 15.5% > 1.0% over 30s, "
        "60 canary requests: 2 consecutive failed checks -- `kanary status gin -n demo` | "
        "`kanary retry gin -n demo`"
    )


def test_the_same_transition_seen_again_raises_nothing_new() -> None:
    before = stepping()
    once, _ = raise_alerts(spec(), before, rolled_back(before), CTX, T)
    # a restart re-reads the written status: before == after now, nothing is raised
    again, _ = raise_alerts(spec(), once, once, CTX, T + timedelta(seconds=1))
    assert [r.key for r in again.alerts] == ["RolledBack/abc123"]
    # and a lost tick that decides the same transition again finds its key recorded
    twice, _ = raise_alerts(spec(), before, once.model_copy(update={"phase": "RolledBack"}), CTX, T)
    assert len(twice.alerts) == 1


def test_a_template_renders_the_variables() -> None:
    before = stepping()
    s = spec(template="{{rollout}}: {{metric}}={{value}} (max {{threshold}}) at {{step}}")
    after, _ = raise_alerts(s, before, rolled_back(before), CTX, T)
    assert after.alerts[0].text == "gin: error-rate=15.5% (max <= 1.0%) at step 3/7"


def test_unknown_and_unclosed_template_variables_are_named() -> None:
    assert text.template_problems("{{rollout}} {{nope}}") == [
        "spec.notifications.template: unknown variable {{nope}}; known: "
        + ", ".join("{{" + v + "}}" for v in text.VARIABLES)
    ]
    assert text.template_problems("{{rollout") == [
        "spec.notifications.template: an unclosed '{{' (write {{name}})"
    ]
    assert text.template_problems("{{ value }} ok") == []


def test_no_providers_no_alerts_and_no_condition() -> None:
    before = stepping()
    after, events = raise_alerts(
        spec(), before, rolled_back(before), AlertContext("demo", "gin"), T
    )
    assert after.alerts == [] and events == []
    assert all(c.type != "Alerting" for c in after.conditions)


def test_only_the_listed_events_alert() -> None:
    before = stepping()
    s = spec(events=[{"event": "Promoted"}])
    after, _ = raise_alerts(s, before, rolled_back(before), CTX, T)
    assert after.alerts == []


def test_a_rollback_alert_resolves_when_the_rollout_is_healthy_again() -> None:
    before = stepping()
    fired, _ = raise_alerts(spec(), before, rolled_back(before), CTX, T)
    retry = fired.model_copy(update={"phase": "Progressing", "stage": "Stepping"})
    still, _ = raise_alerts(spec(), fired, retry, CTX, T + timedelta(seconds=5))
    assert still.alerts[0].resolved_at is None  # a new rollout is not yet healthy
    healthy = still.model_copy(update={"phase": "Healthy", "stage": "Steady"})
    done, _ = raise_alerts(spec(), still, healthy, CTX, T + timedelta(seconds=9))
    assert done.alerts[0].resolved_at == T + timedelta(seconds=9)


def test_promotion_and_steps_are_over_when_raised() -> None:
    s = spec(events=[{"event": "Promoted"}, {"event": "StepCompleted", "severity": "warning"}])
    before = stepping()
    stepped = before.model_copy(update={"current_step_index": 3})
    after, _ = raise_alerts(s, before, stepped, CTX, T)
    (step,) = after.alerts
    assert (step.key, step.severity, step.resolved_at) == ("StepCompleted/abc123/2", "warning", T)
    promoted = after.model_copy(
        update={
            "phase": "Healthy",
            "stage": "Steady",
            "history": [HistoryEntry(revision="abc123", outcome="Promoted", finished=T)],
        }
    )
    final, _ = raise_alerts(s, after, promoted, CTX, T)
    assert [r.key for r in final.alerts] == ["StepCompleted/abc123/2", "Promoted/abc123"]


def test_a_pause_for_a_person_alerts_once_per_step() -> None:
    before = stepping()
    paused = before.model_copy(update={"phase": "Paused", "pause_reason": "Step"})
    after, _ = raise_alerts(spec(), before, paused, CTX, T)
    assert [r.key for r in after.alerts] == ["Paused/abc123/2"]
    assert "`kanary promote gin -n demo`" in after.alerts[0].text
    user = before.model_copy(update={"phase": "Paused", "pause_reason": "User"})
    by_user, _ = raise_alerts(spec(), before, user, CTX, T)
    assert by_user.alerts == []  # a person paused it: nobody needs telling


def test_delivered_acceptances_are_folded_into_status() -> None:
    before = stepping()
    fired, _ = raise_alerts(spec(), before, rolled_back(before), CTX, T)
    ctx = AlertContext(
        "demo", "gin", ("demo/hook",), frozenset({("RolledBack/abc123", "demo/hook", "firing")})
    )
    after, _ = raise_alerts(spec(), fired, fired, ctx, T)
    assert after.alerts[0].sent == ["demo/hook"]


def test_a_provider_problem_is_a_condition_and_one_event() -> None:
    ctx = AlertContext(
        "demo", "gin", (), problem="AlertProvider demo/hook: Secret demo/x not found"
    )
    before = stepping()
    after, events = raise_alerts(spec(), before, before, ctx, T)
    alerting = next(c for c in after.conditions if c.type == "Alerting")
    assert (alerting.status, alerting.reason) == ("False", "ProviderProblem")
    assert [e.reason for e in events] == ["AlertProviderProblem"]
    again, events = raise_alerts(spec(), after, after, ctx, T)
    assert events == []  # said once
    fixed, events = raise_alerts(spec(), again, again, CTX, T)
    assert next(c for c in fixed.conditions if c.type == "Alerting").status == "True"
    assert [e.reason for e in events] == ["AlertProvidersReady"]


def test_records_are_bounded_resolved_ones_first() -> None:
    firing = AlertRecord(
        key="RolledBack/keep", event="RolledBack", severity="critical", revision="keep", at=T
    )
    resolved = [
        AlertRecord(
            key=f"Promoted/{i}",
            event="Promoted",
            severity="info",
            revision=str(i),
            at=T,
            resolved_at=T,
        )
        for i in range(KEPT)
    ]
    status = stepping(alerts=[firing, *resolved])
    after, _ = raise_alerts(spec(), status, status, CTX, T)
    assert len(after.alerts) == KEPT
    assert after.alerts[0].key == "RolledBack/keep"
