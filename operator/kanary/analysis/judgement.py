"""The judgement: answers against bounds, one verdict per check, and the limits. Pure: no I/O.

Per metric, in this order (the first that applies decides):

1. Error: the canary's query failed, or gave several series, or (when ``minRequests`` > 0) the
   canary's request count could not be read.
2. Inconclusive: fewer than ``minRequests`` canary requests in the window, whatever the value.
   Requests are counted at the Rollout's metrics source (metrics_source.py: the service's
   ``http_requests_total`` or the gateway's per-backend counter), for custom
   metrics too; a service without that counter needs ``minRequests: 0``.
3. Inconclusive: no data, or NaN, for the canary.
4. The bounds, each checked on its own; the metric takes the worst: Fail > Error >
   Inconclusive > Pass.
   - ``min``/``max``: inclusive (``value <= max`` passes).
   - ``maxIncrease``: canary - stable, in the metric's own unit (error-rate: 0.01 is one
     percentage point). ``maxRatio``: canary / stable; a stable value of 0 makes any canary
     value above 0 fail the ratio (prefer maxIncrease for rates, which are often 0).
   - The stable track is the baseline only with a value and at least ``minRequests``
     requests in the same window; otherwise the comparison is Inconclusive (no data, NaN,
     too little traffic) or Error (its query failed).
   - +/-Inf fails a bound it is beyond (a p99 past the last histogram bucket is +Inf) and is
     Inconclusive where it would pass: a value that is not a measurement never passes.

The check's verdict over all metrics: Fail if any metric failed, else Error if any errored,
else Inconclusive if any was, else Pass. A measured failure is never hidden by another
metric's missing answer, and nothing short of every metric passing is a Pass.

Counters (``next_counters``), applied by the step engine from status.analysis: a streak ends
only on evidence against it, so neither a missing answer nor thin traffic can hide failures.

- Pass resets every counter.
- Fail adds a failure; resets inconclusive and errors (Prometheus answered, with data).
- Inconclusive adds an inconclusive; resets errors; keeps failures (a failure streak ends
  only with a Pass).
- Error adds an error and keeps the other two (nothing was learnt).

Limits (``limit_reached``): ``failureLimit`` failures -> rollback; ``errorLimit`` errors ->
rollback; ``inconclusiveLimit`` inconclusive -> ``onInconclusive`` (pause or rollback).
Rollback wins over pause. Below the limits, a step advances only once its pause has elapsed
and the latest check passed (``may_advance``): an Error or Inconclusive check holds the
rollout where it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kanary.analysis.builtin import UNITS
from kanary.analysis.source import ManySeries, NoData, NotFinite, QueryError, QueryResult, Value
from kanary.observation import AnalysisOutcome
from kanary.spec import AnalysisSpec, MetricSpec, OnInconclusive
from kanary.status import AnalysisStatus, MetricResult, Verdict

Limit = Literal["rollback", "pause"]

_SEVERITY: dict[Verdict, int] = {"Pass": 0, "Inconclusive": 1, "Error": 2, "Fail": 3}


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """Fail > Error > Inconclusive > Pass; no verdicts at all is an Error, never a Pass."""
    return max(verdicts, key=_SEVERITY.__getitem__, default="Error")


@dataclass(frozen=True)
class Measured:
    """The answers about one metric in one check."""

    metric: MetricSpec
    canary: QueryResult
    stable: QueryResult | None = None  # asked only when the metric compares with stable


@dataclass(frozen=True)
class Traffic:
    """Requests each track answered in the window (``requests_query``)."""

    canary: QueryResult
    stable: QueryResult | None = None


@dataclass(frozen=True)
class Judged:
    result: MetricResult
    detail: str  # the reason without the window / request-count suffix
    cause: str  # the detail without the metric's name, when it is about one metric

    @property
    def name(self) -> str:
        return self.result.name


# --- formatting: what on-call reads ----------------------------------------------------------


def format_value(metric: str, value: float) -> str:
    """error-rate as percent ("12.4%"), latency-p99 in ms ("87ms"), others plainly."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    unit = UNITS.get(metric)
    if unit == "ratio":
        pct = value * 100
        if pct == 0:
            return "0%"
        if abs(pct) >= 100:
            return f"{pct:.0f}%"
        return f"{pct:.1f}%" if abs(pct) >= 1 else f"{pct:.2g}%"
    if unit == "seconds":
        ms = value * 1000
        if abs(ms) >= 1000:
            return f"{value:.2f}s"
        return f"{ms:.0f}ms" if abs(ms) >= 10 else f"{ms:.2g}ms"
    return f"{value:.4g}"


