"""Which source a Rollout's built-in metrics and request count come from, and the queries sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from tests.unit.test_analysis_check import FakeSource

from kanary.analysis.check import run_check
from kanary.analysis.metrics_source import (
    APP,
    GatewayClassSeen,
    Measurement,
    choose,
    parent_gateways,
    window_seconds,
)
from kanary.analysis.source import QueryResult, Value
from kanary.spec import AnalysisSpec, RolloutSpec

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
TRAEFIK = GatewayClassSeen("web/edge", "traefik", "traefik.io/gateway-controller")
ISTIO = GatewayClassSeen("web/edge", "istio", "istio.io/gateway-controller")
ENVOY = GatewayClassSeen("web/edge", "eg", "gateway.envoyproxy.io/gatewayclass-controller")
OTHER = GatewayClassSeen("web/edge", "nginx", "gateway.nginx.org/nginx-gateway-controller")


def analysis(source: str = "auto", **kw: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {"source": source, "metrics": [{"name": "error-rate", "max": 0.01}], **kw}
    )


@pytest.mark.parametrize(
    ("source", "routed", "seen", "expected"),
    [
        ("auto", True, TRAEFIK, ("gateway", "traefik")),
        ("auto", True, ISTIO, ("gateway", "istio")),
        ("auto", True, ENVOY, ("app", None)),  # per-rule clusters mix both backends
        ("auto", True, OTHER, ("app", None)),
        ("auto", True, None, ("app", None)),
        ("auto", False, None, ("app", None)),
        ("app", True, TRAEFIK, ("app", None)),
        ("gateway", True, TRAEFIK, ("gateway", "traefik")),
    ],
)
def test_choose(
    source: str, routed: bool, seen: GatewayClassSeen | None, expected: tuple[str, str | None]
) -> None:
    got = choose(analysis(source), routed, seen, 8080)
    assert isinstance(got, Measurement), got
    assert (got.source, got.implementation) == expected
    assert got.why.startswith(expected[0] + ":")
    if got.source == "gateway":
        assert got.port == 8080 and "GatewayClass" in got.why


@pytest.mark.parametrize(
    ("seen", "routed", "words"),
    [
        (ENVOY, True, "mergeBackends"),
        (OTHER, True, "no metrics mapping for GatewayClass nginx"),
        (None, True, "parent Gateway or its GatewayClass not found"),
        (None, False, "no spec.trafficRouting.gatewayAPI"),
    ],
)
def test_gateway_asked_for_but_not_readable_says_why(
    seen: GatewayClassSeen | None, routed: bool, words: str
) -> None:
    got = choose(analysis("gateway"), routed, seen, 80)
    assert isinstance(got, str) and got.startswith("source gateway: ") and words in got, got


def test_parent_gateways_defaults_namespace_kind_and_group() -> None:
    route = {
        "spec": {
            "parentRefs": [
                {"name": "edge"},
                {"name": "other", "namespace": "infra"},
                {"name": "svc", "kind": "Service", "group": ""},  # GAMMA: not a Gateway
                {"name": "edge"},
            ]
        }
    }
    assert parent_gateways(route, "web") == [("web", "edge"), ("infra", "other")]
    assert parent_gateways(None, "web") == []


def test_gateway_window_starts_no_earlier_than_the_rollout() -> None:
    gw = Measurement("gateway", "traefik")
    assert window_seconds(gw, 30, NOW, NOW - timedelta(seconds=12)) == 12
    assert window_seconds(gw, 30, NOW, NOW - timedelta(seconds=12.75)) == 12
    assert window_seconds(gw, 30, NOW, NOW - timedelta(seconds=300)) == 30
    assert window_seconds(gw, 30, NOW, NOW) == 1  # never an empty range
    assert window_seconds(gw, 30, NOW, None) == 30
    assert window_seconds(APP, 30, NOW, NOW - timedelta(seconds=12)) == 30  # scoped by revision


def traefik_rule(svc: str, needle: str, value: float) -> tuple[tuple[str, ...], QueryResult]:
    return ((f'service="demo-gin-demo-{svc}-http-80@kubernetesgateway"', needle), Value(value))


def test_gateway_source_counts_and_judges_at_the_gateway() -> None:
    """minRequests counts the same source that is judged: Traefik's counter, not the app's."""
    src = FakeSource(
        [
            traefik_rule("canary", 'code=~"5.."', 0.2),
            traefik_rule("canary", "sum(increase(traefik_service_requests_total", 40),
        ]
    )
    spec = analysis(minRequests=20)
    measurement = choose(spec, True, TRAEFIK, 80)
    started = NOW - timedelta(seconds=10)
    outcome = run_check(spec, src, "demo", "gin-demo", "c2", "s1", NOW, measurement, started)
    assert outcome.verdict == "Fail", outcome.summary
    assert outcome.summary == "error-rate 20.0% > 1.0% over 10s, 40 canary requests"
    assert len(src.sent) == 2
    assert all("http_requests_total" not in q for q, _ in src.sent)
    assert all("[10s]" in q and "canary-http-80" in q for q, _ in src.sent)


def test_unreadable_gateway_is_an_analysis_error_without_queries() -> None:
    src = FakeSource([])
    spec = analysis("gateway")
    outcome = run_check(
        spec, src, "demo", "gin-demo", "c2", "s1", NOW, choose(spec, True, ENVOY, 80)
    )
    assert outcome.verdict == "Error"
    assert "mergeBackends" in outcome.summary and src.sent == []


def rollout(**analysis_fields: Any) -> dict[str, Any]:
    return {
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "a", "image": "i"}]},
        },
        "strategy": {
            "steps": [{"setWeight": 10}],
            "analysis": {"metrics": [{"name": "error-rate", "max": 0.01}], **analysis_fields},
        },
    }


def test_source_gateway_without_a_route_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"source gateway needs spec\.trafficRouting"):
        RolloutSpec.model_validate(rollout(source="gateway"))
    RolloutSpec.model_validate(rollout(source="auto"))
    with_route = rollout(source="gateway")
    with_route["trafficRouting"] = {"gatewayAPI": {"httpRoute": "r"}}
    RolloutSpec.model_validate(with_route)
