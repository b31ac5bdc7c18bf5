"""PromQL templating, its run-time validation, and the built-in queries."""

from __future__ import annotations

from typing import Any

import pytest

from kanary.analysis.builtin import (
    error_rate_query,
    latency_p99_query,
    metric_query,
    requests_query,
)
from kanary.analysis.templating import (
    Scope,
    TemplateError,
    promql_duration,
    render,
    template_errors,
    window_increase,
)
from kanary.spec import AnalysisSpec, MetricSpec, RolloutSpec

CANARY = Scope("demo", "gin-demo", "canary", "5c4b1a", 30)


def analysis(*metrics: dict[str, Any], **kw: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {"prometheus": {"url": "http://127.0.0.1:9090"}, "metrics": list(metrics), **kw}
    )


def test_every_variable_is_replaced() -> None:
    q = render(
        "m",
        'x{namespace="{{namespace}}",rollout="{{ rollout }}",track="{{track}}",'
        'revision="{{revision}}"}[{{window}}]',
        CANARY,
    )
    assert q == 'x{namespace="demo",rollout="gin-demo",track="canary",revision="5c4b1a"}[30s]'


def test_values_are_escaped_for_a_double_quoted_label_string() -> None:
    scope = Scope('a"b\\c', "r\nx", "stable", None, 30)
    assert render("m", 'x{ns="{{namespace}}",r="{{rollout}}"}', scope) == (
        'x{ns="a\\"b\\\\c",r="r\\nx"}'
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (90, "1m30s"), (3600, "1h"), (0.5, "500ms"), (1.5, "1500ms"), (600, "10m")],
)
def test_window_is_a_promql_range(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text


def test_unknown_variable_names_the_metric_and_the_variable() -> None:
    with pytest.raises(TemplateError) as err:
        render("checkout-errors", 'x{ns="{{namespce}}"}', CANARY)
    assert "checkout-errors" in str(err.value)
    assert "{{namespce}}" in str(err.value)
    assert "{{namespace}}" in str(err.value)  # the known ones are listed


def test_unclosed_variable_is_an_error() -> None:
    with pytest.raises(TemplateError, match="unclosed"):
        render("m", 'x{ns="{{namespace"}', CANARY)


def test_revision_unknown_is_an_error_not_an_empty_matcher() -> None:
    with pytest.raises(TemplateError, match="revision"):
        render("m", 'x{revision="{{revision}}"}', Scope("ns", "r", "stable", None, 30))


def test_template_errors_lists_each_problem_with_its_field() -> None:
    spec = analysis(
        {"name": "error-rate", "max": 0.01},
        {"name": "a", "query": 'x{a="{{nope}}"}', "max": 1},
        {"name": "b", "query": 'sum(x{r="{{rollout}}"})', "max": 1},
        {"name": "c", "query": 'sum(rate(x{rollout="{{rollout}}"}[{{window}}]))', "maxRatio": 2},
    )
    errors = template_errors(spec)
    assert len(errors) == 2
    assert errors[0].startswith("spec.strategy.analysis.metrics[1].query (metric a)")
    assert "{{nope}}" in errors[0]
    # a comparison needs the query to select the track, or canary and stable are the same
    assert errors[1].startswith("spec.strategy.analysis.metrics[3].query (metric c)")
    assert "{{track}}" in errors[1]


def test_template_errors_empty_for_a_valid_rollout_and_for_none() -> None:
    rollout = RolloutSpec.model_validate(
        {
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{}]}},
            "strategy": {
                "steps": [{"setWeight": 10}],
                "analysis": {
                    "prometheus": {"url": "http://127.0.0.1:9090"},
                    "metrics": [
                        {"name": "error-rate", "max": 0.01, "maxIncrease": 0.005},
                        {
                            "name": "checkout",
                            "query": 'sum(x{track="{{track}}"}[{{window}}])',
                            "maxRatio": 2,
                        },
                    ],
                },
            },
        }
    )
    assert template_errors(rollout) == []
    no_analysis = rollout.model_copy(
        update={"strategy": rollout.strategy.model_copy(update={"analysis": None})}
    )
    assert template_errors(no_analysis) == []


def test_builtin_queries_select_the_track_of_this_rollout_and_revision() -> None:
    for query in (requests_query(CANARY), error_rate_query(CANARY), latency_p99_query(CANARY)):
        assert 'namespace="demo"' in query
        assert 'rollout="gin-demo"' in query
        assert 'track="canary"' in query
        assert 'revision="5c4b1a"' in query
        assert 'route!~"/metrics|/healthz|/readyz"' in query
        assert "[30s]" in query


def test_builtin_queries_without_revision_do_not_scope_by_it() -> None:
    scope = Scope("demo", "gin-demo", "stable", None, 30)
    assert "revision" not in error_rate_query(scope)


def test_error_rate_is_zero_not_absent_when_no_5xx_series_exists() -> None:
    q = error_rate_query(CANARY)
    assert q.startswith('(((sum(increase(http_requests_total{namespace="demo"')
    assert 'code=~"5.."' in q
    assert " or vector(0)) / ((sum(increase(http_requests_total{" in q


def test_latency_p99_is_a_histogram_quantile_over_buckets() -> None:
    q = latency_p99_query(CANARY)
    assert q.startswith("histogram_quantile(0.99, ((sum by (le) (increase(")
    assert "http_request_duration_seconds_bucket{" in q


def test_metric_query_renders_custom_and_picks_builtin() -> None:
    custom = MetricSpec(name="x", query='sum(y{track="{{track}}"})', max=1)
    assert metric_query(custom, CANARY) == 'sum(y{track="canary"})'
    assert metric_query(MetricSpec(name="error-rate", max=1), CANARY) == error_rate_query(CANARY)


def test_window_increase_adds_the_series_born_inside_the_window() -> None:
    """The behaviour is tested against a real Prometheus (tests/integration/
    test_analysis_prometheus.py); here, its parts: what increase() counts, plus the first value
    of each series absent at the window's start, and the born series alone when increase()
    has nothing (one sample each)."""
    grown = 'sum(increase(x{a="1"}[30s]))'
    born = 'sum(min_over_time(x{a="1"}[30s]) unless x{a="1"} offset 30s)'
    assert window_increase('x{a="1"}', "30s") == f"(({grown} + ({born} or {grown} * 0)) or {born})"
    by_le = window_increase("b", "1m", by="le")
    assert by_le.startswith("((sum by (le) (increase(b[1m])) + (sum by (le) (min_over_time(b[1m])")