def format_increase(metric: str, delta: float) -> str:
    """A difference in the metric's unit: "+2.9 points", "+150ms", "+0.5"."""
    if math.isinf(delta):
        return "+Inf" if delta > 0 else "-Inf"
    unit = UNITS.get(metric)
    if unit == "ratio":
        return f"{delta * 100:+.1f} points"
    if unit == "seconds":
        return f"{delta * 1000:+.0f}ms"
    return f"{delta:+.4g}"


def _count_text(n: float) -> str:
    return f"{n:.0f}"  # increase() extrapolates: 639.7 requests is 640


def _problem(result: QueryResult) -> str | None:
    """Why an answer cannot be used as a number, or None when it is a Value."""
    match result:
        case QueryError(kind=kind, detail=detail):
            return {
                "unreachable": f"Prometheus unreachable: {detail}",
                "http": f"Prometheus error: {detail}",
                "bad-query": f"query refused: {detail}",
            }[kind]
        case ManySeries(count=count, example=example):
            return f"query gave {count} series where one was expected (aggregate it): {example}"
        case NoData():
            return "no data"
        case NotFinite(value=value):
            return f"value is {format_value('', value)}"
        case Value():
            return None


def _request_count(result: QueryResult | None) -> tuple[float | None, str | None]:
    """(requests, None), or (None, why not). No series at all means no requests."""
    match result:
        case Value(value=value):
            return max(value, 0.0), None
        case NoData():
            return 0.0, None
        case None:
            return None, "not asked"
        case _:
            return None, _problem(result)


# --- one metric --------------------------------------------------------------------------------


def _bound_checks(metric: MetricSpec, value: float) -> list[tuple[Verdict, str]]:
    name, out = metric.name, list[tuple[Verdict, str]]()
    shown = format_value(name, value)
    if metric.max is not None:
        limit = format_value(name, metric.max)
        out.append(
            ("Fail", f"{name} {shown} > {limit}")
            if value > metric.max
            else ("Pass", f"{name} {shown} <= {limit}")
        )
    if metric.min is not None:
        limit = format_value(name, metric.min)
        out.append(
            ("Fail", f"{name} {shown} < {limit}")
            if value < metric.min
            else ("Pass", f"{name} {shown} >= {limit}")
        )
    return out


def _baseline(
    stable: QueryResult | None, stable_requests: QueryResult | None, min_requests: int, window: str
) -> tuple[float | None, Verdict, str]:
    """(stable value, "Pass", "") when it can serve as the baseline, else why not."""
    if stable is None:
        return None, "Error", "stable track not queried"
    n, count_problem = _request_count(stable_requests)
    if isinstance(stable, QueryError | ManySeries):
        return None, "Error", f"stable track: {_problem(stable)}"
    if min_requests > 0:
        if n is None:
            return None, "Error", f"stable track request count: {count_problem}"
        if n < min_requests:
            return (
                None,
                "Inconclusive",
                (
                    f"stable track had only {_count_text(n)} requests in {window} "
                    f"(need {min_requests} to compare)"
                ),
            )
    if not isinstance(stable, Value):
        why = f"stable track: {_problem(stable)} over {window}: cannot compare"
        return None, "Inconclusive", why
    return stable.value, "Pass", ""


