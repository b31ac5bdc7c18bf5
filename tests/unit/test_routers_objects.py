"""Owned-object manifests and the Gateway API weight patch (pure parts of the I/O layer)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import pytest

from kanary.objects import (
    LABEL_REVISION,
    LABEL_ROLLOUT,
    LABEL_TRACK,
    deployment,
    service_drifted,
    services,
)
from kanary.routers.gateway import OwnedRule, find_rule, route_problem, split_of, weight_patch
from kanary.spec import RolloutSpec

SPEC: dict[str, Any] = {
    "replicas": 4,
    "template": {
        "metadata": {"labels": {"app": "gin-demo"}},
        "spec": {"containers": [{"name": "app", "image": "kanary/gin-demo:v2"}]},
    },
    "strategy": {"steps": [{"setWeight": 5}, {"pause": {"duration": "10s"}}, {"setWeight": 100}]},
}


def route(backends: list[tuple[str, int]], rv: str = "7") -> dict[str, Any]:
    return {
        "metadata": {"name": "gin-demo", "resourceVersion": rv},
        "spec": {
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": []},
                {"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in backends]},
            ]
        },
    }


def test_deployment_selector_is_immutable_and_pods_carry_revision() -> None:
    spec = RolloutSpec.model_validate(SPEC)
    a = deployment(spec, "gin-demo", "demo", "uid-1", "canary", "abc", 1)
    b = deployment(spec, "gin-demo", "demo", "uid-1", "canary", "def", 3)
    assert a["spec"]["selector"] == b["spec"]["selector"]
    assert LABEL_REVISION not in a["spec"]["selector"]["matchLabels"]
    pod_labels = b["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {
        "app": "gin-demo",  # the template's own labels stay on the pods
        LABEL_ROLLOUT: "gin-demo",
        LABEL_TRACK: "canary",
        LABEL_REVISION: "def",
    }
    assert b["spec"]["replicas"] == 3
    assert b["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert b["metadata"]["name"] == "gin-demo-canary"


def test_replica_ratio_mode_adds_a_service_across_both_tracks() -> None:
    plain = RolloutSpec.model_validate(SPEC)
    gateway = RolloutSpec.model_validate(
        {**SPEC, "trafficRouting": {"gatewayAPI": {"httpRoute": "gin-demo"}}}
    )
    names = [s["metadata"]["name"] for s in services(plain, "gin-demo", "demo", "u")]
    assert names == ["gin-demo-stable", "gin-demo-canary", "gin-demo"]
    assert LABEL_TRACK not in services(plain, "gin-demo", "demo", "u")[2]["spec"]["selector"]
    assert len(services(gateway, "gin-demo", "demo", "u")) == 2


def test_route_problem_names_the_missing_backend() -> None:
    assert route_problem(None, "r", "gin-demo") == "HTTPRoute r not found"
    msg = route_problem(route([("gin-demo-stable", 100)]), "r", "gin-demo")
    assert msg is not None and "gin-demo-canary" in msg
    assert (
        route_problem(route([("gin-demo-stable", 100), ("gin-demo-canary", 0)]), "r", "gin-demo")
        is None
    )


def owned(r: dict[str, Any], rule: str | None = None) -> OwnedRule:
    found = find_rule(r, "gin-demo", "gin-demo", rule)
    assert isinstance(found, OwnedRule), found
    return found


@pytest.mark.parametrize("weight", [0, 5, 25, 100])
def test_weight_patch_changes_only_our_weights(weight: int) -> None:
    original = route([("other", 3), ("gin-demo-stable", 100), ("gin-demo-canary", 0)])
    ops = weight_patch(original, owned(original), weight)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    patched = jsonpatch.apply_patch(copy.deepcopy(original), ops)
    assert split_of(patched, owned(patched)) == (100 - weight, weight)
    assert patched["spec"]["rules"][1]["backendRefs"][0] == {
        "name": "other",
        "port": 80,
        "weight": 3,
    }


def test_weight_patch_refuses_a_route_changed_since_read() -> None:
    first = route([("gin-demo-stable", 100), ("gin-demo-canary", 0)], rv="7")
    ops = weight_patch(first, owned(first), 5)
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(
            route([("gin-demo-stable", 100), ("gin-demo-canary", 0)], rv="8"), ops
        )


def with_pinned_rule() -> dict[str, Any]:
    """The user's route: rule 0 sends header x-pin: stable to the stable Service only."""
    r = route([("gin-demo-stable", 100), ("gin-demo-canary", 0)])
    r["spec"]["rules"][0] = {
        "matches": [{"headers": [{"name": "x-pin", "value": "stable"}]}],
        "backendRefs": [{"name": "gin-demo-stable", "port": 80}],
    }
    return r


