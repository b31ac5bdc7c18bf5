"""What judges a running canary: counted analysis checks, the sequential test, the canary
pods' readiness, and whether a step may end on the analysis."""

from __future__ import annotations

from datetime import timedelta

from kanary.analysis import judgement
from kanary.analysis.templating import promql_duration
from kanary.engine.rollback import _roll_back
from kanary.engine.tick import (
    _Tick,
    takes_traffic,
)
from kanary.spec import AnalysisSpec
from kanary.status import AnalysisStatus, MetricResult, ReadinessStatus, SequentialStatus

# ---- analysis ----------------------------------------------------------------------------------


def _take_analysis(tick: _Tick) -> None:
    """Count a check that finished this tick; its verdict may roll back or pause the rollout."""
    outcome = tick.obs.analysis
    analysis = tick.spec.strategy.analysis
    if outcome is None or analysis is None or tick.status.stage != "Stepping":
        return
    last = tick.status.analysis.last_check_at
    if last is not None and outcome.at <= last:
        return  # already counted (the same check seen again after a restart)
    counts = judgement.next_counters(tick.status.analysis, outcome)
    tick.update(analysis=counts.model_copy(update={"summary": outcome.summary}))
    _judge_analysis(tick, analysis)


def _take_sequential(tick: _Tick) -> None:
    """A conclusive sequential test of the error rate rolls back at once (analysis/sequential.py);
    an inconclusive one changes nothing, so it costs no write."""
    seq = tick.obs.sequential
    analysis = tick.spec.strategy.analysis
    if seq is None or not seq.rejects or analysis is None or tick.status.stage != "Stepping":
        return
    if not takes_traffic(tick.status):
        return
    metric = next(m for m in analysis.metrics if m.name == "error-rate")
    started = tick.status.rollout_started_at
    seconds = max(1, round((seq.at - started).total_seconds())) if started else None
    result = MetricResult(
        name="error-rate",
        verdict="Fail",
        value=seq.errors / seq.requests,
        max=metric.max,
        requests=seq.requests,
        window=None if seconds is None else promql_duration(seconds),  # since the rollout began
        track="canary",
        reason=seq.reason,
    )
    others = [m for m in tick.status.analysis.metrics if m.name != "error-rate"]
    counts = tick.status.analysis.model_copy(
        update={
            "verdict": "Fail",
            "metrics": [result, *others],
            "summary": seq.reason,
            "sequential": SequentialStatus(
                at=seq.at,
                errors=seq.errors,
                requests=seq.requests,
                likelihood_ratio_log=min(seq.llr, 1e9),  # +inf (max 0, an error): JSON has none
                threshold_log=seq.threshold,
            ),
        }
    )
    tick.update(analysis=counts)
    _roll_back(tick, "AnalysisFailed", seq.reason)


def _judge_analysis(tick: _Tick, analysis: AnalysisSpec) -> None:
    counts = tick.status.analysis
    limit = judgement.limit_reached(analysis, counts)
    if limit is None:
        return
    reason = judgement.limit_reason(analysis, counts, counts.summary)
    if limit == "rollback":
        _roll_back(tick, _analysis_cause(analysis, counts), reason)
    elif tick.status.pause_reason != "Inconclusive":
        tick.update(pause_reason="Inconclusive")
        tick.event(
            "AnalysisInconclusive",
            f"{tick.label()}: paused, {reason}; `kanary resume` or `kanary abort`",
            warning=True,
        )


def _analysis_cause(analysis: AnalysisSpec, counts: AnalysisStatus) -> str:
    """The RolledBack condition's reason (and the rollbacks metric's label)."""
    if counts.consecutive_failures >= analysis.failure_limit:
        return "AnalysisFailed"
    if counts.consecutive_errors >= analysis.error_limit:
        return "AnalysisError"
    return "AnalysisInconclusive"


def _analysis_allows_advance(tick: _Tick) -> bool:
    """With traffic on the canary, a step ends only on a passing check whose whole window
    came after the weight in force was written (so not before one window of dwell), and taken
    during the current step."""
    analysis = tick.spec.strategy.analysis
    if analysis is None or not takes_traffic(tick.status):
        return True
    window = timedelta(seconds=analysis.window_seconds())
    starts = [t for t in (tick.status.step_started_at,) if t is not None]
    if tick.status.weight_set_at is not None:
        starts.append(tick.status.weight_set_at + window)
    return judgement.may_advance(tick.status.analysis, max(starts, default=None))


# ---- readiness ---------------------------------------------------------------------------------


def _take_readiness(tick: _Tick) -> None:
    figures = tick.obs.readiness
    if figures.count == 0 and figures.oldest_unready_pod is None:
        return
    tick.update(
        readiness=ReadinessStatus(
            count=figures.count,
            p50_seconds=figures.p50_seconds,
            max_seconds=figures.max_seconds,
            slowest_pod=figures.slowest_pod,
        )
    )


def _readiness_violation(tick: _Tick) -> str | None:
    limit = tick.spec.strategy.readiness.max_pod_ready_seconds
    figures = tick.obs.readiness
    if limit is None:
        return None
    if figures.max_seconds is not None and figures.max_seconds > limit:
        return (
            f"canary pod {figures.slowest_pod} took {figures.max_seconds:.1f}s to become Ready "
            f"(maxPodReadySeconds {limit:g})"
        )
    unready = figures.oldest_unready_seconds
    if unready is not None and unready > limit:
        return (
            f"canary pod {figures.oldest_unready_pod} not Ready after {unready:.1f}s "
            f"(maxPodReadySeconds {limit:g})"
        )
    return None
