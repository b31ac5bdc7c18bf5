"""setMirror and the GatewayClass feature check (issue 13): a Rollout needing a feature its
GatewayClass does not list is Invalid, naming the feature, the class and the step, and nothing
is written; on a class that lists it, the mirror filter is kanary's to add and remove on the
user's rule (through reconcile against FakeKube, whose route takes the JSON patches for real)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.fake_kube import FakeKube, Harness
from tests.unit.test_header_routes import rules, user_route
from tests.unit.test_reconcile import NAME, NS, gateway_objects, new_version, rollout

from kanary.analysis.metrics_source import GatewayClassSeen, supported_features
from kanary.routers import features
from kanary.spec import RolloutSpec

# What Traefik v3.6.12 writes (pkg/provider/kubernetes/gateway/features.go; 18 names).
TRAEFIK_FEATURES = [
    "BackendTLSPolicy", "GRPCRoute", "Gateway", "GatewayPort8080", "HTTPRoute",
    "HTTPRouteBackendProtocolH2C", "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteDestinationPortMatching", "HTTPRouteHostRewrite", "HTTPRouteMethodMatching",
    "HTTPRoutePathRedirect", "HTTPRoutePathRewrite", "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching", "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect", "ReferenceGrant", "TLSRoute",
]  # fmt: skip
MIRRORING = ["Gateway", "HTTPRoute", "HTTPRouteRequestMirror", "HTTPRouteRequestPercentageMirror"]
STEPS = [{"setWeight": 10}, {"setMirror": {"percent": 50}}, {"pause": {}}, {"setWeight": 100}]


def spec(steps: list[dict[str, Any]]) -> RolloutSpec:
    return RolloutSpec.model_validate(rollout(steps)["spec"])


def seen(controller: str, listed: list[str] | None) -> GatewayClassSeen:
    status = None if listed is None else {"supportedFeatures": [{"name": n} for n in listed]}
    return GatewayClassSeen("ns/gw", "edge", controller, supported_features(status))


# ---- the check, pure ---------------------------------------------------------------------------


def test_traefik_is_refused_for_mirroring_naming_feature_class_and_step() -> None:
    why = features.refusal(spec(STEPS), seen("traefik.io/gateway-controller", TRAEFIK_FEATURES))
    assert why is not None
    assert "spec.strategy.steps[1].setMirror needs HTTPRouteRequestMirror" in why
    assert "GatewayClass edge (traefik.io/gateway-controller) does not list" in why


@pytest.mark.parametrize(
    ("listed", "percent", "words"),
    [
        (None, 50, "lists no status.supportedFeatures"),
        (["HTTPRoute", "HTTPRouteRequestMirror"], 50, "HTTPRouteRequestPercentageMirror"),
        (["HTTPRoute", "HTTPRouteRequestMirror"], 100, None),
        (MIRRORING, 50, None),
    ],
)
def test_percent_needs_the_percentage_feature_and_an_unlisted_class_is_not_trusted(
    listed: list[str] | None, percent: int, words: str | None
) -> None:
    steps = [{"setWeight": 10}, {"setMirror": {"percent": percent}}, {"setWeight": 100}]
    why = features.refusal(spec(steps), seen("example.com/gw", listed))
    assert why is None if words is None else words in (why or "")


def test_a_known_limit_refuses_even_a_class_that_lists_the_feature() -> None:
    why = features.refusal(spec(STEPS), seen("traefik.io/gateway-controller", MIRRORING))
    assert why is not None and "answers 500" in why


def test_header_routes_and_weights_need_no_extended_feature() -> None:
    steps = [{"setHeaderRoute": {"match": [{"cookie": {"name": "c", "value": "1"}}]}}]
    assert features.refusal(spec([*steps, {"setWeight": 100}]), seen("x/y", None)) is None
    assert features.refusal(spec([{"setWeight": 100}]), None) is None


def test_the_class_status_is_read_as_objects_or_strings() -> None:
    assert supported_features({"supportedFeatures": [{"name": "A"}, "B"]}) == {"A", "B"}
    assert supported_features({}) is None and supported_features(None) is None


# ---- through reconcile -------------------------------------------------------------------------


def started(controller: str, listed: list[str] | None, **strategy: Any) -> Harness:
    kube = FakeKube()
    kube.put(rollout(STEPS, **strategy))
    kube.put(user_route())
    for obj in gateway_objects(controller, listed):
        kube.put(obj)
    h = Harness(kube)
    h.run_until(lambda s: s.phase in ("Healthy", "Invalid"))
    return h


def owned_filters(h: Harness) -> list[dict[str, Any]]:
    return list(rules(h)[0].get("filters") or [])


def test_on_traefik_the_rollout_is_invalid_and_the_route_is_never_written() -> None:
    h = started("traefik.io/gateway-controller", TRAEFIK_FEATURES)
    assert h.status.phase == "Invalid"
    assert "HTTPRouteRequestMirror" in h.status.message and "GatewayClass edge" in h.status.message
    assert "patch HTTPRoute demo" not in h.kube.log
    assert "Invalid" in h.reasons()


def test_the_mirror_is_added_to_the_users_rule_beside_its_filters_and_removed_on_abort() -> None:
    h = started("example.com/gw", MIRRORING)
    users = owned_filters(h)
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    mirror = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "demo-canary", "port": 80}, "percent": 50},
    }
    assert owned_filters(h) == [*users, mirror]
    assert h.status.mirror_percent == 50 and h.status.canary_weight == 10
    assert h.status.routing == "stable 90% / canary 10% + mirror 50% -> canary"
    patches = h.kube.log.count("patch HTTPRoute demo")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    assert owned_filters(h) == users
    assert h.kube.log.count("patch HTTPRoute demo") == patches + 1


def test_a_mirror_removed_by_hand_comes_back_and_promotion_removes_it() -> None:
    h = started("example.com/gw", MIRRORING)
    users = owned_filters(h)
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    route["spec"]["rules"][0]["filters"] = users
    h.kube.put(route)
    h.tick()
    assert len(owned_filters(h)) == len(users) + 1
    assert "MirrorRestored" in h.reasons()
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote"})
    h.run_until(lambda s: s.phase == "Healthy")
    assert owned_filters(h) == users


def test_mirrored_canaries_are_judged_on_the_apps_own_metrics() -> None:
    from kanary.reconcile_analysis import measurement_of

    body = rollout(STEPS, analysis={"metrics": [{"name": "error-rate", "max": 0.01}]})
    chosen = measurement_of(
        RolloutSpec.model_validate(body["spec"]), seen("istio.io/gateway-controller", MIRRORING)
    )
    assert not isinstance(chosen, str) and chosen.source == "app"
