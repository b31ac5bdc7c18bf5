"""run_check: which queries are sent, at which instant, and how the answers are judged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kanary.analysis.check import run_check
from kanary.analysis.source import NoData, QueryError, QueryResult, Value
from kanary.spec import AnalysisSpec, RolloutSpec

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
DOWN = QueryError("unreachable", "cannot reach http://127.0.0.1:9: Connection refused")


class FakeSource:
    """Answers by the first rule whose every substring is in the query."""

    def __init__(self, rules: list[tuple[tuple[str, ...], QueryResult]]) -> None:
        self.rules = rules
        self.sent: list[tuple[str, datetime]] = []

    def query(self, promql: str, at: datetime) -> QueryResult:
        self.sent.append((promql, at))
        for needles, answer in self.rules:
            if all(n in promql for n in needles):
                return answer
        return NoData()

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float] | QueryError:
        self.sent.append((promql, at))
        return {}


def analysis(*metrics: dict[str, Any], **kw: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {
            "prometheus": {"url": "http://127.0.0.1:9090"},
            "window": "30s",
            "metrics": list(metrics) or [{"name": "error-rate", "max": 0.01}],
            **kw,
        }
    )


def requests_of(track: str, n: float) -> tuple[tuple[str, ...], QueryResult]:
    return ((f'track="{track}"', "sum(increase(http_requests_total{"), Value(n))


def error_rate_of(track: str, v: float) -> tuple[tuple[str, ...], QueryResult]:
    return ((f'track="{track}"', 'code=~"5.."'), Value(v))


def check(spec: AnalysisSpec | RolloutSpec, src: FakeSource, stable_rev: str | None = "s1") -> Any:
    return run_check(spec, src, "demo", "gin-demo", "c2", stable_rev, NOW)


def test_canary_only_without_comparison() -> None:
    src = FakeSource([error_rate_of("canary", 0.124), requests_of("canary", 640)])
    outcome = check(analysis(), src)
    assert outcome.verdict == "Fail"
    assert outcome.summary == "error-rate 12.4% > 1.0% over 30s, 640 canary requests"
    assert all('track="canary"' in q and 'revision="c2"' in q for q, _ in src.sent)
    assert {at for _, at in src.sent} == {NOW}
    assert len(src.sent) == 2  # request count + error rate


def test_comparison_asks_stable_in_the_same_window() -> None:
    src = FakeSource(
        [
            error_rate_of("canary", 0.10),
            requests_of("canary", 640),
            error_rate_of("stable", 0.09),
            requests_of("stable", 5000),
        ]
    )
    outcome = check(analysis({"name": "error-rate", "maxIncrease": 0.02}), src)
    assert outcome.verdict == "Pass", outcome.summary
    assert outcome.metrics[0].baseline == 0.09
    stable = [q for q, _ in src.sent if 'track="stable"' in q]
    assert len(stable) == 2 and all('revision="s1"' in q for q in stable)
    assert {at for _, at in src.sent} == {NOW}


def test_unknown_stable_revision_leaves_stable_unscoped() -> None:
    src = FakeSource([])
    check(analysis({"name": "error-rate", "maxIncrease": 0.02}), src, stable_rev="")
    assert all("revision" not in q for q, _ in src.sent if 'track="stable"' in q)


def test_prometheus_down_costs_one_query_and_gives_error() -> None:
    src = FakeSource([((), DOWN)])
    spec = analysis({"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 0.3})
    outcome = check(spec, src)
    assert outcome.verdict == "Error"
    assert len(src.sent) == 1
    assert [m.verdict for m in outcome.metrics] == ["Error", "Error"]
    assert outcome.summary == (
        "analysis error: Prometheus unreachable: cannot reach http://127.0.0.1:9: "
        "Connection refused"
    )


def test_template_errors_send_nothing() -> None:
    src = FakeSource([])
    spec = analysis({"name": "x", "query": 'sum(y{ns="{{nmespace}}"})', "max": 1})
    outcome = check(spec, src)
    assert outcome.verdict == "Error"
    assert src.sent == []
    assert "{{nmespace}}" in outcome.summary
    assert outcome.metrics[0].reason.startswith("spec.strategy.analysis.metrics[0].query")


def test_takes_a_rollout_spec() -> None:
    rollout = RolloutSpec.model_validate(
        {
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{}]}},
            "strategy": {"steps": [{"setWeight": 10}], "analysis": analysis().model_dump()},
        }
    )
    src = FakeSource([error_rate_of("canary", 0.0), requests_of("canary", 640)])
    assert check(rollout, src).verdict == "Pass"
    no_analysis = rollout.model_copy(
        update={"strategy": rollout.strategy.model_copy(update={"analysis": None})}
    )
    with pytest.raises(ValueError, match="no analysis"):
        check(no_analysis, src)