def _comparison_checks(metric: MetricSpec, value: float, base: float) -> list[tuple[Verdict, str]]:
    name, out = metric.name, list[tuple[Verdict, str]]()
    shown, stable = format_value(name, value), format_value(name, base)
    if metric.max_increase is not None:
        delta = value - base
        text = (
            f"{name} {shown} vs stable {stable}: {format_increase(name, delta)} "
            f"(max {format_increase(name, metric.max_increase)})"
        )
        out.append(("Fail" if delta > metric.max_increase else "Pass", text))
    if metric.max_ratio is not None:
        if base > 0:
            ratio = value / base
            text = f"{name} {shown} vs stable {stable}: {ratio:.2f}x (max {metric.max_ratio:g}x)"
            out.append(("Fail" if ratio > metric.max_ratio else "Pass", text))
        elif base == 0:
            ratio_text = "unbounded ratio" if value > 0 else "no ratio"
            text = f"{name} {shown} vs stable {stable}: {ratio_text} (max {metric.max_ratio:g}x)"
            out.append(("Fail" if value > 0 else "Pass", text))
        else:
            out.append(("Inconclusive", f"{name}: no ratio to a negative stable value {stable}"))
    return out


def judge_metric(
    metric: MetricSpec,
    canary: QueryResult,
    requests: QueryResult,
    *,
    min_requests: int,
    window: str,
    stable: QueryResult | None = None,
    stable_requests: QueryResult | None = None,
) -> Judged:
    """One metric's verdict and reason (order and semantics: this module's docstring)."""
    n, count_problem = _request_count(requests)
    value = canary.value if isinstance(canary, Value | NotFinite) else None
    baseline: float | None = None

    def done(verdict: Verdict, detail: str, *, suffix: bool = False) -> Judged:
        tail = f" over {window}" + (f", {_count_text(n)} canary requests" if n is not None else "")
        return Judged(
            MetricResult(
                name=metric.name,
                verdict=verdict,
                value=value if value is not None and math.isfinite(value) else None,
                baseline=baseline,
                min=metric.min,
                max=metric.max,
                max_increase=metric.max_increase,
                max_ratio=metric.max_ratio,
                requests=n,
                window=window,
                track="canary",
                reason=detail + (tail if suffix else ""),
            ),
            detail,
            detail.removeprefix(f"{metric.name}: "),
        )

    if isinstance(canary, QueryError | ManySeries):
        return done("Error", f"{metric.name}: {_problem(canary)}")
    if min_requests > 0:
        if n is None:
            return done("Error", f"canary request count: {count_problem}")
        if n < min_requests:
            return done(
                "Inconclusive",
                f"only {_count_text(n)} canary requests in {window} (need {min_requests})",
            )
    if value is None or math.isnan(value):
        why = f"{metric.name}: {_problem(canary)} for the canary over {window}"
        return done("Inconclusive", why)

    checks = _bound_checks(metric, value)
    if metric.max_increase is not None or metric.max_ratio is not None:
        baseline, usable, why = _baseline(stable, stable_requests, min_requests, window)
        if baseline is None:
            checks.append((usable, f"{metric.name}: {why}"))
        else:
            checks.extend(_comparison_checks(metric, value, baseline))
    if not math.isfinite(value):
        # beyond every bound it fails; where it would pass it is no measurement
        checks = [(v if v != "Pass" else "Inconclusive", t) for v, t in checks]
    verdict = worst([v for v, _ in checks])
    detail = ", ".join(t for v, t in checks if v == verdict)
    return done(verdict, detail, suffix=verdict in ("Pass", "Fail"))


# --- one check -----------------------------------------------------------------------------


def judge(
    spec: AnalysisSpec,
    measured: Sequence[Measured],
    traffic: Traffic,
    at: datetime,
    window: str | None = None,
) -> AnalysisOutcome:
    """The outcome of one check: each metric judged, the worst verdict, and the summary line.

    ``window``: the range the queries read, when shorter than the spec's (a gateway's window
    starts no earlier than the rollout)."""
    shown = window or spec.window
    judged = [
        judge_metric(
            m.metric,
            m.canary,
            traffic.canary,
            min_requests=spec.min_requests,
            window=shown,
            stable=m.stable,
            stable_requests=traffic.stable,
        )
        for m in measured
    ]
    verdict = worst([j.result.verdict for j in judged])
    return AnalysisOutcome(
        at=at,
        verdict=verdict,
        metrics=tuple(j.result for j in judged),
        summary=summary(verdict, judged, shown, traffic.canary),
    )


