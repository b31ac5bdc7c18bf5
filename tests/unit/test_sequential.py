"""The error rate's sequential test: when it rolls back, when it never may, what it asks."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tests.unit.fake_kube import FakeKube, Harness
from tests.unit.test_reconcile import httproute, new_version, rollout

from kanary.analysis import sequential
from kanary.analysis.metrics_source import APP, Measurement
from kanary.analysis.sequential import Counts, counts_of, counts_query, judge
from kanary.analysis.source import QueryError, QueryResult, Value, by_label
from kanary.analysis.templating import Scope
from kanary.spec import AnalysisSpec
from kanary.wakeups import TICK_SECONDS, next_tick

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def spec(max_rate: float = 0.01, **sequential_fields: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {
            "metrics": [{"name": "error-rate", "max": max_rate}],
            "sequential": sequential_fields,
        }
    )


def test_the_issues_example_four_errors_in_ten_requests_is_conclusive() -> None:
    out = judge(spec(), Counts(errors=4, requests=10), NOW)
    assert out is not None and out.rejects, out
    assert out.reason.startswith("error-rate 4 errors in 10 canary requests (40.0%): ")
    assert "as likely at 10.0% as at the max 1.0%" in out.reason
    assert "confidence 0.98: rolls back at 50x" in out.reason


@pytest.mark.parametrize(
    ("errors", "requests", "rejects"),
    [
        (0, 1000, False),  # no errors never rolls back
        (1, 1, False),  # one 5xx alone is not conclusive
        (1, 5, False),
        (2, 9, True),  # 2 in 9: 10% explains it 50x better than 1%
        (2, 12, False),
        (3, 27, True),
        (5, 500, False),  # 1% exactly: the max itself
    ],
)
def test_boundary(errors: int, requests: int, rejects: bool) -> None:
    out = judge(spec(), Counts(errors, requests), NOW)
    assert out is not None and out.rejects is rejects, out


def test_higher_confidence_needs_more_evidence() -> None:
    counts = Counts(2, 9)
    low, high = (
        judge(spec(confidence=0.98), counts, NOW),
        judge(spec(confidence=0.999), counts, NOW),
    )
    assert low is not None and low.rejects
    assert high is not None and not high.rejects


def test_max_zero_any_error_is_conclusive() -> None:
    out = judge(spec(max_rate=0.0), Counts(1, 50), NOW)
    assert out is not None and out.rejects and "infinitely" in out.reason


@pytest.mark.parametrize(
    "counts", [Counts(0, 0), Counts(-3, 10), Counts(1, -2)], ids=["none", "reset", "reset-all"]
)
def test_no_verdict_without_usable_counts(counts: Counts) -> None:
    assert judge(spec(), counts, NOW) is None


def test_bad_rate_default_and_override() -> None:
    assert sequential.bad_rate(spec(), 0.01) == pytest.approx(0.1)
    assert sequential.bad_rate(spec(), 0.001) == pytest.approx(0.011)  # at least max + 1 point
    assert sequential.bad_rate(spec(), 0.2) == 0.5
    assert sequential.bad_rate(spec(badRate=0.05), 0.01) == 0.05
    assert judge(spec(badRate=0.01), Counts(5, 10), NOW) is None  # badRate <= max: no test


def test_only_the_builtin_error_rate_with_a_max_is_tested() -> None:
    assert sequential.applies(spec())
    assert not sequential.applies(spec(enabled=False))
    custom = AnalysisSpec.model_validate(
        {"metrics": [{"name": "error-rate", "query": "sum(x)", "max": 0.01}]}
    )
    assert not sequential.applies(custom)
    increase_only = AnalysisSpec.model_validate(
        {"metrics": [{"name": "error-rate", "maxIncrease": 0.01}]}
    )
    assert not sequential.applies(increase_only)


def ever_rejects(rate: float, requests: int, rng: random.Random, confidence: float) -> bool:
    """One canary run: the test after every request, as if each tick brought one."""
    s, errors = spec(confidence=confidence), 0
    for n in range(1, requests + 1):
        errors += rng.random() < rate
        if errors:
            out = judge(s, Counts(errors, n), NOW)
            if out is not None and out.rejects:
                return True
    return False


def test_a_canary_at_the_max_is_rarely_rolled_back_however_often_it_looks() -> None:
    """Ville's inequality: at most 1 - confidence of canaries at the max are ever rolled back,
    looking after every request. 300 runs of 300 requests at exactly 1%."""
    rng = random.Random(14)
    rolled = sum(ever_rejects(0.01, 300, rng, 0.95) for _ in range(300))
    assert rolled / 300 <= 0.05 + 0.03, rolled  # the bound plus 3 points of sampling noise


def test_a_bad_canary_is_caught_within_a_few_errors() -> None:
    rng = random.Random(7)
    assert all(ever_rejects(0.2, 40, rng, 0.98) for _ in range(50))


# ---- the query ---------------------------------------------------------------------------------

SINCE = NOW - timedelta(minutes=2)
CANARY = Scope("demo", "gin", "canary", "c2", 30)


def test_counts_query_for_the_app_counts_since_the_rollout_began() -> None:
    q = counts_query(APP, CANARY, SINCE)
    at = f"@ {SINCE.timestamp():.3f}"
    assert q.count(at) == 2 and q.count("label_replace(") == 2
    assert 'code=~"5.."' in q and 'revision="c2"' in q and "increase(" not in q
    assert '"kanary_count", "errors"' in q and '"kanary_count", "requests"' in q


def test_counts_query_for_traefik_reads_the_canary_backend() -> None:
    q = counts_query(Measurement("gateway", "traefik"), CANARY, SINCE)
    assert 'traefik_service_requests_total{service="demo-gin-canary-http-80@kubernetesgateway"' in q
    assert "http_requests_total{" not in q.replace("traefik_service_requests_total{", "")


def test_counts_of_the_answer() -> None:
    assert counts_of({"requests": 12.0}) == Counts(0.0, 12.0)  # no 5xx series yet
    assert counts_of({"errors": 3.0, "requests": 12.0}) == Counts(3.0, 12.0)
    assert counts_of({}) is None
    answer = [
        {"metric": {"kanary_count": "errors"}, "value": [1, "3"]},
        {"metric": {"kanary_count": "requests"}, "value": [1, "12"]},
    ]
    assert by_label(answer, "kanary_count") == {"errors": 3.0, "requests": 12.0}
    assert isinstance(by_label("nope", "kanary_count"), QueryError)


# ---- in the reconcile: one query per tick, rollback at once -------------------------------------


class CountingPrometheus:
    """Interval checks see too little traffic (Inconclusive); the counts query sees `errors`
    in `requests`, which grow each tick."""

    def __init__(self) -> None:
        self.requests, self.errors = 0.0, 0.0
        self.counts_queries = 0

    def query(self, promql: str, at: datetime) -> QueryResult:
        return Value(0.0)

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float]:
        self.counts_queries += 1
        return {"requests": self.requests, "errors": self.errors}


def test_the_reconcile_rolls_back_on_the_tick_the_test_is_conclusive() -> None:
    kube = FakeKube()
    kube.put(
        rollout(analysis={"interval": "30s", "metrics": [{"name": "error-rate", "max": 0.01}]})
    )
    kube.put(httproute())
    h = Harness(kube)
    prom = CountingPrometheus()
    h.prometheus = prom
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    h.run_until(lambda s: s.canary_weight == 5)
    asked_before = prom.counts_queries
    for _ in range(3):  # healthy traffic: nothing happens, one counts query per tick
        prom.requests += 4
        h.tick()
    assert prom.counts_queries - asked_before == 3
    # handlers wakes it from what the tick parsed: every second while the test runs
    assert h.ticked is not None and h.ticked.analysis is not None
    assert h.ticked.analysis.metrics[0].name == "error-rate"
    assert next_tick(h.ticked.status, False, h.now, h.ticked.analysis) == TICK_SECONDS
    assert h.status.phase == "Progressing" and h.status.canary_weight == 5
    prom.requests, prom.errors = 14, 3
    h.tick()
    gauge = REGISTRY.get_sample_value(
        "kanary_analysis_sequential_log_likelihood_ratio", {"namespace": "ns", "rollout": "demo"}
    )
    assert gauge is not None and gauge >= math.log(50), gauge
    st = h.status
    assert st.phase == "RolledBack" and st.canary_weight == 0, st.message
    assert "error-rate 3 errors in 14 canary requests" in st.message
    assert st.analysis.sequential is not None and st.analysis.sequential.errors == 3
    rolled = next(c for c in st.conditions if c.type == "RolledBack")
    assert rolled.reason == "AnalysisFailed"
    assert st.analysis.metrics[0].name == "error-rate" and st.analysis.metrics[0].verdict == "Fail"


@pytest.mark.parametrize(
    ("errors", "requests", "p0", "p1"),
    [
        (0, 10, 0.01, 0.1),
        (3, 27, 0.01, 0.1),
        (40, 200, 0.05, 0.5),
        (0, 1, 0.0, 0.01),
        (5, 5, 0.2, 0.5),
    ],
)
def test_the_ratio_is_scipys_binomial_log_pmf_ratio(
    errors: int, requests: int, p0: float, p1: float
) -> None:
    from scipy import stats  # type: ignore[import-untyped]

    want = stats.binom.logpmf(errors, requests, p1) - stats.binom.logpmf(errors, requests, p0)
    assert sequential.log_likelihood_ratio(errors, requests, p0, p1) == pytest.approx(want)
