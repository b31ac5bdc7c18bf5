"""One analysis check: ask the source about the canary (and stable, to compare), then judge."""

from __future__ import annotations

from datetime import datetime

from kanary.analysis.builtin import metric_query, requests_query
from kanary.analysis.judgement import Measured, Traffic, judge
from kanary.analysis.source import MetricSource, QueryError, QueryResult
from kanary.analysis.templating import Scope, Track, compares, template_errors
from kanary.observation import AnalysisOutcome
from kanary.spec import AnalysisSpec, RolloutSpec
from kanary.status import MetricResult


class _Asker:
    """Sends queries, all evaluated at the same instant so both tracks share one window.

    Once Prometheus is unreachable the rest of the check gets the same answer without being
    sent: a check costs at most one timeout, not one per query.
    """

    def __init__(self, source: MetricSource, at: datetime) -> None:
        self.source, self.at = source, at
        self.down: QueryError | None = None

    def __call__(self, promql: str) -> QueryResult:
        if self.down is not None:
            return self.down
        result = self.source.query(promql, self.at)
        if isinstance(result, QueryError) and result.kind == "unreachable":
            self.down = result
        return result


def run_check(
    spec: RolloutSpec | AnalysisSpec,
    source: MetricSource,
    namespace: str,
    rollout: str,
    canary_revision: str | None,
    stable_revision: str | None,
    now: datetime,
) -> AnalysisOutcome:
    """The outcome of one check of the canary over the window ending at ``now``.

    Blocking (it waits on the source): the operator calls it with ``asyncio.to_thread``.
    Revisions scope the queries to the pods of that template; None or "" leaves them unscoped.
    A spec with template errors is judged Error without any query being sent.
    """
    analysis = spec.strategy.analysis if isinstance(spec, RolloutSpec) else spec
    if analysis is None:
        raise ValueError(f"rollout {namespace}/{rollout} has no analysis to check")
    problems = template_errors(analysis)
    if problems:
        return AnalysisOutcome(
            at=now,
            verdict="Error",
            metrics=tuple(
                MetricResult(
                    name=m.name,
                    verdict="Error",
                    window=analysis.window,
                    track="canary",
                    reason="; ".join(problems),
                )
                for m in analysis.metrics
            ),
            summary="analysis error: " + "; ".join(problems),
        )

    def scope(track: Track, revision: str | None) -> Scope:
        return Scope(namespace, rollout, track, revision or None, analysis.window_seconds())

    canary, stable = scope("canary", canary_revision), scope("stable", stable_revision)
    ask = _Asker(source, now)
    comparing = any(compares(m) for m in analysis.metrics)
    traffic = Traffic(
        canary=ask(requests_query(canary)),
        stable=ask(requests_query(stable)) if comparing else None,
    )
    measured = [
        Measured(
            metric=m,
            canary=ask(metric_query(m, canary)),
            stable=ask(metric_query(m, stable)) if compares(m) else None,
        )
        for m in analysis.metrics
    ]
    return judge(analysis, measured, traffic, now)
