"""One ``judge: mannWhitney`` check: canary and stable samples of each metric, then Kayenta's judge.

For each metric, two range queries over the window ending now, one sample per
``mannWhitney.step`` (canary and stable, the same instants), each sample the metric over a
range of two steps (the built-in's or the custom query's ``{{window}}``). mannwhitney.py
classifies each metric (Pass / High / Low / Nodata / NodataFailMetric / Error) and scores the
run (passed / judged x 100); the check's verdict:

- Pass: score >= ``pass``; Inconclusive (held, counted as such): ``marginal`` <= score < pass;
  Fail: below ``marginal``, or a critical metric not Pass, or half the metrics without data.
- Inconclusive without judging: fewer than ``minRequests`` canary requests in the window.
- Error: a query failed (unreachable, refused, or several series where one was expected).

Every metric's line in status carries both means, the change, the p-value, the interval of
the shift and the sample counts. scipy is imported with mannwhitney.py, on the first check.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kanary.analysis.judgement import format_value
from kanary.analysis.source import QueryError, QueryResult, Samples, Value
from kanary.analysis.templating import Scope
from kanary.observation import AnalysisOutcome
from kanary.spec import AnalysisSpec, MetricSpec
from kanary.status import MetricResult, Verdict

if TYPE_CHECKING:
    from kanary.analysis.mannwhitney import Score

AskRange = Callable[[str, datetime, datetime, float], Samples | QueryError]
QueryOf = Callable[[MetricSpec, Scope], str]

_VERDICT_OF_LABEL: dict[str, Verdict] = {
    "Pass": "Pass",
    "High": "Fail",
    "Low": "Fail",
    "NodataFailMetric": "Fail",
    "Nodata": "Inconclusive",
    "Error": "Error",
}


_VERDICT_OF_RUN: dict[str, Verdict] = {"Pass": "Pass", "Marginal": "Inconclusive", "Fail": "Fail"}


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def judge_check(
    analysis: AnalysisSpec,
    ask_range: AskRange,
    query_of: QueryOf,
    canary: Scope,
    stable: Scope,
    requests: QueryResult,
    now: datetime,
    window: str,
) -> AnalysisOutcome:
    """The outcome of one mannWhitney check (``canary``/``stable``: the tracks' scopes over the
    check's window; ``requests``: the canary's request count in it)."""
    from kanary.analysis import mannwhitney  # scipy: loaded with the first judged check

    mw = analysis.mann_whitney
    n = requests.value if isinstance(requests, Value) else None
    if isinstance(requests, QueryError):
        return _all(analysis, now, "Error", f"request count: {requests.detail}", window)
    if analysis.min_requests > 0 and (n is None or n < analysis.min_requests):
        got = 0 if n is None else round(n)
        why = f"only {got} canary requests in {window} (need {analysis.min_requests})"
        return _all(analysis, now, "Inconclusive", why, window)

    step = mw.step_seconds()
    start = now - timedelta(seconds=canary.window_seconds) + timedelta(seconds=step)
    results = []
    lines: list[MetricResult] = []
    for metric in analysis.metrics:

        def sampled(track: Scope, metric: MetricSpec = metric) -> Samples | QueryError:
            per_sample = dataclasses.replace(track, window_seconds=2 * step)
            return ask_range(query_of(metric, per_sample), start, now, step)

        got_canary, got_stable = sampled(canary), sampled(stable)
        failed = next((g for g in (got_canary, got_stable) if isinstance(g, QueryError)), None)
        if failed is not None:
            return _all(analysis, now, "Error", f"{metric.name}: {failed.detail}", window)
        assert isinstance(got_canary, Samples) and isinstance(got_stable, Samples)
        c = mannwhitney.classify(
            got_canary.values,
            got_stable.values,
            name=metric.name,
            confidence=mw.confidence,
            direction=metric.direction.value,
            allowed_increase=metric.allowed_increase,
            critical_increase=metric.critical_increase,
            critical=metric.critical,
            must_have_data=metric.must_have_data,
        )
        results.append(c)
        lines.append(
            MetricResult(
                name=metric.name,
                verdict=_VERDICT_OF_LABEL[c.classification],
                value=_mean(got_canary.values),
                baseline=_mean(got_stable.values),
                window=window,
                track="canary",
                reason=c.reason,
                classification=c.classification,
                p_value=None if math.isnan(c.p_value) else c.p_value,
                shift=None if math.isnan(c.interval[0]) else list(c.interval),
                canary_samples=c.canary_count,
                stable_samples=c.stable_count,
                requests=n,
            )
        )
    scored = mannwhitney.score(results)
    kayenta = mannwhitney.verdict(scored, mw.pass_score, mw.marginal)
    verdict = _VERDICT_OF_RUN[kayenta]
    return AnalysisOutcome(
        at=now,
        verdict=verdict,
        metrics=tuple(lines),
        summary=_summary(scored, kayenta, mw.pass_score, mw.marginal, lines, window, n),
        score=scored.score,
    )


def _summary(
    scored: Score,
    kayenta: str,
    pass_score: float,
    marginal: float,
    lines: Sequence[MetricResult],
    window: str,
    requests: float | None,
) -> str:
    """ "mannWhitney score 50 < 75 (Fail): latency-p50 High (canary 130ms vs stable 100ms, +30%,
    p=0.0001, 15 vs 15 samples) over 30s, 640 canary requests"."""
    if kayenta == "Pass":
        bar = f">= {pass_score:g}"
    else:
        bar = f"< {pass_score if kayenta == 'Marginal' else marginal:g}"
    head = f"mannWhitney score {scored.score:g} {bar} ({kayenta})"
    if scored.reason:
        head += f": {scored.reason.removeprefix('Canary Failed: ')}"
    shown = [m for m in lines if m.classification != "Pass"] or list(lines)
    parts = [_metric_text(m) for m in shown]
    tail = f" over {window}" + ("" if requests is None else f", {requests:.0f} canary requests")
    return f"{head}: {'; '.join(parts)}{tail}"


def _metric_text(m: MetricResult) -> str:
    if m.value is None or m.baseline is None:
        return f"{m.name} {m.classification} ({m.canary_samples} vs {m.stable_samples} samples)"
    change = "" if m.baseline == 0 else f", {m.value / m.baseline - 1:+.0%}"
    p = "" if m.p_value is None else f", p={m.p_value:.2g}"
    return (
        f"{m.name} {m.classification} (canary {format_value(m.name, m.value)} vs stable "
        f"{format_value(m.name, m.baseline)}{change}{p}, "
        f"{m.canary_samples} vs {m.stable_samples} samples)"
    )


def _all(
    analysis: AnalysisSpec, now: datetime, verdict: Verdict, why: str, window: str
) -> AnalysisOutcome:
    """Every metric with the same verdict and reason (nothing was judged)."""
    return AnalysisOutcome(
        at=now,
        verdict=verdict,
        metrics=tuple(
            MetricResult(name=m.name, verdict=verdict, window=window, track="canary", reason=why)
            for m in analysis.metrics
        ),
        summary=f"mannWhitney not judged: {why}",
    )