def summary(verdict: Verdict, judged: Sequence[Judged], window: str, requests: QueryResult) -> str:
    """The line on-call reads first, about the metrics that decided the verdict.

    "error-rate 12.4% > 1.0% over 30s, 640 canary requests"
    """
    if not judged:
        return "no metrics to judge"
    deciding = [j for j in judged if j.result.verdict == verdict]
    if verdict in ("Pass", "Fail"):
        n, _ = _request_count(requests)
        tail = f" over {window}" + (f", {_count_text(n)} canary requests" if n is not None else "")
        return ", ".join(j.detail for j in deciding) + tail
    # the same cause (Prometheus down, thin traffic) is said once, for the metrics it hit
    names: dict[str, list[str]] = {}
    for j in deciding:
        names.setdefault(j.cause, []).append(j.name)
    label = "inconclusive" if verdict == "Inconclusive" else "analysis error"
    parts = [
        cause if len(who) == len(judged) else f"{', '.join(who)}: {cause}"
        for cause, who in names.items()
    ]
    return f"{label}: " + "; ".join(parts)


# --- counters and limits (applied by the step engine) --------------------------------------


def next_counters(prev: AnalysisStatus, outcome: AnalysisOutcome) -> AnalysisStatus:
    """status.analysis after one more check (semantics: this module's docstring)."""
    failures = prev.consecutive_failures
    inconclusive = prev.consecutive_inconclusive
    errors = prev.consecutive_errors
    match outcome.verdict:
        case "Pass":
            failures = inconclusive = errors = 0
        case "Fail":
            failures, inconclusive, errors = failures + 1, 0, 0
        case "Inconclusive":
            inconclusive, errors = inconclusive + 1, 0
        case "Error":
            errors += 1
    return AnalysisStatus(
        last_check_at=outcome.at,
        verdict=outcome.verdict,
        consecutive_failures=failures,
        consecutive_inconclusive=inconclusive,
        consecutive_errors=errors,
        metrics=list(outcome.metrics),
        summary=outcome.summary,
        source=outcome.source,
        score=outcome.score,
    )


def limit_reached(spec: AnalysisSpec, counters: AnalysisStatus) -> Limit | None:
    """What the counters demand: "rollback", "pause", or None (go on checking)."""
    if counters.consecutive_failures >= spec.failure_limit:
        return "rollback"
    if counters.consecutive_errors >= spec.error_limit:
        return "rollback"
    if counters.consecutive_inconclusive >= spec.inconclusive_limit:
        return "pause" if spec.on_inconclusive == OnInconclusive.PAUSE else "rollback"
    return None


def limit_reason(spec: AnalysisSpec, counters: AnalysisStatus, summary: str = "") -> str:
    """The message for the rollback or pause: which limit, then the latest check's line."""
    if counters.consecutive_failures >= spec.failure_limit:
        head = (
            f"{counters.consecutive_failures} consecutive failed checks "
            f"(failureLimit {spec.failure_limit})"
        )
    elif counters.consecutive_errors >= spec.error_limit:
        head = (
            f"{counters.consecutive_errors} consecutive checks without an answer from "
            f"Prometheus (errorLimit {spec.error_limit})"
        )
    elif counters.consecutive_inconclusive >= spec.inconclusive_limit:
        head = (
            f"{counters.consecutive_inconclusive} consecutive inconclusive checks "
            f"(inconclusiveLimit {spec.inconclusive_limit}, onInconclusive "
            f"{spec.on_inconclusive.value})"
        )
    else:
        return ""
    return f"{summary}: {head}" if summary else head


def may_advance(counters: AnalysisStatus, since: datetime | None = None) -> bool:
    """True when the latest check passed (and, with ``since``, was made at or after it).

    The engine passes the step's start so a check from before the weight change cannot
    advance the step; anything but a Pass holds the rollout where it is.
    """
    if counters.verdict != "Pass" or counters.last_check_at is None:
        return False
    return since is None or counters.last_check_at >= since
