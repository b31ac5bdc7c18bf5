"""The judgement table: one metric, the check's verdict, the summary, counters and limits."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanary.analysis.judgement import (
    Judged,
    Measured,
    Traffic,
    format_value,
    judge,
    judge_metric,
    limit_reached,
    limit_reason,
    may_advance,
    next_counters,
)
from kanary.analysis.source import ManySeries, NoData, NotFinite, QueryError, QueryResult, Value
from kanary.observation import AnalysisOutcome
from kanary.spec import AnalysisSpec, MetricSpec
from kanary.status import AnalysisStatus, Verdict

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
ENOUGH = Value(640)
DOWN = QueryError("unreachable", "cannot reach http://127.0.0.1:9090: Connection refused")


def metric(name: str = "error-rate", **bounds: float) -> MetricSpec:
    return MetricSpec.model_validate(
        {"name": name, **({"query": "sum(x)"} if "-" not in name else {}), **bounds}
    )


def one(
    m: MetricSpec,
    canary: QueryResult,
    requests: QueryResult = ENOUGH,
    stable: QueryResult | None = None,
    stable_requests: QueryResult | None = None,
    min_requests: int = 50,
) -> Judged:
    return judge_metric(
        m,
        canary,
        requests,
        min_requests=min_requests,
        window="30s",
        stable=stable,
        stable_requests=stable_requests,
    )


# --- one metric against absolute bounds -------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "canary", "requests", "verdict", "reason"),
    [
        pytest.param(
            metric(max=0.01),
            Value(0.0021),
            Value(812),
            "Pass",
            "error-rate 0.21% <= 1.0% over 30s, 812 canary requests",
            id="pass",
        ),
        pytest.param(
            metric(max=0.01),
            Value(0.124),
            Value(639.7),
            "Fail",
            "error-rate 12.4% > 1.0% over 30s, 640 canary requests",
            id="fail",
        ),
        pytest.param(
            metric(max=0.01),
            Value(0.01),
            Value(640),
            "Pass",
            "error-rate 1.0% <= 1.0% over 30s, 640 canary requests",
            id="bound-inclusive",
        ),
        pytest.param(
            metric("latency-p99", max=0.3),
            Value(0.45),
            Value(640),
            "Fail",
            "latency-p99 450ms > 300ms over 30s, 640 canary requests",
            id="latency-ms",
        ),
        pytest.param(
            metric("latency-p99", max=0.3),
            Value(0.087),
            Value(640),
            "Pass",
            "latency-p99 87ms <= 300ms over 30s, 640 canary requests",
            id="latency-pass",
        ),
        pytest.param(
            metric("orders", min=5),
            Value(3),
            Value(640),
            "Fail",
            "orders 3 < 5 over 30s, 640 canary requests",
            id="below-min",
        ),
        pytest.param(
            metric("orders", min=5, max=9),
            Value(7),
            Value(640),
            "Pass",
            "orders 7 <= 9, orders 7 >= 5 over 30s, 640 canary requests",
            id="min-and-max",
        ),
        pytest.param(
            metric(max=0.01),
            NoData(),
            Value(640),
            "Inconclusive",
            "error-rate: no data for the canary over 30s",
            id="no-data",
        ),
        pytest.param(
            metric(max=0.01),
            NotFinite(math.nan),
            Value(640),
            "Inconclusive",
            "error-rate: value is NaN for the canary over 30s",
            id="nan",
        ),
        pytest.param(
            metric("latency-p99", max=0.3),
            NotFinite(math.inf),
            Value(640),
            "Fail",
            "latency-p99 +Inf > 300ms over 30s, 640 canary requests",
            id="inf-beyond-max",
        ),
        pytest.param(
            metric("orders", min=1),
            NotFinite(math.inf),
            Value(640),
            "Inconclusive",
            "orders +Inf >= 1",
            id="inf-never-passes",
        ),
        pytest.param(
            metric(max=0.01),
            Value(0.5),
            Value(12),
            "Inconclusive",
            "only 12 canary requests in 30s (need 50)",
            id="too-few-requests-even-if-bad",
        ),
        pytest.param(
            metric(max=0.01),
            Value(0.0),
            Value(49.6),
            "Inconclusive",
            "only 50 canary requests in 30s (need 50)",
            id="too-few-requests-rounded-shown",
        ),
        pytest.param(
            metric(max=0.01),
            NotFinite(math.nan),
            NoData(),
            "Inconclusive",
            "only 0 canary requests in 30s (need 50)",
            id="no-traffic",
        ),
        pytest.param(
            metric(max=0.01),
            ManySeries(3, '{pod="a"}'),
            Value(640),
            "Error",
            'error-rate: query gave 3 series where one was expected (aggregate it): {pod="a"}',
            id="several-series",
        ),
        pytest.param(
            metric(max=0.01),
            DOWN,
            Value(640),
            "Error",
            "error-rate: Prometheus unreachable: cannot reach",
            id="unreachable",
        ),
        pytest.param(
            metric(max=0.01),
            QueryError("bad-query", "HTTP 400: bad_data: parse error"),
            Value(640),
            "Error",
            "error-rate: query refused: HTTP 400: bad_data",
            id="bad-query",
        ),
        pytest.param(
            metric(max=0.01),
            QueryError("http", "HTTP 503: unavailable"),
            Value(640),
            "Error",
            "error-rate: Prometheus error: HTTP 503",
            id="http-error",
        ),
        pytest.param(
            metric(max=0.01),
            Value(0.0),
            DOWN,
            "Error",
            "canary request count: Prometheus unreachable",
            id="request-count-error",
        ),
        pytest.param(
            metric(max=0.01),
            Value(0.0),
            ManySeries(2),
            "Error",
            "canary request count: query gave 2 series",
            id="request-count-several",
        ),
    ],
)
def test_one_metric(
    m: MetricSpec, canary: QueryResult, requests: QueryResult, verdict: Verdict, reason: str
) -> None:
    got = one(m, canary, requests).result
    assert got.verdict == verdict
    assert got.reason.startswith(reason), got.reason
    assert got.track == "canary"
    assert got.window == "30s"


def test_result_carries_value_bounds_and_requests() -> None:
    m = metric(max=0.01, maxIncrease=0.005)
    got = one(m, Value(0.02), Value(640), stable=Value(0.001), stable_requests=Value(900)).result
    assert (got.value, got.baseline, got.max, got.max_increase, got.requests) == (
        0.02,
        0.001,
        0.01,
        0.005,
        640,
    )


def test_non_finite_values_are_not_put_in_status() -> None:
    assert one(metric(max=0.01), NotFinite(math.nan)).result.value is None
    assert one(metric("latency-p99", max=0.3), NotFinite(math.inf)).result.value is None


def test_min_requests_zero_judges_without_traffic_gate() -> None:
    got = one(metric(max=0.01), Value(0.0), NoData(), min_requests=0).result
    assert got.verdict == "Pass"
    assert got.requests == 0
    # nor does a broken request count matter then
    got = one(metric(max=0.01), Value(0.0), DOWN, min_requests=0).result
    assert (got.verdict, got.requests) == ("Pass", None)
    assert got.reason == "error-rate 0% <= 1.0% over 30s"


# --- comparison with the stable track ------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "canary", "stable", "stable_requests", "verdict", "reason"),
    [
        pytest.param(
            metric(maxIncrease=0.02),
            Value(0.10),
            Value(0.09),
            Value(900),
            "Pass",
            "error-rate 10.0% vs stable 9.0%: +1.0 points (max +2.0 points) over 30s",
            id="noisy-baseline-passes",
        ),
        pytest.param(
            metric(maxIncrease=0.02),
            Value(0.15),
            Value(0.09),
            Value(900),
            "Fail",
            "error-rate 15.0% vs stable 9.0%: +6.0 points (max +2.0 points) over 30s",
            id="increase-fails",
        ),
        pytest.param(
            metric("latency-p99", maxRatio=1.5),
            Value(0.45),
            Value(0.15),
            Value(900),
            "Fail",
            "latency-p99 450ms vs stable 150ms: 3.00x (max 1.5x)",
            id="ratio-fails",
        ),
        pytest.param(
            metric("latency-p99", maxRatio=1.5),
            Value(0.16),
            Value(0.15),
            Value(900),
            "Pass",
            "latency-p99 160ms vs stable 150ms: 1.07x (max 1.5x)",
            id="ratio-passes",
        ),
        pytest.param(
            metric(maxRatio=2),
            Value(0.0),
            Value(0.0),
            Value(900),
            "Pass",
            "error-rate 0% vs stable 0%: no ratio (max 2x)",
            id="ratio-zero-over-zero",
        ),
        pytest.param(
            metric(maxRatio=2),
            Value(0.001),
            Value(0.0),
            Value(900),
            "Fail",
            "error-rate 0.1% vs stable 0%: unbounded ratio (max 2x)",
            id="ratio-over-zero-stable",
        ),
        pytest.param(
            metric(maxIncrease=0.02),
            Value(0.01),
            NoData(),
            NoData(),
            "Inconclusive",
            "error-rate: stable track had only 0 requests in 30s (need 50 to compare)",
            id="stable-no-traffic",
        ),
        pytest.param(
            metric(maxIncrease=0.02),
            Value(0.01),
            NotFinite(math.nan),
            Value(900),
            "Inconclusive",
            "error-rate: stable track: value is NaN over 30s: cannot compare",
            id="stable-nan",
        ),
        pytest.param(
            metric(maxIncrease=0.02),
            Value(0.01),
            Value(0.0),
            Value(10),
            "Inconclusive",
            "error-rate: stable track had only 10 requests",
            id="stable-too-few",
        ),
        pytest.param(
            metric(maxIncrease=0.02),
            Value(0.01),
            DOWN,
            Value(900),
            "Error",
            "error-rate: stable track: Prometheus unreachable",
            id="stable-error",
        ),
        pytest.param(
            metric(max=0.05, maxIncrease=0.02),
            Value(0.2),
            DOWN,
            Value(900),
            "Fail",
            "error-rate 20.0% > 5.0% over 30s",
            id="absolute-fail-beats-stable-error",
        ),
        pytest.param(
            metric(max=0.05, maxIncrease=0.02),
            Value(0.01),
            NoData(),
            Value(900),
            "Inconclusive",
            "error-rate: stable track: no data",
            id="abs-pass-needs-comparison",
        ),
    ],
)
def test_comparison_with_stable(
    m: MetricSpec,
    canary: QueryResult,
    stable: QueryResult,
    stable_requests: QueryResult,
    verdict: Verdict,
    reason: str,
) -> None:
    got = one(m, canary, Value(640), stable=stable, stable_requests=stable_requests).result
    assert got.verdict == verdict
    assert got.reason.startswith(reason), got.reason


# --- the check: verdict over metrics and the summary line ----------------------------------------


def spec(**kw: Any) -> AnalysisSpec:
    base: dict[str, Any] = {
        "prometheus": {"url": "http://127.0.0.1:9090"},
        "window": "30s",
        "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 0.3}],
    }
    return AnalysisSpec.model_validate(base | kw)


def check(err: QueryResult, lat: QueryResult, requests: QueryResult = ENOUGH) -> AnalysisOutcome:
    s = spec()
    measured = [Measured(s.metrics[0], err), Measured(s.metrics[1], lat)]
    return judge(s, measured, Traffic(requests), T0)


@pytest.mark.parametrize(
    ("err", "lat", "requests", "verdict", "summary"),
    [
        pytest.param(
            Value(0.0021),
            Value(0.087),
            Value(812),
            "Pass",
            "error-rate 0.21% <= 1.0%, latency-p99 87ms <= 300ms over 30s, 812 canary requests",
            id="all-pass",
        ),
        pytest.param(
            Value(0.124),
            Value(0.087),
            Value(640),
            "Fail",
            "error-rate 12.4% > 1.0% over 30s, 640 canary requests",
            id="one-fails",
        ),
        pytest.param(
            Value(0.124),
            Value(0.45),
            Value(640),
            "Fail",
            "error-rate 12.4% > 1.0%, latency-p99 450ms > 300ms over 30s, 640 canary requests",
            id="both-fail",
        ),
        pytest.param(
            Value(0.124),
            DOWN,
            Value(640),
            "Fail",
            "error-rate 12.4% > 1.0% over 30s, 640 canary requests",
            id="fail-beats-error",
        ),
        pytest.param(
            Value(0.0),
            Value(0.1),
            DOWN,
            "Error",
            "analysis error: canary request count: Prometheus unreachable: cannot reach "
            "http://127.0.0.1:9090: Connection refused",
            id="request-count-down-said-once",
        ),
        pytest.param(
            DOWN,
            DOWN,
            DOWN,
            "Error",
            "analysis error: Prometheus unreachable: cannot reach http://127.0.0.1:9090: "
            "Connection refused",
            id="prometheus-down-said-once",
        ),
        pytest.param(
            DOWN,
            Value(0.1),
            Value(640),
            "Error",
            "analysis error: error-rate: Prometheus unreachable",
            id="one-metric-error-named",
        ),
        pytest.param(
            Value(0.0),
            NoData(),
            Value(640),
            "Inconclusive",
            "inconclusive: latency-p99: no data for the canary over 30s",
            id="inconclusive-beats-pass",
        ),
        pytest.param(
            ManySeries(2),
            NoData(),
            Value(640),
            "Error",
            "analysis error: error-rate: query gave 2 series",
            id="error-beats-inconclusive",
        ),
        pytest.param(
            NotFinite(math.nan),
            NotFinite(math.nan),
            Value(3),
            "Inconclusive",
            "inconclusive: only 3 canary requests in 30s (need 50)",
            id="no-traffic-said-once",
        ),
    ],
)
def test_check_verdict_and_summary(
    err: QueryResult, lat: QueryResult, requests: QueryResult, verdict: Verdict, summary: str
) -> None:
    outcome = check(err, lat, requests)
    assert outcome.verdict == verdict
    assert outcome.summary.startswith(summary), outcome.summary
    assert outcome.at == T0
    assert [m.name for m in outcome.metrics] == ["error-rate", "latency-p99"]


def test_no_metrics_is_an_error_never_a_pass() -> None:
    outcome = judge(spec(), [], Traffic(Value(640)), T0)
    assert outcome.verdict == "Error"


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("error-rate", 0.0, "0%"),
        ("error-rate", 0.124, "12.4%"),
        ("error-rate", 0.0021, "0.21%"),
        ("error-rate", 1.0, "100%"),
        ("latency-p99", 0.0874, "87ms"),
        ("latency-p99", 0.0025, "2.5ms"),
        ("latency-p99", 1.234, "1.23s"),
        ("x", 1234.5678, "1235"),
        ("x", math.nan, "NaN"),
        ("x", -math.inf, "-Inf"),
    ],
)
def test_format_value(name: str, value: float, text: str) -> None:
    assert format_value(name, value) == text


# --- counters and limits ----------------------------------------------------------------------


def run(verdicts: str, prev: AnalysisStatus | None = None) -> AnalysisStatus:
    """Apply checks given as letters: P(ass) F(ail) I(nconclusive) E(rror)."""
    names: dict[str, Verdict] = {"P": "Pass", "F": "Fail", "I": "Inconclusive", "E": "Error"}
    status = prev or AnalysisStatus()
    for i, letter in enumerate(verdicts):
        outcome = AnalysisOutcome(at=T0 + timedelta(seconds=5 * i), verdict=names[letter])
        status = next_counters(status, outcome)
    return status


@pytest.mark.parametrize(
    ("verdicts", "failures", "inconclusive", "errors"),
    [
        ("", 0, 0, 0),
        ("F", 1, 0, 0),
        ("FF", 2, 0, 0),
        ("FP", 0, 0, 0),
        ("FEF", 2, 0, 0),  # a missing answer does not break a failure streak
        ("FIF", 2, 0, 0),  # nor does thin traffic: only a Pass does
        ("III", 0, 3, 0),
        ("IIF", 1, 0, 0),  # data that fails ends the inconclusive streak
        ("IEI", 0, 2, 0),
        ("EEE", 0, 0, 3),
        ("EEI", 0, 1, 0),  # Prometheus answered: the error streak ends
        ("EEF", 1, 0, 0),
        ("FEEP", 0, 0, 0),
    ],
)
def test_counters(verdicts: str, failures: int, inconclusive: int, errors: int) -> None:
    s = run(verdicts)
    assert (s.consecutive_failures, s.consecutive_inconclusive, s.consecutive_errors) == (
        failures,
        inconclusive,
        errors,
    )


def test_counters_keep_the_latest_check() -> None:
    outcome = check(Value(0.124), Value(0.087))
    s = next_counters(AnalysisStatus(), outcome)
    assert s.last_check_at == T0
    assert s.verdict == "Fail"
    assert [m.name for m in s.metrics] == ["error-rate", "latency-p99"]
    assert s.summary == outcome.summary


@pytest.mark.parametrize(
    ("verdicts", "kw", "limit"),
    [
        ("F", {}, None),
        ("FF", {}, "rollback"),  # failureLimit 2 (default)
        ("F", {"failureLimit": 1}, "rollback"),
        ("EE", {}, None),
        ("EEE", {}, "rollback"),  # errorLimit 3 (default)
        ("IIIII", {}, None),
        ("IIIIII", {}, "pause"),  # inconclusiveLimit 6, onInconclusive pause (defaults)
        ("II", {"inconclusiveLimit": 2, "onInconclusive": "rollback"}, "rollback"),
        ("FIIIIIIF", {}, "rollback"),  # rollback wins over pause
        ("PPP", {}, None),
    ],
)
def test_limit_reached(verdicts: str, kw: dict[str, Any], limit: str | None) -> None:
    assert limit_reached(spec(**kw), run(verdicts)) == limit


def test_limit_reason_names_the_limit_and_the_last_line() -> None:
    s = spec()
    line = "error-rate 12.4% > 1.0% over 30s, 640 canary requests"
    assert limit_reason(s, run("FF"), line) == (
        f"{line}: 2 consecutive failed checks (failureLimit 2)"
    )
    assert "errorLimit 3" in limit_reason(s, run("EEE"))
    assert "onInconclusive pause" in limit_reason(s, run("IIIIII"))
    assert limit_reason(s, run("F")) == ""


def test_only_a_passed_check_lets_a_step_advance() -> None:
    assert not may_advance(AnalysisStatus())  # no check yet
    for verdicts in ("F", "I", "E", "PE", "PI", "PF"):
        assert not may_advance(run(verdicts)), verdicts
    passed = run("P")
    assert may_advance(passed)
    assert may_advance(passed, since=T0)
    assert not may_advance(passed, since=T0 + timedelta(seconds=1))  # from before the step
