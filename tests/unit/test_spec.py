"""Spec validation: what the pydantic models (and so the CRD) refuse, and with which words."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from kanary.spec import OnInconclusive, RolloutSpec

VALID: dict[str, Any] = {
    "replicas": 4,
    "template": {
        "metadata": {"labels": {"app": "demo"}},
        "spec": {"containers": [{"name": "app", "image": "demo:v1"}]},
    },
    "service": {"port": 80, "targetPort": "http"},
    "trafficRouting": {"gatewayAPI": {"httpRoute": "demo"}},
    "strategy": {
        "steps": [
            {"setWeight": 5},
            {"pause": {"duration": "30s"}},
            {"setWeight": 50},
            {"pause": {}},
            {"setWeight": 100},
        ],
        "analysis": {
            "interval": "10s",
            "window": "30s",
            "prometheus": {"url": "http://prometheus:9090", "timeout": "5s"},
            "metrics": [
                {"name": "error-rate", "max": 0.01},
                {"name": "checkout", "query": "sum(rate(x[{{window}}]))", "max": 0.5},
            ],
        },
        "readiness": {"maxPodReadySeconds": 30},
        "progressDeadlineSeconds": 300,
        "abortScaleDownDelaySeconds": 30,
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """VALID with one value set (dotted path, list indices as numbers); value None deletes."""
    body = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


def test_the_example_parses_with_snake_case_access() -> None:
    spec = RolloutSpec.model_validate(VALID)
    assert spec.replicas == 4
    assert spec.traffic_routing is not None and spec.traffic_routing.gateway_api is not None
    assert spec.traffic_routing.gateway_api.http_route == "demo"
    assert [s.set_weight for s in spec.strategy.steps] == [5, None, 50, None, 100]
    assert spec.strategy.readiness.max_pod_ready_seconds == 30
    assert spec.selector_labels() == {}  # no spec.selector: kanary selects by its own labels
    assert spec.template.images() == ["demo:v1"]


def test_pause_seconds() -> None:
    steps = RolloutSpec.model_validate(VALID).strategy.steps
    assert steps[1].pause is not None and steps[1].pause.seconds() == 30.0
    assert steps[3].pause is not None and steps[3].pause.seconds() is None


def test_defaults() -> None:
    body = copy.deepcopy(VALID)
    del body["strategy"]["analysis"]["interval"]
    del body["strategy"]["progressDeadlineSeconds"]
    del body["trafficRouting"]
    spec = RolloutSpec.model_validate(body)
    analysis = spec.strategy.analysis
    assert analysis is not None
    assert analysis.interval_seconds() == 10.0
    assert analysis.failure_limit == 2
    assert analysis.on_inconclusive == OnInconclusive.PAUSE
    assert spec.strategy.progress_deadline_seconds == 600
    assert spec.traffic_routing is None


def test_round_trips_through_camel_case() -> None:
    spec = RolloutSpec.model_validate(VALID)
    again = RolloutSpec.model_validate(spec.model_dump(by_alias=True, exclude_none=True))
    assert again == spec


ONE_KIND = "one of setWeight, pause, setHeaderRoute, setMirror"


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("strategy.steps.0", {"setWeight": 101}, "less than or equal to 100"),
        ("strategy.steps.0", {"setWeight": -1}, "greater than or equal to 0"),
        ("strategy.steps.2", {"setWeight": 1}, "weights never decrease"),
        ("strategy.steps", [{"pause": {}}], "at least one setWeight"),
        ("strategy.steps", [], "give either steps (a canary) or blueGreen"),
        ("strategy.steps.0", {"setWeight": 5, "pause": {}}, ONE_KIND),
        ("strategy.steps.0", {}, ONE_KIND),
        ("strategy.steps.1", {"pause": {"duration": "30"}}, "should match pattern"),
        ("strategy.steps.1", {"pause": {"duration": "5d"}}, "should match pattern"),
        ("strategy.analysis.interval", "ten seconds", "should match pattern"),
        ("strategy.analysis.interval", "0s", "interval must be positive"),
        ("strategy.analysis.window", "0ms", "window must be positive"),
        ("strategy.analysis.prometheus.timeout", "0s", "timeout must be positive"),
        ("strategy.analysis.prometheus.url", "prometheus:9090", "should match pattern"),
        ("strategy.analysis.metrics", [], "at least 1 item"),
        ("strategy.analysis.metrics.0", {"name": "error-rate"}, "needs a bound"),
        ("strategy.analysis.metrics.1", {"name": "custom", "max": 1}, "needs a query"),
        (
            "strategy.analysis.metrics.0",
            {"name": "error-rate", "min": 2, "max": 1},
            "min must not exceed max",
        ),
        ("strategy.analysis.metrics.0", {"name": "Error_Rate", "max": 1}, "should match pattern"),
        ("strategy.analysis.failureLimit", 0, "greater than or equal to 1"),
        ("strategy.readiness.maxPodReadySeconds", 0, "greater than 0"),
        ("strategy.progressDeadlineSeconds", 0, "greater than or equal to 1"),
        ("strategy.abortScaleDownDelaySeconds", -1, "greater than or equal to 0"),
        ("replicas", 0, "greater than or equal to 1"),
        ("template.spec", {"containers": []}, "at least one container"),
        ("template", None, "Field required"),
        ("trafficRouting", {"gatewayApi": {"httpRoute": "x"}}, "Extra inputs are not permitted"),
        ("trafficRouting", {"gatewayAPI": {"httpRoute": ""}}, "at least 1 character"),
        ("strategy.stepz", [], "Extra inputs are not permitted"),
        ("selector", {"matchLabels": {"app": "other"}}, "do not match"),
        ("template.metadata", {}, "labels: needed when spec.selector is omitted"),
        ("service.port", 70000, "less than or equal to 65535"),
        ("strategy.analysis.onInconclusive", "ignore", "'pause' or 'rollback'"),
    ],
)
def test_invalid_specs_are_refused_naming_the_problem(path: str, value: Any, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RolloutSpec.model_validate(with_change(path, value))
    assert words in str(refused.value)


def test_refusal_names_the_field() -> None:
    with pytest.raises(ValidationError) as refused:
        RolloutSpec.model_validate(with_change("strategy.steps.0", {"setWeight": 101}))
    locations = [".".join(str(p) for p in e["loc"]) for e in refused.value.errors()]
    assert any(loc.startswith("strategy.steps.0") for loc in locations)


def test_equal_weights_are_allowed() -> None:
    body = with_change("strategy.steps.2", {"setWeight": 5})
    spec = RolloutSpec.model_validate(body)
    assert spec.strategy.steps[2].set_weight == 5


def test_selector_subset_of_template_labels_is_allowed() -> None:
    body = with_change("template.metadata", {"labels": {"app": "demo", "tier": "web"}})
    body["selector"] = {"matchLabels": {"app": "demo"}}
    assert RolloutSpec.model_validate(body).selector_labels() == {"app": "demo"}
