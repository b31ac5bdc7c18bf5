"""Sequential judgement of the canary's error rate: roll back as soon as the evidence says so.

A check every ``interval`` waits for ``minRequests`` and then for ``failureLimit`` checks; the
evidence is often conclusive long before (4 errors in the first 10 requests rule out a 1%
rate). So every tick with new data also updates a sequential probability ratio test of the
canary's 5xx count since the rollout started:

- H0: the canary's error rate is ``max`` (the error-rate metric's bound), p0;
- H1: it is ``badRate`` (default: 10 x max, at least max + 1 point, at most 50%), p1;
- the log likelihood ratio of ``errors`` in ``requests`` is
  ``binom.logpmf(errors, requests, p1) - binom.logpmf(errors, requests, p0)`` (computed with
  scipy.special's xlogy / xlog1py; the binomial coefficients cancel);
- it rolls back when that ratio reaches ``1 / (1 - confidence)`` (default confidence 0.98:
  a likelihood ratio of 50). Under H0, or any rate below it, the ratio is a (super)martingale
  that starts at 1, so by Ville's inequality a canary at or below ``max`` is ever rolled back
  by this test, however often it looks, with probability at most ``1 - confidence``.

It only ever fails a canary early. A Pass still needs the interval check's evidence (its
``minRequests`` and window); the test never promotes.

The counts are exact, from one instant query per tick (``counts_query``): the 5xx and all
requests now, minus the same at the rollout's start (``@`` modifier). A series born after the
start (the first 5xx of a backend) counts from 0, which ``increase()`` over a range would
miss. For the app source the series are scoped by revision, so the start's sums are empty;
for a gateway they hold the backend's earlier revisions. Counts that went down (a counter
reset: the gateway restarted) give no verdict that tick.

Pure: no I/O, no clock. scipy.special is imported on the first test, not with the operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from kanary.analysis import builtin, gateway
from kanary.analysis.judgement import format_value
from kanary.analysis.metrics_source import Measurement
from kanary.analysis.templating import Scope
from kanary.observation import SequentialOutcome
from kanary.spec import AnalysisSpec, MetricSpec

COUNT_LABEL = "kanary_count"  # the label telling the two series of counts_query apart


@dataclass(frozen=True)
class Counts:
    errors: float
    requests: float


def error_rate_metric(analysis: AnalysisSpec) -> MetricSpec | None:
    """The built-in error-rate with a ``max``, the metric the test is about, if any."""
    for metric in analysis.metrics:
        if metric.name == "error-rate" and metric.query is None and metric.max is not None:
            return metric
    return None


def applies(analysis: AnalysisSpec) -> bool:
    return analysis.sequential.enabled and error_rate_metric(analysis) is not None


def bad_rate(analysis: AnalysisSpec, max_rate: float) -> float:
    """H1's rate: the spec's badRate, else 10 x max, at least max + 1 point, at most 50%."""
    chosen = analysis.sequential.bad_rate
    if chosen is not None:
        return chosen
    return min(0.5, max(10 * max_rate, max_rate + 0.01))


def judge(analysis: AnalysisSpec, counts: Counts, at: datetime) -> SequentialOutcome | None:
    """The test on these counts; None when they cannot be tested (none, or counts that went
    down because a counter was reset)."""
    metric = error_rate_metric(analysis)
    if metric is None or metric.max is None:
        return None
    requests, errors = round(counts.requests), round(counts.errors)
    if requests <= 0 or errors < 0:
        return None
    errors = min(errors, requests)
    p0 = metric.max
    p1 = bad_rate(analysis, p0)
    if p1 <= p0:  # the spec's badRate must be above max: nothing to tell apart
        return None
    confidence = analysis.sequential.confidence
    llr = log_likelihood_ratio(errors, requests, p0, p1)
    threshold = math.log(1 / (1 - confidence))

    def pct(rate: float) -> str:
        return format_value("error-rate", rate)

    reason = (
        f"error-rate {errors} errors in {requests} canary requests ({pct(errors / requests)}): "
        f"{_times(llr)} as likely at {pct(p1)} as at the max {pct(p0)} "
        f"(sequential test, confidence {confidence:g}: rolls back at {_times(threshold)})"
    )
    return SequentialOutcome(at, errors, requests, llr, threshold, llr >= threshold, reason)


def _times(llr: float) -> str:
    return "infinitely" if llr == math.inf else f"{math.exp(min(llr, 700)):.3g}x"


def log_likelihood_ratio(errors: int, requests: int, p0: float, p1: float) -> float:
    """ln P(errors | requests, p1) / P(errors | requests, p0); +inf when p0 = 0 and errors > 0.

    The binomial log-pmf as scipy.stats.binom.logpmf builds it, from scipy.special's xlogy and
    xlog1py (0 log 0 = 0, log1p accurate near 0), without its binomial coefficient, which
    cancels. scipy.special costs the operator about 25 MiB when first used; scipy.stats (the
    judge only) about 50 MiB more. tests/unit/test_sequential.py checks it against binom.logpmf.
    """
    from scipy import special  # type: ignore[import-untyped]

    def log_pmf(p: float) -> float:
        return float(special.xlogy(errors, p) + special.xlog1py(requests - errors, -p))

    low = log_pmf(p0)
    if low == -math.inf:
        return math.inf
    return log_pmf(p1) - low


def _since(selector: str, at: datetime) -> str:
    """The selector's sum now minus its sum at ``at`` (no series then: 0)."""
    return f"(sum({selector}) - (sum({selector} @ {at.timestamp():.3f}) or vector(0)))"


def counts_query(measurement: Measurement, scope: Scope, since: datetime) -> str:
    """One instant query giving two series, {kanary_count="errors"} (absent: no 5xx yet) and
    {kanary_count="requests"}: scope's requests since ``since`` at the measurement's source."""
    if measurement.source == "gateway" and measurement.implementation is not None:
        errors, every = gateway.selectors(
            measurement.implementation, "error-rate", scope, measurement.port
        )
        error_sel, all_sel = errors.promql(), every.promql()
    else:
        five_xx = 'code=~"5.."'
        error_sel = f"http_requests_total{{{builtin.selector(scope, five_xx)}}}"
        all_sel = f"http_requests_total{{{builtin.selector(scope)}}}"

    def named(expr: str, name: str) -> str:
        return f'label_replace({expr}, "{COUNT_LABEL}", "{name}", "", "")'

    return (
        f"{named(_since(error_sel, since), 'errors')} or "
        f"{named(_since(all_sel, since), 'requests')}"
    )


def counts_of(series: dict[str, float]) -> Counts | None:
    """Counts from counts_query's answer ({kanary_count value: number}); None without the
    request count (nothing answered yet)."""
    if "requests" not in series:
        return None
    return Counts(errors=series.get("errors", 0.0), requests=series["requests"])
