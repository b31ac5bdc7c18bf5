"""judge: mannWhitney in a check: which range queries are sent, how the run is scored, and what
status and on-call read. The classifier itself: test_mannwhitney.py (Kayenta's own cases)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from kanary.analysis.check import run_check
from kanary.analysis.metrics_source import APP, Measurement
from kanary.analysis.source import NoData, QueryError, QueryResult, Samples, Value
from kanary.spec import AnalysisSpec

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def normal(mean: float, sd: float, n: int, seed: int) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(rng.gauss(mean, sd) for _ in range(n))


class RangeSource:
    """Range answers by (metric word, track); the request count by track."""

    def __init__(
        self,
        samples: dict[tuple[str, str], Samples | QueryError],
        requests: float = 500,
    ) -> None:
        self.samples, self.requests = samples, requests
        self.ranges: list[tuple[str, datetime, datetime, float]] = []
        self.instants: list[str] = []

    def query(self, promql: str, at: datetime) -> QueryResult:
        self.instants.append(promql)
        return Value(self.requests) if 'track="canary"' in promql else NoData()

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float]:
        return {}

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> Samples | QueryError:
        self.ranges.append((promql, start, end, step_seconds))
        for (word, track), answer in self.samples.items():
            if word in promql and f'track="{track}"' in promql:
                return answer
        return Samples(())


def analysis(*metrics: dict[str, Any], **kw: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {
            "judge": "mannWhitney",
            "window": "30s",
            "minRequests": 20,
            "metrics": list(metrics) or [{"name": "latency-p50"}, {"name": "error-rate"}],
            **kw,
        }
    )


def check(spec: AnalysisSpec, src: RangeSource, measurement: Measurement = APP) -> Any:
    return run_check(spec, src, "demo", "gin", "c2", "s1", NOW, measurement)


STABLE = normal(0.100, 0.004, 15, 1)
SLOWER = tuple(v * 1.3 for v in normal(0.100, 0.004, 15, 2))  # p50 30% slower
SAME = normal(0.100, 0.004, 15, 3)
ZEROS = Samples((0.0,) * 15)


def test_a_canary_30_percent_slower_in_p50_fails_and_says_why() -> None:
    src = RangeSource(
        {
            ("0.5,", "canary"): Samples(SLOWER),
            ("0.5,", "stable"): Samples(STABLE),
            ('code=~"5.."', "canary"): ZEROS,
            ('code=~"5.."', "stable"): ZEROS,
        }
    )
    out = check(analysis(), src)
    assert out.verdict == "Fail", out.summary
    assert out.score == 50
    p50 = out.metrics[0]
    assert (p50.name, p50.verdict, p50.classification) == ("latency-p50", "Fail", "High")
    assert p50.value is not None and p50.baseline is not None
    assert 1.25 < p50.value / p50.baseline < 1.35
    assert p50.p_value is not None and p50.p_value < 0.001
    assert p50.canary_samples == p50.stable_samples == 15
    assert p50.shift is not None and p50.shift[0] > 0  # the whole interval is an increase
    assert out.metrics[1].verdict == "Pass"
    assert out.summary.startswith("mannWhitney score 50 < 75 (Fail): latency-p50 High (canary ")
    assert "vs stable 99ms, +30%, p=3.4e-06, 15 vs 15 samples" in out.summary
    assert out.summary.endswith("over 30s, 500 canary requests")


def test_range_queries_one_per_track_and_metric_sampled_every_step() -> None:
    src = RangeSource({})
    check(analysis({"name": "latency-p50"}, mannWhitney={"step": "5s"}), src)
    assert len(src.ranges) == 2
    for promql, start, end, step in src.ranges:
        assert "[10s]" in promql and "histogram_quantile(0.5," in promql  # 2 steps per sample
        assert end == NOW and (end - start).total_seconds() == 25 and step == 5
    assert len(src.instants) == 1  # the request count: nothing else is asked instantly


def test_a_canary_like_stable_passes() -> None:
    src = RangeSource({("0.5,", "canary"): Samples(SAME), ("0.5,", "stable"): Samples(STABLE)})
    out = check(analysis({"name": "latency-p50"}), src)
    assert out.verdict == "Pass" and out.score == 100, out.summary


def test_faster_canary_passes_with_direction_increase_and_fails_with_either() -> None:
    faster = Samples(tuple(v * 0.7 for v in SAME))
    src = RangeSource({("0.5,", "canary"): faster, ("0.5,", "stable"): Samples(STABLE)})
    assert check(analysis({"name": "latency-p50"}), src).verdict == "Pass"
    either = check(analysis({"name": "latency-p50", "direction": "either"}), src)
    assert either.verdict == "Fail" and either.metrics[0].classification == "Low"


def test_thin_traffic_is_inconclusive_without_range_queries() -> None:
    src = RangeSource({}, requests=5)
    out = check(analysis(), src)
    assert out.verdict == "Inconclusive"
    assert out.summary == "mannWhitney not judged: only 5 canary requests in 30s (need 20)"
    assert src.ranges == []


def test_a_failed_range_query_is_an_error() -> None:
    down = QueryError("unreachable", "cannot reach http://p:9090: Connection refused")
    src = RangeSource({("0.5,", "canary"): down})
    out = check(analysis({"name": "latency-p50"}), src)
    assert out.verdict == "Error" and "Connection refused" in out.summary


def test_no_data_on_half_the_metrics_fails_the_run() -> None:
    src = RangeSource({("0.5,", "canary"): Samples(SAME), ("0.5,", "stable"): Samples(STABLE)})
    out = check(analysis(), src)  # error-rate: no samples at all
    assert out.verdict == "Fail", out.summary
    assert "50% or more metrics returned NODATA" in out.summary


def test_gateway_source_samples_traefiks_histogram() -> None:
    src = RangeSource({})
    check(analysis({"name": "latency-p50"}), src, Measurement("gateway", "traefik"))
    assert all("traefik_service_request_duration_seconds_bucket" in q for q, *_ in src.ranges)
