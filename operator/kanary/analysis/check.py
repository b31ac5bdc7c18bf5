"""One analysis check: ask the source about the canary (and stable, to compare), then judge."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from kanary.analysis import builtin, sequential
from kanary.analysis.gateway import gateway_query
from kanary.analysis.judgement import Measured, Traffic, judge
from kanary.analysis.metrics_source import APP, Measurement, window_seconds
from kanary.analysis.source import MetricSource, QueryError, QueryResult
from kanary.analysis.templating import Scope, Track, compares, promql_duration, template_errors
from kanary.observation import AnalysisOutcome, SequentialOutcome
from kanary.spec import AnalysisSpec, Judge, MetricSpec, RolloutSpec
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


def requests_query(measurement: Measurement, scope: Scope) -> str:
    """The PromQL counting scope's requests at the measurement's source."""
    if measurement.source == "gateway" and measurement.implementation is not None:
        return gateway_query(measurement.implementation, "requests", scope, measurement.port)
    return builtin.requests_query(scope)


def metric_query(measurement: Measurement, metric: MetricSpec, scope: Scope) -> str:
    """A custom metric's template rendered, or the built-in of that name at the source."""
    if metric.query is None and measurement.source == "gateway":
        assert measurement.implementation is not None
        return gateway_query(measurement.implementation, metric.name, scope, measurement.port)
    return builtin.metric_query(metric, scope)


def run_check(
    spec: RolloutSpec | AnalysisSpec,
    source: MetricSource,
    namespace: str,
    rollout: str,
    canary_revision: str | None,
    stable_revision: str | None,
    now: datetime,
    measurement: Measurement | str = APP,
    since: datetime | None = None,
) -> AnalysisOutcome:
    """The outcome of one check of the canary over the window ending at ``now``.

    Blocking (it waits on the source): the operator calls it with ``asyncio.to_thread``.
    Revisions scope the queries to the pods of that template; None or "" leaves them unscoped.
    ``measurement``: where the built-ins and the request count are read (metrics_source.choose),
    or why they cannot be; ``since``: when the rollout started (a gateway's window starts no
    earlier). A spec with template errors, or a measurement that is a reason, is judged Error
    without any query being sent.
    """
    analysis = spec.strategy.analysis if isinstance(spec, RolloutSpec) else spec
    if analysis is None:
        raise ValueError(f"rollout {namespace}/{rollout} has no analysis to check")
    problems = template_errors(analysis)
    if isinstance(measurement, str):
        problems.append(measurement)
    if problems or isinstance(measurement, str):
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

    window = window_seconds(measurement, analysis.window_seconds(), now, since)

    def scope(track: Track, revision: str | None) -> Scope:
        return Scope(namespace, rollout, track, revision or None, window)

    canary, stable = scope("canary", canary_revision), scope("stable", stable_revision)
    ask = _Asker(source, now)
    shown = None if window == analysis.window_seconds() else promql_duration(window)
    if analysis.judge == Judge.MANN_WHITNEY:
        from kanary.analysis.judge_mannwhitney import judge_check  # scipy, on first use

        outcome = judge_check(
            analysis,
            source.query_range,
            lambda metric, at: metric_query(measurement, metric, at),
            canary,
            stable,
            ask(requests_query(measurement, canary)),
            now,
            shown or analysis.window,
        )
        return dataclasses.replace(outcome, source=measurement.why)
    comparing = any(compares(m) for m in analysis.metrics)
    traffic = Traffic(
        canary=ask(requests_query(measurement, canary)),
        stable=ask(requests_query(measurement, stable)) if comparing else None,
    )
    measured = [
        Measured(
            metric=m,
            canary=ask(metric_query(measurement, m, canary)),
            stable=ask(metric_query(measurement, m, stable)) if compares(m) else None,
        )
        for m in analysis.metrics
    ]
    outcome = judge(analysis, measured, traffic, now, shown)
    return dataclasses.replace(outcome, source=measurement.why)


def run_sequential(
    spec: RolloutSpec,
    source: MetricSource,
    namespace: str,
    rollout: str,
    canary_revision: str | None,
    measurement: Measurement,
    since: datetime,
    now: datetime,
) -> SequentialOutcome | None:
    """This tick's sequential test of the canary's error rate: one instant query (the counts
    since ``since``, the rollout's start), then sequential.judge. None when Prometheus did not
    answer or there is nothing to test yet: the interval checks report those."""
    analysis = spec.strategy.analysis
    if analysis is None:
        return None
    scope = Scope(namespace, rollout, "canary", canary_revision or None, analysis.window_seconds())
    promql = sequential.counts_query(measurement, scope, since)
    answer = source.query_by(promql, now, sequential.COUNT_LABEL)
    if isinstance(answer, QueryError):
        return None
    counts = sequential.counts_of(answer)
    return None if counts is None else sequential.judge(analysis, counts, now)