@pytest.mark.parametrize("weight", [0, 5, 100])
def test_a_rule_pinned_to_the_stable_service_is_never_written(weight: int) -> None:
    """Found: the patch set the weight of every backendRef naming <name>-stable in every rule,
    so a header rule pinned to stable got weight 0 at the 100% step (503 for those requests)."""
    original = with_pinned_rule()
    patched = jsonpatch.apply_patch(
        copy.deepcopy(original), weight_patch(original, owned(original), weight)
    )
    assert patched["spec"]["rules"][0] == original["spec"]["rules"][0]
    assert split_of(patched, owned(patched)) == (100 - weight, weight)


def test_the_owned_rule_is_the_named_one_or_the_only_one_with_both_tracks() -> None:
    two = route([("gin-demo-stable", 100), ("gin-demo-canary", 0)])
    two["spec"]["rules"][0]["backendRefs"] = [
        {"name": "gin-demo-stable", "port": 80, "weight": 100},
        {"name": "gin-demo-canary", "port": 80, "weight": 0},
    ]
    problem = route_problem(two, "gin-demo", "gin-demo")
    assert problem is not None and "spec.trafficRouting.gatewayAPI.rule" in problem
    two["spec"]["rules"][1]["name"] = "main"
    assert owned(two, "main").index == 1
    missing = find_rule(two, "gin-demo", "gin-demo", "nope")
    assert missing == "HTTPRoute gin-demo has no rule named nope"
    split = route([("gin-demo-stable", 100)])
    split["spec"]["rules"][0]["backendRefs"] = [{"name": "gin-demo-canary", "port": 80}]
    assert find_rule(split, "gin-demo", "gin-demo") == (
        "HTTPRoute gin-demo: no rule references both gin-demo-stable and gin-demo-canary"
    )


def test_selectors_do_not_follow_template_labels_without_spec_selector() -> None:
    """Found: without spec.selector a template label edit re-pointed the stable Service at no
    pods (the Deployment kept its old, immutable selector)."""
    plain = RolloutSpec.model_validate(SPEC)
    relabelled = RolloutSpec.model_validate(
        {**SPEC, "template": {**SPEC["template"], "metadata": {"labels": {"app": "renamed"}}}}
    )
    pairs = zip(services(plain, "g", "d", "u"), services(relabelled, "g", "d", "u"), strict=True)
    for a, b in pairs:
        assert a["spec"]["selector"] == b["spec"]["selector"]
    assert (
        deployment(plain, "g", "d", "u", "stable", "r", 1)["spec"]["selector"]
        == deployment(relabelled, "g", "d", "u", "stable", "r", 1)["spec"]["selector"]
    )


def test_service_drift_ignores_server_defaults_and_sees_a_changed_selector() -> None:
    spec = RolloutSpec.model_validate(SPEC)
    wanted = services(spec, "g", "d", "u")[0]
    stored = copy.deepcopy(wanted)
    stored["spec"]["clusterIP"] = "10.0.0.7"
    stored["spec"]["ports"][0]["targetPort"] = "http"
    stored["metadata"]["labels"]["team"] = "a"
    assert not service_drifted(stored, wanted)
    stored["spec"]["selector"] = {"app": "other"}
    assert service_drifted(stored, wanted)
    assert service_drifted(None, wanted)
